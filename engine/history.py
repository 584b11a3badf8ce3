"""History: orders, fills and balance changes in SQLite (WAL), written off the
hot path, read by the gateways' history queries.

The loop thread only copies each published batch of event records into a
shared-memory ring (`HistoryProcess.on_events`); a process of its own turns
them into rows, one transaction per batch, together with the last sequence
number stored. After a crash, recovery regenerates from the journal the events
the database missed (`catch_up`), so history is complete once recovery ends.
"""

import logging
import multiprocessing
import os
import signal
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import shared_memory
from pathlib import Path
from typing import BinaryIO

import msgspec
import numpy as np

from engine import placement
from engine.locks import exclusive_lock
from engine.records import EVENT_DTYPE, whole_commands
from ext.core import EVENT_SIZE, EventFlag, EventType, OrderStatus, Ring

log = logging.getLogger("flowgate.history")

FILE = "history.sqlite"
LOCK_FILE = "history.lock"
WRITER_WAIT_S = 30.0  # for a writer that outlived its venue to finish its batch
MAX_PAGE = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, account INTEGER NOT NULL, instrument INTEGER NOT NULL,
    side INTEGER NOT NULL, order_type INTEGER NOT NULL, tif INTEGER NOT NULL,
    price INTEGER NOT NULL, qty INTEGER NOT NULL, leaves INTEGER NOT NULL,
    filled INTEGER NOT NULL, filled_quote INTEGER NOT NULL, status INTEGER NOT NULL,
    client_order_id TEXT NOT NULL, created_seq INTEGER NOT NULL, created_ns INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL, updated_ns INTEGER NOT NULL, post_only INTEGER NOT NULL
    DEFAULT 0, stp INTEGER NOT NULL DEFAULT 0, expire_ns INTEGER NOT NULL DEFAULT 0,
    reason INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (account, order_id);
CREATE INDEX IF NOT EXISTS orders_by_client_order_id ON orders (account, client_order_id);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY, trade_id INTEGER NOT NULL, account INTEGER NOT NULL,
    order_id INTEGER NOT NULL, instrument INTEGER NOT NULL, side INTEGER NOT NULL,
    price INTEGER NOT NULL, qty INTEGER NOT NULL, fee INTEGER NOT NULL,
    maker INTEGER NOT NULL, seq INTEGER NOT NULL, ts_ns INTEGER NOT NULL,
    UNIQUE (trade_id, maker));
