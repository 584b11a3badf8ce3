from engine import cli
from engine import config as venue_config


def test_tour_runs_a_session(capsys):
    assert cli.main(["tour"]) == 0
    out = capsys.readouterr().out
    assert "trade #1: 0.5 @ 50000.5" in out
    assert "rejected: POST_ONLY_WOULD_TAKE" in out
    assert "rejected: PRICE_OUT_OF_BAND" in out
    assert "priority kept" in out


def test_check_config(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text('accounts = [{id = 1, balances = {USDT = "5"}}]\n' + venue_config.DEMO_TOML)
    assert cli.main(["check-config", str(good)]) == 0
    assert "BTC-USDT: tick 0.01, lot 0.0001" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace('lot_size = "0.0001"', 'lot_size = "0.0000000001"'))
    assert cli.main(["check-config", str(bad)]) == 1
    assert "whole minor units" in capsys.readouterr().err
