"""History in SQLite: complete, consistent with the core, paginated, and caught
up after a crash from the journal."""

import os
import signal
import sqlite3

from engine import config as venue_config
from engine.history import FILE, HistoryReader, connect
from engine.runtime import EngineRuntime
from ext.core import OrderStatus
from tests.unit.test_runtime import feed, order

ACCOUNTS = (1, 2, 3, 4)
OPEN = (OrderStatus.STATUS_NEW, OrderStatus.STATUS_PARTIALLY_FILLED)


def agrees_with_core(reader: HistoryReader, runtime: EngineRuntime):
    """Every order row is the core's view of the order; every trade has two fills."""
    core = runtime.engine.core
    orders = [row for a in ACCOUNTS for row in reader.orders(a, limit=1000).rows]
    assert orders
    for row in orders:
        live = core.order(row["order_id"])
        if live is not None:
            fields = ("filled", "filled_quote", "status", "price", "qty", "stp", "expire_ns",
                      "reason")  # fmt: skip
            assert {k: row[k] for k in fields} == {k: live[k] for k in fields}, row
            assert row["post_only"] == live["post_only"]
            assert row["leaves"] == (live["leaves"] if live["status"] in OPEN else 0), row
    fills = [row for a in ACCOUNTS for row in reader.fills(a, limit=1000).rows]
    assert len(fills) == 2 * (core.next_trade_id - 1) > 0
    assert reader.last_seq() == runtime.seq


def test_history_matches_the_core(tmp_path):
    runtime = EngineRuntime(venue_config.demo(), tmp_path)
    feed(runtime, [order(i) for i in range(120)])
    runtime.close()
    reader = HistoryReader(tmp_path)
    agrees_with_core(reader, runtime)


def test_pages_follow_the_cursor_newest_first(tmp_path):
    runtime = EngineRuntime(venue_config.demo(), tmp_path)
    feed(runtime, [order(i) for i in range(120)])
    runtime.close()
    reader = HistoryReader(tmp_path)
    everything = reader.fills(2, limit=1000).rows
    seen, cursor = [], None
    while True:
        page = reader.fills(2, cursor=cursor, limit=7)
        seen += page.rows
        if page.next_cursor is None:
            break
        assert len(page.rows) == 7
        cursor = page.next_cursor
    assert seen == everything and len(seen) > 7
    assert [r["id"] for r in seen] == sorted((r["id"] for r in seen), reverse=True)
    assert all(r["account"] == 2 for r in seen)
    assert reader.fills(2, instrument=1).rows == []


def test_history_catches_up_after_a_crash(tmp_path):
    config = venue_config.demo()
    first = EngineRuntime(config, tmp_path)
    feed(first, [order(i) for i in range(40)])
    first.close()
    # commands whose events the history never saw (its writer died with the process)
    blind = EngineRuntime(config, tmp_path, history=False)
    feed(blind, [order(i) for i in range(40, 90)])
    blind.abandon()
    assert HistoryReader(tmp_path).last_seq() == 40
    again = EngineRuntime(config, tmp_path)
    again.close()
    agrees_with_core(HistoryReader(tmp_path), again)


def test_a_damaged_history_is_rebuilt_from_the_journal(tmp_path, caplog):
    config = venue_config.demo()
    first = EngineRuntime(config, tmp_path)
    feed(first, [order(i) for i in range(60)])
    first.close()
    (tmp_path / "history.sqlite").write_bytes(b"not a database at all" * 100)
    again = EngineRuntime(config, tmp_path)
    again.close()
    assert "history database damaged" in caplog.text
    assert list(tmp_path.glob("history.sqlite.damaged-*"))
    agrees_with_core(HistoryReader(tmp_path), again)


def history_rows(data_dir) -> list[int]:
    db = sqlite3.connect(data_dir / FILE)
    try:
        return [db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("orders", "fills", "balance_changes")]  # fmt: skip
    finally:
        db.close()


def test_events_wait_in_the_backlog_while_the_writer_is_stopped(tmp_path):
    commands = [order(i) for i in range(30_000)]
    batches = [commands[i : i + 1000] for i in range(0, len(commands), 1000)]
    runtime = EngineRuntime(venue_config.demo(), tmp_path / "stopped")
    writer = runtime.history.process.pid
    os.kill(writer, signal.SIGSTOP)  # the ring fills and stays full
    try:
        for batch in batches:
            feed(runtime, batch)
        assert runtime.history.backlog_events > 0  # more than the ring holds
    finally:
        os.kill(writer, signal.SIGCONT)
    runtime.close()  # passes the backlog on, then lets the writer drain
    control = EngineRuntime(venue_config.demo(), tmp_path / "control")
    for batch in batches:
        feed(control, batch)
    control.close()
    assert HistoryReader(tmp_path / "stopped").last_seq() == len(commands)
    assert history_rows(tmp_path / "stopped") == history_rows(tmp_path / "control")


def test_a_database_from_before_the_last_columns_gets_them(tmp_path):
    old = sqlite3.connect(tmp_path / FILE)
    old.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, account INTEGER NOT NULL, "
                "instrument INTEGER NOT NULL, side INTEGER NOT NULL, order_type INTEGER NOT NULL, "
                "tif INTEGER NOT NULL, price INTEGER NOT NULL, qty INTEGER NOT NULL, leaves "
                "INTEGER NOT NULL, filled INTEGER NOT NULL, filled_quote INTEGER NOT NULL, status "
                "INTEGER NOT NULL, client_order_id TEXT NOT NULL, created_seq INTEGER NOT NULL, "
                "created_ns INTEGER NOT NULL, updated_seq INTEGER NOT NULL, updated_ns INTEGER "
                "NOT NULL)")  # fmt: skip
    old.execute("INSERT INTO orders VALUES (7, 2, 0, 1, 2, 1, 100, 5, 0, 5, 500, 3, 'a', 1, 1, "
                "2, 2)")  # fmt: skip
    old.commit()
    old.close()
    connect(tmp_path / FILE).close()
    row = HistoryReader(tmp_path).order(2, 7)
    assert (row["filled"], row["post_only"], row["expire_ns"], row["reason"]) == (5, 0, 0, 0)