CREATE INDEX IF NOT EXISTS fills_by_account ON fills (account, id);
CREATE INDEX IF NOT EXISTS fills_by_order ON fills (order_id);
CREATE TABLE IF NOT EXISTS balance_changes (
    id INTEGER PRIMARY KEY, account INTEGER NOT NULL, asset INTEGER NOT NULL,
    total INTEGER NOT NULL, locked INTEGER NOT NULL, seq INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS balances_by_account ON balance_changes (account, id);
"""

_ORDER_EVENTS = (EventType.EV_ACCEPTED, EventType.EV_CANCELED, EventType.EV_EXPIRED,
                 EventType.EV_AMENDED, EventType.EV_ORDER_STATE)  # fmt: skip
_FLAG_POST_ONLY = int(EventFlag.FLAG_POST_ONLY)
_ORDER_AND_TRADE_EVENTS = [int(k) for k in (*_ORDER_EVENTS, EventType.EV_TRADE)]


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    _add_columns(db)
    # No syncs: the journal, not this file, is the record, and an fsync here
    # stalls the loop's writes into the journal's mapping (they share the file
    # system's journal). A process crash loses nothing; after a machine crash
    # a damaged file is set aside and rebuilt from the journal (`catch_up`).
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)
    return db


def _add_columns(db: sqlite3.Connection):
    """A database written before `orders` had its last columns gets them
    (their defaults for the orders it holds)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(orders)")}
    if have:
        for column in _ADDED:
            if column not in have:
                db.execute(f"ALTER TABLE orders ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


def stored_seq(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
    return row[0] if row else 0


_ADDED = ("post_only", "stp", "expire_ns", "reason")  # after the first release
_COLUMNS = ("order_id", "account", "instrument", "side", "order_type", "tif", "price", "qty",
            "leaves", "filled", "filled_quote", "status", "client_order_id", "created_seq",
            "created_ns", "updated_seq", "updated_ns", *_ADDED)  # fmt: skip
_LEAVES, _FILLED, _QUOTE, _STATUS, _CREATED, _UPDATED, _EXPIRE = 8, 9, 10, 11, 13, 15, 19
_CLOSING = (EventType.EV_CANCELED, EventType.EV_EXPIRED)


def store(db: sqlite3.Connection, batch: bytes):
    """One transaction: the rows of a batch of event records, and its last seq.

    Orders are brought up to date in event order in memory (an order may be
    accepted, filled and canceled within one batch), then written once.
    """
    events = np.frombuffer(batch, EVENT_DTYPE)
    if len(events) == 0:
        return
    orders: dict[int, list] = {}
    fills = []

    def order(order_id: int) -> list | None:
        if order_id not in orders:
            found = db.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            orders[order_id] = list(found) if found else None
        return orders[order_id]

    def fill(row: list | None, leaves: int, filled: int, price: int, qty: int, seq, ts):
        if row is None:
            return
        row[_LEAVES], row[_FILLED] = leaves, filled
        row[_QUOTE] += price * qty
        row[_STATUS] = (
            OrderStatus.STATUS_FILLED if leaves == 0 else OrderStatus.STATUS_PARTIALLY_FILLED
        )
        row[_UPDATED : _UPDATED + 2] = [seq, ts]

    kinds = events["type"]
    # balance changes, the most common event, straight from the columns
    changes = events[kinds == EventType.EV_BALANCE]
    columns = ("account", "instrument", "total", "locked", "seq", "ts_ns")
    balances = list(zip(*(changes[f].tolist() for f in columns), strict=True))
    # orders and fills, in event order
    for e in events[np.isin(kinds, _ORDER_AND_TRADE_EVENTS)].tolist():
        r = dict(zip(EVENT_DTYPE.names, e, strict=True))
        kind, seq, ts = r["type"], r["seq"], r["ts_ns"]
        if kind in _ORDER_EVENTS:
            known = order(r["order_id"])
            if kind == EventType.EV_ORDER_STATE and known is not None:
                continue  # a retry's answer: the order has not changed
            coid = r["coid"][: r["coid_len"]].decode(errors="replace")
            closing = kind in _CLOSING
            row = [r["order_id"], r["account"], r["instrument"], r["side"], r["order_type"],
                   r["tif"], r["price"], r["qty"], 0 if closing else r["leaves"], r["filled"],
                   r["filled_quote"], r["status"], coid, seq, ts, seq, ts,
                   int(r["flags"] & _FLAG_POST_ONLY != 0), r["stp"], r["expire_ns"],
                   r["reason"]]  # fmt: skip
            if known is not None:
                row[_CREATED : _CREATED + 2] = known[_CREATED : _CREATED + 2]
                if closing:  # (its event leaves the order's expiry out)
                    row[_EXPIRE] = known[_EXPIRE]
            orders[r["order_id"]] = row
        elif kind == EventType.EV_TRADE:
            price, qty, trade, side = r["price"], r["qty"], r["trade_id"], r["side"]
            fills.append((trade, r["account"], r["order_id"], r["instrument"], side, price, qty,
                          r["taker_fee"], 0, seq, ts))  # fmt: skip
            fills.append((trade, r["maker_account"], r["maker_order_id"], r["instrument"],
                          3 - side, price, qty, r["maker_fee"], 1, seq, ts))  # fmt: skip
            fill(order(r["order_id"]), r["leaves"], r["filled"], price, qty, seq, ts)
            maker = order(r["maker_order_id"])
            if maker is not None:
                fill(maker, r["maker_leaves"], maker[_FILLED] + qty, price, qty, seq, ts)
    db.execute("BEGIN")
    db.executemany(
        f"INSERT OR REPLACE INTO orders VALUES ({','.join('?' * len(_COLUMNS))})",
        [row for row in orders.values() if row is not None],
    )
    db.executemany(
        "INSERT OR IGNORE INTO fills (trade_id, account, order_id, instrument, side, price, qty,"
        " fee, maker, seq, ts_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        fills,
    )
    db.executemany(
        "INSERT INTO balance_changes (account, asset, total, locked, seq, ts_ns)"
        " VALUES (?,?,?,?,?,?)",
        balances,
    )
    db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (int(events["seq"].max()),))
    db.execute("COMMIT")


class HistoryProcess:
    """The writer, in a process of its own: it shares no GIL with the loop
    thread, which hands it event records through a shared-memory ring (a copy,
    no system call). When the ring is full the batches wait in a backlog
    here, passed on with the next ones; the loop never waits. A history more
    than MAX_BACKLOG events behind is no longer fed (an error is logged): the
    next start completes it from the journal."""

    RING_SLOTS = 1 << 16  # event records (15 MB)
    MAX_BACKLOG = 1 << 20  # event records (232 MB)

    def __init__(self, data_dir: Path):
        self.shm = shared_memory.SharedMemory(create=True, size=_CONTROL + Ring.size(
            self.RING_SLOTS, EVENT_SIZE))  # fmt: skip
        self.ring = Ring(self.RING_SLOTS, EVENT_SIZE, self.shm.buf[_CONTROL:])
        self.backlog: deque[memoryview] = deque()
        self.backlog_events = 0
        self.abandoned = False
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no loop, no threads
        self.process = context.Process(
            target=run_writer, name="flowgate-history", daemon=True,
            args=(self.shm.name, str(data_dir), os.getpid(), sorted(placement.background_cpus())),
        )  # fmt: skip
        self.process.start()
        os.sched_setaffinity(self.process.pid, placement.background_cpus())  # before its imports

    def on_events(self, batch: bytes):
        if self.abandoned:
            return
        if not self.backlog:  # the common case: the writer keeps up
            written = self.ring.write(batch) * EVENT_SIZE
            if written == len(batch):
                return
            batch = memoryview(batch)[written:]
        self.backlog.append(memoryview(batch))
        self.backlog_events += len(batch) // EVENT_SIZE
        while self.backlog:
            head = self.backlog[0]
            written = self.ring.write(head) * EVENT_SIZE
            self.backlog_events -= written // EVENT_SIZE
            if written < len(head):
                self.backlog[0] = head[written:]
                break
            self.backlog.popleft()
        if self.backlog_events > self.MAX_BACKLOG:
            self.abandoned = True
            self.backlog.clear()
            log.error("history too far behind: no longer fed; the next start completes it "
                      "from the journal")  # fmt: skip

    def close(self, wait: bool = True):
        """Pass on the backlog, let the writer drain the ring, and stop it.
        Without `wait` (an abandoned runtime), just tell it to stop."""
        if self.ring is None:
            return
        while wait and self.backlog and self.process.is_alive():
            self.on_events(b"")
            time.sleep(0.001)
        self.shm.buf[0] = 1  # stop once the ring is empty
        if wait:
            self.process.join(timeout=60)
        self.ring = None  # releases its view of the shared memory
        self.shm.close()
        self.shm.unlink()

    def __del__(self):
        self.close(wait=False)


_CONTROL = 64  # bytes before the ring: [0] is the stop flag


def run_writer(shm_name: str, data_dir: str, parent_pid: int, cpus: list[int]):
    """The history process: drain the ring into SQLite until told to stop or
    orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.sched_setaffinity(0, cpus)
    placement.idle_priority()  # it may lag; it must not delay the clients on its core
    shm = shared_memory.SharedMemory(name=shm_name)
    ring = Ring(HistoryProcess.RING_SLOTS, EVENT_SIZE, shm.buf[_CONTROL:])
    lock = writer_lock(Path(data_dir))
    db = connect(Path(data_dir) / FILE)
    # A venue killed outright leaves the rest to its next start's recovery,
    # which waits for this writer's lock: the two never store the same events.
    # A batch is stored with its last seq, which recovery resumes after: half
    # a command stored would lose the other half.
    carried = b""  # events of a command whose last event has not come yet
    while os.getppid() == parent_pid:
        batch = ring.read(8192)
        if batch:
            batch, carried = whole_commands(carried + batch)
            try:
                store(db, batch)
            except sqlite3.Error:
                log.exception("history write failed; the journal still has every event")
                if db.in_transaction:
                    db.execute("ROLLBACK")
        elif shm.buf[0]:
            break
        else:
            time.sleep(0.002)  # history may lag by milliseconds; nothing waits on it
    db.close()
    lock.close()
    ring = None
    shm.close()


def writer_lock(data_dir: Path) -> BinaryIO:
    """The history has one writer at a time: the writer process, or recovery
    (`catch_up`). Rows are brought up to date from the stored ones (a fill
    adds to an order's filled quantity), so one batch stored twice would
    count twice."""
    lock = exclusive_lock(data_dir / LOCK_FILE, WRITER_WAIT_S)
    if lock is None:
        raise RuntimeError(f"{data_dir / FILE} is still being written by another process")
    return lock


def catch_up(data_dir: Path) -> tuple[int, Callable[[bytes], None], Callable[[], None]]:
    """For recovery: the last seq the history holds, a function that stores the
    events of later commands, and one that closes the database."""
    path = Path(data_dir) / FILE
    lock = writer_lock(Path(data_dir))
    try:
        db = connect(path)
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        seq = stored_seq(db)
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"{FILE}.damaged-{time.time_ns()}")
        log.error("history database damaged: set aside, rebuilding from the journal",
                  extra={"file": str(aside), "error": str(exc)})  # fmt: skip
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(FILE + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
        db = connect(path)
        seq = 0

    def close():
        db.close()
        lock.close()

    return seq, lambda batch: store(db, batch), close


class Page(msgspec.Struct):
    rows: list[dict]
    next_cursor: int | None  # pass back to get the next (older) page; None at the end


class HistoryReader:
    """Cursor-paginated queries, newest first. A cursor is the row id to continue below."""

    def __init__(self, data_dir: Path):
        self.db = connect(Path(data_dir) / FILE)
        self.db.row_factory = sqlite3.Row

    def _page(self, table: str, key: str, account: int, cursor, limit: int, extra="", args=(),
              columns="*"):  # fmt: skip
        limit = max(1, min(limit, MAX_PAGE))
        where = f"account = ? AND {key} < ?{extra}"
        rows = self.db.execute(
            f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {key} DESC LIMIT ?",
            (account, cursor if cursor is not None else 2**63 - 1, *args, limit + 1),
        ).fetchall()
        more = len(rows) > limit
        rows = [dict(r) for r in rows[:limit]]
        return Page(rows, rows[-1][key] if more else None)

    def fills(self, account: int, instrument: int | None = None, cursor=None, limit=100):
        extra, args = ("", ()) if instrument is None else (" AND instrument = ?", (instrument,))
        # each with its order's client order id
        columns = ("*, (SELECT client_order_id FROM orders WHERE orders.order_id = "
                   "fills.order_id) AS client_order_id")  # fmt: skip
        return self._page("fills", "id", account, cursor, limit, extra, args, columns)

    def order_fills(self, order_id: int) -> list[dict]:
        """The fills of one order, oldest first."""
        rows = self.db.execute("SELECT * FROM fills WHERE order_id = ? ORDER BY trade_id",
                               (order_id,)).fetchall()  # fmt: skip
        return [dict(row) for row in rows]

    def orders(self, account: int, cursor=None, limit=100):
        return self._page("orders", "order_id", account, cursor, limit)

    def order(self, account: int, order_id: int) -> dict | None:
        row = self.db.execute("SELECT * FROM orders WHERE order_id = ? AND account = ?",
                              (order_id, account)).fetchone()  # fmt: skip
        return None if row is None else dict(row)

    def order_id(self, account: int, client_order_id: str) -> int:
        """The newest order of the account with this client order id; 0 if none."""
        row = self.db.execute(
            "SELECT max(order_id) FROM orders WHERE account = ? AND client_order_id = ?",
            (account, client_order_id)).fetchone()  # fmt: skip
        return row[0] or 0

    def updated_ns(self, order_ids: list[int]) -> dict[int, int]:
        """When each of these orders last changed, by order id (those it holds)."""
        times = {}
        for start in range(0, len(order_ids), 500):  # within SQLite's bound on parameters
            chunk = order_ids[start : start + 500]
            times.update(self.db.execute(
                f"SELECT order_id, updated_ns FROM orders WHERE order_id IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall())  # fmt: skip
        return times

    def recent_trades(self, instrument: int, limit: int) -> list[tuple]:
        """The instrument's last public trades, oldest first: (trade_id, price,
        qty, taker side, ts_ns)."""
        rows = self.db.execute(
            "SELECT trade_id, price, qty, side, ts_ns FROM fills WHERE instrument = ? AND "
            "maker = 0 ORDER BY trade_id DESC LIMIT ?", (instrument, limit)).fetchall()  # fmt: skip
        return [tuple(row) for row in reversed(rows)]

    def balance_changes(self, account: int, cursor=None, limit=100):
        return self._page("balance_changes", "id", account, cursor, limit)

    def last_seq(self) -> int:
        return stored_seq(self.db)

    def close(self):
        self.db.close()
