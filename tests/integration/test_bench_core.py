"""The core benchmark runs end to end on a small flow and writes a complete report
(no timing assertions: numbers belong to `make bench-core`)."""

import json

from bench import core as bench_core


def test_core_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "core.json"
    bench_core.main(
        [
            "--commands", "3000", "--depth", "100", "--accounts", "50",
            "--reference-commands", "1000", "--competitor-ops", "500", "--deep-ops", "300",
            "--repeats", "1",
            "--output", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    for key in ("batch_cmds_per_s", "per_call_cmds_per_s", "reference_cmds_per_s"):
        assert result[key] > 0
    for book in ("nanobook", "liquibook"):
        for op in ("insert", "cancel", "aggressive"):
            assert result[book][op]["them_ops_per_s"] > 0
            assert result[book][op]["flowgate_ops_per_s"] > 0
        for op in ("cancel", "aggressive"):
            assert result["deep_book"][book][op]["them_ops_per_s"] > 0
    latency = result["latency"]
    assert 0 < latency["p50_ns"] <= latency["p99_ns"] <= latency["p999_ns"] <= latency["max_ns"]
    assert result["python_allocations"]["commands"] == 3000 - bench_core.BATCH
    assert "| batch" in capsys.readouterr().out
