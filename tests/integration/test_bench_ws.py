"""The WebSocket benchmark runs end to end: latency beside the echo floor on
both cores, and throughput (no timing assertions: numbers belong to
`make bench-ws`)."""

import json

from bench import ws


def test_ws_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "ws.json"
    ws.main(["--orders", "300", "--warmup", "100", "--rate", "1000", "--clients", "2",
             "--throughput-orders", "400", "--data-root", str(tmp_path),
             "--output", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    for where in ("one_core", "across_cores"):
        for run in ("order_ack", "echo_floor"):
            row = result["latency"][where][run]
            assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]
        assert result["latency"][where]["p50_over_floor"] > 0
    assert result["latency"]["answer_bytes"] > 300
    assert [t["orders_per_request"] for t in result["throughput"]] == [1, 20]
    for run in result["throughput"]:
        assert run["orders"] == 800 and run["errors"] == 0 and run["orders_per_s"] > 0
    assert "picows echo floor" in capsys.readouterr().out
