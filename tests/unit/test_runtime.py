"""The engine runtime: ring → sequencer → journal → core → subscribers, and
recovery from snapshot and journal."""

import shutil
import time

import numpy as np
import pytest

from engine import config as venue_config
from engine import journal, snapshot
from engine import messages as m
from engine.engine import Engine
from engine.records import EVENT_DTYPE, command_record, decode_events
from engine.runtime import DataDirError, EngineRuntime, recover
from ext.core import COMMAND_SIZE, FRAME_SIZE, EventType


def order(i: int, **fields) -> m.PlaceOrder:
    """Alternating buys and sells a few ticks around the reference: some trade."""
    side = m.Side.BUY if i % 2 else m.Side.SELL
    fields.setdefault("price", 5_000_000 + (i * 7919) % 11 - 5)
    return m.PlaceOrder(account=1 + i % 4, instrument=0, side=side, type=m.OrderType.LIMIT,
                        qty=1 + i % 5, client_order_id=f"c{i}", **fields)  # fmt: skip


@pytest.fixture
def runtime():
    """Makes runtimes, and lets go of them after the test as a crash would."""
    made = []

    def make(data_dir, **options):
        made.append(EngineRuntime(venue_config.demo(), data_dir, **options))
        return made[-1]

    yield make
    for rt in made:
        rt.abandon()


def feed(rt, commands, tag=0):
    received = []
    rt.subscribers.append(received.append)
    for i, command in enumerate(commands):
        assert rt.submit(command_record(command, tag=tag + i)) == 1
        if i % 7 == 6:
            rt.run_pending()
    rt.run_pending()
    rt.subscribers.remove(received.append)
    return np.frombuffer(b"".join(received), EVENT_DTYPE)


def test_commands_come_out_as_sequenced_events_tagged_for_their_gateway(runtime, tmp_path):
    rt = runtime(tmp_path)
    events = feed(rt, [order(i) for i in range(20)], tag=100)
    assert rt.seq == 20
    accepted = events[events["type"] == EventType.EV_ACCEPTED]
    assert accepted["seq"].tolist() == list(range(1, 21))
    assert accepted["tag"].tolist() == list(range(100, 120))
    assert (np.diff(events["seq"]) >= 0).all() and (np.diff(events["ts_ns"]) >= 0).all()
    assert journal.check(tmp_path) == 20


def test_a_full_command_ring_takes_only_what_fits(runtime, tmp_path):
    rt = runtime(tmp_path, command_slots=4)
    records = b"".join(command_record(order(i)) for i in range(6))
    assert rt.submit(records) == 4
    assert rt.submit(command_record(order(9))) == 0  # the gateway answers OVERLOADED
    assert rt.run_pending() == 4
    assert rt.submit(records[4 * COMMAND_SIZE :]) == 2


def test_a_batch_reaches_every_subscriber_whole_and_in_order(runtime, tmp_path):
    rt = runtime(tmp_path)
    first, second = [], []
    rt.subscribers += [first.append, second.append]
    for i in range(30):
        rt.submit(command_record(order(i)))
    assert rt.run_pending() == 30
    assert len(first) == 1 and first == second  # one step, one delivery
    events = np.frombuffer(first[0], EVENT_DTYPE)
    assert len(events) > 30 and (np.diff(events["seq"]) >= 0).all() and events["seq"][-1] == 30


def test_restart_after_a_crash_recovers_the_same_state(runtime, tmp_path):
    rt = runtime(tmp_path)
    feed(rt, [order(i) for i in range(50)])
    expected = rt.engine.state_hash()
    rt.abandon()  # the process died; the journal is all there is
    again = runtime(tmp_path)
    assert again.seq == 50 and again.engine.state_hash() == expected
    events = feed(again, [order(50)])
    assert events["seq"].min() == 51


def test_snapshot_plus_tail_equals_a_full_replay(runtime, tmp_path):
    rt = runtime(tmp_path, segment_bytes=10 * FRAME_SIZE)
    feed(rt, [order(i) for i in range(40)])
    rt.take_snapshot()
    feed(rt, [order(i) for i in range(40, 75)])
    assert [p.name for p in snapshot.all_snapshots(tmp_path)] == [f"snapshot-{40:020d}.fgs"]
    recovered, _ = recover(rt.config, tmp_path)
    full = Engine(rt.config)
    for block in journal.read_frames(tmp_path, 0, 75):
        full.core.apply_frames(block)
        full.core.clear_events()
    assert recovered.seq == 75
    assert recovered.state_hash() == full.state_hash() == rt.engine.state_hash()


def test_a_damaged_snapshot_falls_back_to_the_journal(runtime, tmp_path, caplog):
    rt = runtime(tmp_path)
    feed(rt, [order(i) for i in range(10)])
    rt.take_snapshot()
    path = snapshot.all_snapshots(tmp_path)[0]
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    recovered, _ = recover(rt.config, tmp_path)
    assert "snapshot unreadable" in caplog.text
    assert recovered.state_hash() == rt.engine.state_hash()


def test_a_snapshot_write_clears_what_an_interrupted_one_left(runtime, tmp_path):
    rt = runtime(tmp_path)
    feed(rt, [order(i) for i in range(5)])
    unfinished = snapshot.path_of(tmp_path, 3).with_suffix(".tmp")
    unfinished.write_bytes(b"half a snapshot")  # its writer was killed midway
    rt.take_snapshot()
    assert not unfinished.exists()
    assert [p.name for p in snapshot.all_snapshots(tmp_path)] == [f"snapshot-{5:020d}.fgs"]


def test_clean_close_leaves_a_snapshot_at_the_last_command(runtime, tmp_path):
    rt = runtime(tmp_path)
    feed(rt, [order(i) for i in range(5)])
    rt.close()
    (path,) = snapshot.all_snapshots(tmp_path)
    assert snapshot.decode(path.read_bytes()).seq == 5


def test_one_venue_per_data_dir(runtime, tmp_path):
    first = runtime(tmp_path)
    with pytest.raises(DataDirError, match="in use"):
        runtime(tmp_path)
    first.close()
    runtime(tmp_path).close()


def test_a_data_dir_keeps_its_configuration(runtime, tmp_path):
    runtime(tmp_path).close()
    other = venue_config.demo(accounts=2)
    with pytest.raises(DataDirError, match="another configuration"):
        EngineRuntime(other, tmp_path)


def test_gtd_expiry_fires_as_a_journaled_tick(runtime, tmp_path):
    rt = runtime(tmp_path)
    now = rt.ts_ns = time.time_ns() + 10**12  # ahead of the wall clock: the test sets the time
    gtd = order(1, tif=m.TimeInForce.GTD, expire_ns=now + 5_000_000_000)
    feed(rt, [gtd])
    assert rt.next_timer_ns() == now + 5_000_000_000
    rt.ts_ns = now + 5_000_000_000  # the timer fires at its time
    received = []
    rt.subscribers.append(received.append)
    assert rt.submit_tick()
    rt.run_pending()
    (expired,) = [e for e in decode_events(b"".join(received)) if isinstance(e, m.OrderExpired)]
    assert expired.seq == 2 and rt.next_timer_ns() == 0
    rt.close()
    shutil.copytree(tmp_path, tmp_path.parent / "copy")
    replayed, _ = recover(rt.config, tmp_path.parent / "copy")
    assert replayed.state_hash() == rt.engine.state_hash()
