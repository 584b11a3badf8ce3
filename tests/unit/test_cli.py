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


def test_check_config_refuses_what_is_not_toml(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text("[[bogus")
    assert cli.main(["check-config", str(broken)]) == 1
    assert "broken.toml: " in capsys.readouterr().err


def test_keys_of_a_data_dir_that_is_not_there_or_not_that_venues(tmp_path, capsys):
    from engine.runtime import claim_data_dir

    assert cli.main(["keys", "list", "--data-dir", str(tmp_path / "typo")]) == 2
    assert "no keys in" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()  # nothing made on the way
    claim_data_dir(tmp_path / "venue", venue_config.demo())
    create = ["keys", "create", "--data-dir", str(tmp_path / "venue"), "--account"]
    assert cli.main([*create, "999"]) == 2
    assert "no account 999" in capsys.readouterr().err
    assert cli.main([*create, "2"]) == 0
