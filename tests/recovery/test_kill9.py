"""kill -9 under load: every acknowledged command and fill survives, the state
is consistent, and snapshot + journal tail equals a replay of the whole journal.

A client streams orders through the record port and writes every event it
receives (its acknowledgements) to an fsync'd ledger. The server is killed at
a random moment, restarted, killed again, and finally stopped cleanly; then
the data directory is checked against the ledger.
"""

import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine import config as venue_config
from engine import messages as m
from engine.history import HistoryReader
from engine.records import EVENT_DTYPE, command_record
from engine.runtime import recover, replay
from ext.core import EventType, OrderStatus
from gateways.records import RecordClient
from tests.reference.invariants import check_invariants
from tests.server import ServerProcess

ROUNDS = 3
OPEN = (OrderStatus.STATUS_NEW, OrderStatus.STATUS_PARTIALLY_FILLED)
BATCH = 25


def orders(rng: random.Random, round_: int, start: int, n: int = BATCH) -> bytes:
    records = []
    for i in range(start, start + n):
        side = rng.choice([m.Side.BUY, m.Side.SELL])
        records.append(command_record(m.PlaceOrder(
            account=rng.randint(1, 4), instrument=0, side=side, type=m.OrderType.LIMIT,
            price=5_000_000 + rng.randint(-20, 20), qty=rng.randint(1, 50),
            tif=rng.choice([m.TimeInForce.GTC, m.TimeInForce.IOC]),
            client_order_id=f"r{round_}-{i}",
        )))  # fmt: skip
    return b"".join(records)


def drive(port: int, rng: random.Random, round_: int, ledger) -> int:
    """Send batches until the server dies; log every event received. Returns
    how many events were acknowledged."""
    client = RecordClient(port, timeout=30)
    acknowledged, sent = 0, 0
    try:
        while True:
            events = client.request(orders(rng, round_, sent))
            sent += BATCH
            ledger.write(events.tobytes())
            ledger.flush()
            os.fsync(ledger.fileno())
            acknowledged += len(events)
    except (ConnectionError, OSError):
        return acknowledged
    finally:
        client.close()


@pytest.mark.parametrize(
    "seed, placement", [(11, ()), (12, ("--engine-process",))], ids=["one-thread", "engine-process"]
)
def test_kill_minus_nine_loses_nothing_acknowledged(tmp_path, seed, placement):
    rng = random.Random(seed)
    data = tmp_path / "venue"
    ledger_path = tmp_path / "ledger"
    print(f"seed {seed}")
    with open(ledger_path, "wb") as ledger:
        for round_ in range(ROUNDS):
            server = ServerProcess(data, "--snapshot-every", "400", *placement)
            killer = threading.Timer(rng.uniform(0.3, 1.2), server.kill)
            killer.start()
            assert drive(server.record_port, rng, round_, ledger) > 0
            killer.join()
    server = ServerProcess(data, *placement)
    assert server.stop() == 0

    acked = np.frombuffer(ledger_path.read_bytes(), EVENT_DTYPE)
    config = msgspec.json.decode((data / "config.json").read_bytes(), type=venue_config.VenueConfig)
    recovered, _ = recover(config, data)
    full = replay(data)
    assert full.mismatches == [] and full.checked >= 1
    assert recovered.state_hash() == full.state_hash
    assert recovered.seq == full.last_seq >= acked["seq"].max()

    # every acknowledged order is there, as acknowledged, and every fill happened
    accepted = acked[acked["type"] == EventType.EV_ACCEPTED]
    assert len(accepted) > 100
    for event in accepted:
        order = recovered.core.order(int(event["order_id"]))
        assert order is not None, int(event["order_id"])
        assert order["client_order_id"] == event["coid"][: event["coid_len"]].decode()
        assert order["account"] == event["account"]
    trades = acked[acked["type"] == EventType.EV_TRADE]
    assert len(trades) > 0 and recovered.core.next_trade_id > trades["trade_id"].max()
    for event in trades:
        assert recovered.core.order(int(event["maker_order_id"]))["filled"] > 0
    check_invariants(recovered, config)

    # the history, fed off the hot path and caught up from the journal, is complete
    history = HistoryReader(data)
    assert history.last_seq() == recovered.seq
    stored = set()
    for account in range(1, 5):
        cursor = None
        while True:
            page = history.fills(account, cursor=cursor, limit=1000)
            stored |= {(row["trade_id"], row["maker"]) for row in page.rows}
            if (cursor := page.next_cursor) is None:
                break
    assert len(stored) == 2 * (recovered.core.next_trade_id - 1)


def test_a_history_writer_outliving_a_killed_venue_stores_nothing_twice(tmp_path):
    """Under load the history lags; its writer, a process of its own, may
    still be storing when the venue is killed and at once started again. The
    restarted venue's recovery must not store the same events beside it."""
    data = tmp_path / "venue"
    server = ServerProcess(data, "--snapshot-every", "5000")
    deadline = time.monotonic() + 3.0

    def load(client_id: int):
        rng = random.Random(client_id)
        client = RecordClient(server.record_port, timeout=30)
        sent = 0
        try:
            while time.monotonic() < deadline:
                client.request(orders(rng, client_id, sent, 500))
                sent += 500
        except (ConnectionError, OSError):
            pass  # killed
        finally:
            client.close()

    clients = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for c in clients:
        c.start()
    time.sleep(2.0)
    server.kill()
    for c in clients:
        c.join()
    again = ServerProcess(data)  # at once: the old writer may be mid-batch
    assert again.stop() == 0

    config = msgspec.json.decode((data / "config.json").read_bytes(), type=venue_config.VenueConfig)
    recovered, _ = recover(config, data)
    db = sqlite3.connect(data / "history.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0] == (
        recovered.seq)  # fmt: skip
    # one balance row per command, account and asset
    assert db.execute("SELECT count(*) FROM (SELECT 1 FROM balance_changes GROUP BY seq, "
                      "account, asset HAVING count(*) > 1)").fetchone()[0] == 0  # fmt: skip
    # every order the core still knows is stored as the core has it (a closed one
    # with nothing left to fill)
    compared = 0
    rows = db.execute("SELECT order_id, status, leaves, filled, filled_quote FROM orders")
    for order_id, *stored in rows:
        order = recovered.core.order(order_id)
        if order is not None:
            compared += 1
            leaves = order["leaves"] if order["status"] in OPEN else 0
            assert stored == [order["status"], leaves, order["filled"], order["filled_quote"]]
    assert compared > 1000


def test_an_engine_process_whose_gateways_are_killed_lets_go_even_with_events_unread(tmp_path):
    """The gateways' process stops reading events (stopped, as a busy loop would
    be), the engine fills the event ring waiting for room, then the gateways'
    process is killed: the engine must still notice, let go of the data
    directory and exit, so the venue can start again."""
    data = tmp_path / "venue"
    server = ServerProcess(data, "--engine-process")
    engine = server.child_pid()
    rng = random.Random(5)
    client = RecordClient(server.record_port, timeout=30)
    client.sock.sendall(b"".join(orders(rng, 0, k, 1000) for k in range(0, 60_000, 1000)))
    os.kill(server.process.pid, signal.SIGSTOP)  # the engine still has commands to apply
    time.sleep(1.0)
    server.kill()
    client.close()

    def running() -> bool:
        try:  # (a zombie has exited: it waits for a parent that is gone to reap it)
            return Path(f"/proc/{engine}/stat").read_text().split()[2] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running()
    again = ServerProcess(data, "--engine-process")
    assert again.stop() == 0
