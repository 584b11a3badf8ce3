"""The engine benchmark runs end to end on a small flow and writes a complete
report (no timing assertions: numbers belong to `make bench-engine`)."""

import json

from bench import engine as bench_engine


def test_engine_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "engine.json"
    bench_engine.main(
        [
            "--commands", "4000", "--latency-commands", "2000", "--rate", "20000",
            "--history-rate", "5000", "--depth", "100", "--accounts", "50", "--repeats", "1",
            "--data-root", str(tmp_path), "--output", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert set(result["modes"]) == {"none", "write", "fsync"}
    for mode in result["modes"].values():
        for measured in (mode, mode["engine_process"]):
            assert measured["cmds_per_s"] > 0
            latency = measured["latency"]
            assert 0 < latency["p50_ns"] <= latency["p99_ns"] <= latency["max_ns"]
    assert result["restart"]["journaled_commands"] == 4000
    assert result["restart"]["with_snapshot_s"] > 0 and result["history_ingest_cmds_per_s"] > 0
    assert list(tmp_path.glob("flowgate-bench-*")) == []  # journals cleaned up
    assert "| write |" in capsys.readouterr().out
