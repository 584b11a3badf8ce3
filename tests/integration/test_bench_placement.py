"""The placement benchmark runs end to end, both placements and the floor
(no timing assertions: numbers belong to `make bench-placement`)."""

import json

from bench import placement


def test_placement_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "placement.json"
    placement.main(["--orders", "300", "--rate", "1000", "--data-root", str(tmp_path),
                    "--output", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    for key in ("floor", "one_thread", "engine_process"):
        assert 0 < result[key]["p50_us"] <= result[key]["p99_us"] <= result[key]["max_us"]
    assert result["one_thread_p50_over_floor"] > 0
    assert "engine in its own process" in capsys.readouterr().out
