"""The FIX benchmark runs end to end (no timing assertions: numbers belong to
`make bench-fix`)."""

import json

from bench import fix


def test_fix_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "fix.json"
    fix.main(["--orders", "200", "--warmup", "50", "--rate", "1000", "--data-root",
              str(tmp_path), "--output", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    for run in ("fix", "websocket"):
        row = result["latency"][run]
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]
    assert result["fix_p50_over_ws"] > 0
    assert "ExecutionReport" in capsys.readouterr().out
