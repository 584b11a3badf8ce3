import numpy as np
import pytest

from engine import config
from engine import messages as m
from engine.engine import Engine
from engine.records import COMMAND_DTYPE, FRAME_DTYPE, encode_command
from ext.core import COMMAND_SIZE, FRAME_SIZE, Ring, sequence


def records(n, start=0):
    return (np.arange(start, start + n, dtype="<u8").repeat(2)).tobytes()  # 16-byte slots


def test_batches_go_through_in_order_across_the_wrap():
    ring = Ring(8, 16)
    assert ring.write(records(5)) == 5
    assert ring.read(3) == records(3)
    assert ring.write(records(6, 5)) == 6  # wraps around the end
    assert len(ring) == 8
    assert ring.read(100) == records(8, 3)
    assert len(ring) == 0 and ring.read(4) == b""


def test_a_full_ring_takes_only_what_fits():
    ring = Ring(4, 16)
    assert ring.write(records(6)) == 4
    assert ring.write(records(1)) == 0
    assert ring.read(1) == records(1)
    assert ring.write(records(2, 10)) == 1


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        Ring(6, 16)
    with pytest.raises(ValueError):
        Ring(4, 16).write(b"x" * 17)


def test_the_sequencer_stamps_commands_from_the_ring_into_frames_the_core_applies():
    engine = Engine(config.demo())
    ring = Ring(4, COMMAND_SIZE)
    batch = np.zeros(3, dtype=COMMAND_DTYPE)
    for i, price in enumerate([4_999_000, 4_998_000, 4_997_000]):
        order = m.PlaceOrder(account=1, instrument=0, side=m.Side.BUY, type=m.OrderType.LIMIT,
                             price=price, qty=1)  # fmt: skip
        encode_command(order, batch[i : i + 1], seq=0, ts_ns=0)
    assert ring.write(batch.view(np.uint8)) == 3
    frames = np.zeros(2 * FRAME_SIZE, dtype=np.uint8)
    assert sequence(ring, frames, 7, 1_000) == 2  # as many as the frames hold
    assert len(ring) == 1
    stamped = frames.view(FRAME_DTYPE)["command"]
    assert stamped["seq"].tolist() == [7, 8] and stamped["ts_ns"].tolist() == [1_000, 1_000]
    engine.core.apply_frames(frames)
    assert [p for p, _, _ in engine.core.book(0, 1)] == [4_999_000, 4_998_000]
    assert engine.core.last_seq == 8
