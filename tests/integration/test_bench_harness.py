"""Every subcommand of `python -m bench` runs for about a second and leaves a
complete report: results.json, report.md and well-formed PNG plots (no timing
assertions: numbers belong to `make bench`)."""

import json

import pytest

from bench import __main__ as harness
from bench import load

FIELDS = ("p50_us", "p99_us", "p999_us", "max_us", "offered_rate", "achieved_rate", "count")
SHORT = ["--duration", "1", "--warmup", "0.2", "--rate", "1000"]


def png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


def run_harness(tmp_path, capsys, *argv: str) -> tuple[dict, dict, object]:
    directory = harness.main([*argv, "--json", "--results", str(tmp_path / "results"),
                              "--data-root", str(tmp_path)])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert directory.parent == tmp_path / "results"
    result = json.loads((directory / "results.json").read_text())
    assert result["conditions"]["cpu"] and result["conditions"]["durability"] == "write"
    assert (directory / "report.md").read_text().startswith("# Flowgate benchmark")
    assert list(tmp_path.glob("flowgate-bench-*")) == []  # the venue's data cleaned up
    return printed, result, directory


def check_latency(printed: dict, result: dict, directory, protocols):
    assert set(result["latency"]) == set(protocols)
    for name in protocols:
        row = printed[name]
        assert all(field in row for field in FIELDS)
        assert 0 < row["p50_us"] <= row["p99_us"] <= row["p999_us"] <= row["max_us"]
        assert row["count"] > 0 and row["achieved_rate"] > 0 and row["server_cpu_us"] >= 0
        if name in load.VENUE:
            assert row["errors"] == 0 and row["check"] == "ok"
            assert row["server_cpu_us"] > 0  # the venue's process, measured
            assert set(result["latency"][name]["stages"]) == set(load.STAGES)
            assert set(result["latency"][name]["engine_stages"]) >= {"apply", "publish"}
    assert png(directory / "latency.png")
    report = (directory / "report.md").read_text()
    assert all(load.PROTOCOLS[name].title in report for name in protocols)


FLOORS = {"tcp_echo", "ws_echo"}


@pytest.mark.parametrize("subcommand, protocols", [
    ("floor", FLOORS), ("ws", {*FLOORS, "ws"}), ("rest", {*FLOORS, "ws", "rest"}),
    ("fix", {*FLOORS, "ws", "fix"}),
])  # fmt: skip
def test_a_protocol_runs_beside_the_floors(tmp_path, capsys, subcommand, protocols):
    printed, result, directory = run_harness(tmp_path, capsys, subcommand, *SHORT)
    check_latency(printed, result, directory, protocols)
    assert result["conditions"]["command"] == " ".join(["python -m bench", subcommand, *SHORT,
                                                        "--json", "--results",
                                                        str(tmp_path / "results"),
                                                        "--data-root", str(tmp_path)])  # fmt: skip
    if subcommand != "floor":
        assert result["ratios"][f"{subcommand}_p50_over_{harness.FLOOR_OF[subcommand]}"] > 0
    if subcommand in ("rest", "fix"):  # judged against WebSocket, measured beside it
        assert result["ratios"][f"{subcommand}_p50_over_ws"] > 0
        assert png(directory / "stages.png")
    assert "sweep" not in result


@pytest.mark.parametrize("subcommand", ["core", "engine"])
def test_core_and_engine_run_sized_by_the_duration(tmp_path, capsys, subcommand):
    printed, result, directory = run_harness(tmp_path, capsys, subcommand, "--duration", "0.5")
    assert result[subcommand]["conditions"]["commands"] == 50_000
    assert printed[subcommand]
    report = (directory / "report.md").read_text()
    assert f"## {subcommand.title()}" in report
    assert ("| batch" in report) == (subcommand == "core")


def test_all_runs_everything_and_sweeps(tmp_path, capsys):
    printed, result, directory = run_harness(
        tmp_path, capsys, "all", "--duration", "0.5", "--warmup", "0.2", "--rate", "1000",
        "--sweep-from", "500", "--sweep-to", "1000", "--sweep-duration", "0.3",
    )  # fmt: skip
    check_latency(printed, result, directory, {*FLOORS, "ws", "rest", "fix"})
    assert "core" in result and "engine" in result
    for name, sweep in result["sweep"].items():
        assert 1 <= len(sweep["steps"]) <= 2
        assert "sustained_rate" in printed[name]
    assert png(directory / "sweep.png") and png(directory / "stages.png")
    assert "## Rate sweep" in (directory / "report.md").read_text()


def test_the_final_state_check_catches_a_venue_that_differs():
    from types import SimpleNamespace

    from flowgate_client.types import Balance

    ops = load.plan(300, {"place": 50, "cancel": 50}, "t")
    statuses = ["new" if op.kind == "place" else "canceled" for op in ops]
    statuses[0] = "error:INSUFFICIENT_BALANCE"  # a refused placement is not open
    seen = load.expected_open(ops, statuses)
    held = load.holds(seen)
    totals = {"BTC": held["BTC"] + 1, "USDT": held["USDT"] + 1}

    class Venue:
        def __init__(self, refs, btc_locked):
            self.refs, self.btc_locked = refs, btc_locked

        def open_orders(self):
            return [SimpleNamespace(client_order_id=ref) for ref in self.refs]

        def balances(self):
            locked = {"BTC": self.btc_locked, "USDT": held["USDT"]}
            return [Balance(asset, str(totals[asset]), str(totals[asset] - locked[asset]),
                            str(locked[asset])) for asset in totals]  # fmt: skip

    assert held["BTC"] > 0 and held["USDT"] > 0
    assert load.check_state(Venue(list(seen), held["BTC"]), seen, totals) == []
    lost = load.check_state(Venue(list(seen)[1:], held["BTC"]), seen, totals)
    assert lost == ["open orders: 0 only at the venue, 1 only in the client's view"]
    wrong_hold = load.check_state(Venue(list(seen), held["BTC"] * 2), seen, totals)
    assert len(wrong_hold) == 1 and wrong_hold[0].startswith("BTC locked")
