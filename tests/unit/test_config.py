import pytest

from engine import config as venue_config
from engine.config import ConfigError


def test_demo_config_in_integers():
    btc, eth = venue_config.instrument_specs(venue_config.demo())
    assert (btc.quote_per_tick_lot, btc.base_per_lot) == (1, 10**4)
    assert (eth.quote_per_tick_lot, eth.base_per_lot) == (10, 10**5)
    assert btc.price_to_ticks("50000.01") == 5_000_001
    assert btc.qty_to_lots("0.0003") == 3
    assert btc.ticks_to_price(5_000_001) == "50000.01"
    assert btc.lots_to_qty(30) == "0.003"


def test_config_round_trips_through_toml(tmp_path):
    path = tmp_path / "venue.toml"
    path.write_text('accounts = [{id = 1, balances = {USDT = "5"}}]\n' + venue_config.DEMO_TOML)
    config = venue_config.load(path)
    assert config.accounts[0].balances == {"USDT": "5"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: setattr(c.instruments[0], "lot_size", "0.000000001"), "whole minor units"),
        (lambda c: setattr(c.instruments[0], "tick_size", "0.0x"), "tick_size"),
        (lambda c: setattr(c.instruments[0], "min_qty", "0.00015"), "min_qty"),
        (lambda c: setattr(c.instruments[0], "reference_price", "50000.015"), "reference"),
        (lambda c: setattr(c.instruments[1], "tick_size", "0.03"), "multiple"),
        (lambda c: setattr(c.instruments[0], "max_price", "100000000000000"), "too large"),
        # a sell of max_qty would overflow its hold in base minor units
        (
            lambda c: (
                setattr(c.assets[1], "decimals", 12),
                setattr(c.instruments[1], "lot_size", "1"),
                setattr(c.instruments[1], "min_qty", "1"),
                setattr(c.instruments[1], "max_qty", "10000000"),
                setattr(c.instruments[1], "max_notional", "1000000000"),
            ),
            "too large",
        ),
        # the band's width (price x bps) would overflow
        (
            lambda c: (
                setattr(c.instruments[0], "max_qty", "0.0001"),
                setattr(c.instruments[0], "max_price", "10000000000000000"),
            ),
            "too large",
        ),
        (lambda c: setattr(c.assets[0], "decimals", 18), "decimals"),
        (lambda c: setattr(c.instruments[0], "quote", "DOGE"), "two configured assets"),
        (lambda c: setattr(c.fee_tiers[0], "maker_bps", 9), "maker_bps"),
        (lambda c: setattr(c.accounts[0], "fee_tier", "vip"), "unknown fee tier"),
        (lambda c: setattr(c.accounts[1], "id", 1), "unique"),
        (lambda c: c.accounts[0].balances.update(BTC="0.000000001"), "BTC"),
    ],
)
def test_configs_the_core_cannot_run_on_are_refused(change, message):
    config = venue_config.demo()
    change(config)
    with pytest.raises(ConfigError, match=message):
        venue_config.instrument_specs(config)


def test_unknown_fields_are_refused():
    with pytest.raises(ConfigError):
        venue_config.decode("accounts = []\nwat = 1\n" + venue_config.DEMO_TOML)
