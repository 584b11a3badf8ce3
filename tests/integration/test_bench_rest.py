"""The REST benchmark runs end to end: order → ack on both key types beside
WebSocket, and public GET throughput with wrk beside uvicorn + Starlette (no
timing assertions: numbers belong to `make bench-rest`)."""

import json

from bench import rest


def test_rest_benchmark_writes_its_report(tmp_path, capsys):
    out = tmp_path / "rest.json"
    rest.main(["--orders", "200", "--warmup", "50", "--rate", "1000", "--seconds", "1",
               "--data-root", str(tmp_path), "--output", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    for run in ("rest_hmac", "rest_ed25519", "websocket"):
        row = result["latency"][run]
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["max_us"]
    assert result["hmac_p50_over_ws"] > 0 and result["ed25519_p50_over_ws"] > 0
    throughput = result["throughput"]
    assert throughput["flowgate_rps"] > 0 and throughput["starlette_rps"] > 0
    assert throughput["body_bytes"] > 100  # the book holds levels by then
    assert "uvicorn + Starlette" in capsys.readouterr().out
