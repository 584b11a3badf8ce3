"""The gateway benchmark runs end to end on the real venue, in process (no
timing assertions: numbers belong to `make bench-gateway`)."""

import json

import pytest

from bench import gateway


def test_gateway_benchmark_places_every_order_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "gateway.json"
    gateway.main(["--orders", "200", "--rounds", "2", "--batch", "20", "--data-root",
                  str(tmp_path), "--output", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    rows = {row["orders_per_request"]: row for row in result["gateway"]}
    assert sorted(rows) == [1, 20]
    for row in rows.values():
        assert len(row["rounds_us_per_order"]) == 2
        assert 0 < row["min_us"] <= row["us_per_order"] <= row["max_us"]
    assert "`order.batch` of 20" in capsys.readouterr().out


def test_a_round_with_refused_orders_is_not_reported(tmp_path, monkeypatch):
    def unknown_symbol(i: int) -> dict:
        return {"symbol": "NOPE-USDT", "side": "buy", "type": "limit", "qty": "0.0001",
                "price": "49000", "post_only": True}  # fmt: skip

    monkeypatch.setattr(gateway, "order_params", unknown_symbol)
    out = tmp_path / "gateway.json"
    with pytest.raises(RuntimeError, match="0 of the round's 40 orders were placed"):
        gateway.main(["--orders", "40", "--rounds", "2", "--kinds", "place", "--data-root",
                      str(tmp_path), "--output", str(out)])  # fmt: skip
    assert not out.exists()
