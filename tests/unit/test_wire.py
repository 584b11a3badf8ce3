"""The gateways' shared conversions: decimal texts to ticks and lots and back,
remembered, and exact."""

import pytest

from engine import config
from gateways import wire


@pytest.fixture
def instruments():
    venue = config.demo()
    return wire.Instruments(venue, config.instrument_specs(venue))


def test_texts_read_and_written_are_remembered_and_exact(instruments):
    spec = instruments.by_symbol["BTC-USDT"]
    assert instruments.ticks(spec, "49000.01") == 4_900_001
    assert instruments.ticks(spec, "49000.01") == 4_900_001  # from the table now
    assert "49000.01" in instruments.ticks_of[spec.index]
    assert instruments.price(spec, 4_900_001) == "49000.01"
    assert instruments.qty(spec, 1) == "0.0001" and instruments.lots(spec, "0.0001") == 1
    assert instruments.notional_texts[spec.index][4_900_001 * 3] == spec.quote_to_text(
        4_900_001 * 3 * spec.quote_per_tick_lot)  # fmt: skip


def test_a_text_that_does_not_convert_is_refused_every_time_and_not_kept(instruments):
    spec = instruments.by_symbol["BTC-USDT"]
    for _ in range(2):
        with pytest.raises(wire.RequestError) as refused:
            instruments.ticks(spec, "49000.001")
        assert refused.value.code == "INVALID_PRICE"
    assert "49000.001" not in instruments.ticks_of[spec.index]


def test_a_full_table_starts_afresh(monkeypatch):
    monkeypatch.setattr(wire, "TEXT_CACHE", 3)
    table = wire.Remembered(str)
    for value in range(3):
        assert table[value] == str(value)
    assert len(table) == 3
    assert table[7] == "7" and dict(table) == {7: "7"}
