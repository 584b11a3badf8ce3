"""A core restored from a snapshot is the core it was taken from: same state,
and the same events for every command after it."""

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import config as venue_config
from engine import messages as m
from engine.engine import Engine
from tests.reference.test_equivalence import commands, small_config


def restored(engine: Engine) -> Engine:
    copy = Engine(engine.config)
    copy.core.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(engine.core.snapshot())))
    copy.seq = engine.seq
    return copy


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(commands, st.integers(0, 40)), min_size=10, max_size=120), st.data())
def test_restored_core_continues_identically(stream, data):
    config = small_config()
    original = Engine(config)
    cut = data.draw(st.integers(0, len(stream)), label="cut")
    ts = 0
    for command, dt in stream[:cut]:
        ts += dt
        original.apply(command, ts)
    copy = restored(original)
    assert copy.core.state_ints() == original.core.state_ints()
    for step, (command, dt) in enumerate(stream[cut:], cut):
        ts += dt
        got, want = copy.apply(command, ts), original.apply(command, ts)
        assert msgspec.to_builtins(got) == msgspec.to_builtins(want), f"step {step}: {command}"
    assert copy.state_hash() == original.state_hash()


def test_a_snapshot_only_restores_into_a_fresh_core_of_its_shape():
    config = small_config()
    engine = Engine(config)
    snap = engine.core.snapshot()
    busy = Engine(config)
    busy.apply(m.Tick(), 1)
    with pytest.raises(ValueError, match="fresh"):
        busy.core.restore(snap)
    other = small_config()
    other.capacity = venue_config.CapacityConfig(orders=48, retired_orders=6)
    with pytest.raises(ValueError, match="shape"):
        Engine(other).core.restore(snap)
    with pytest.raises(ValueError, match="bytes"):
        Engine(config).core.restore({**snap, "accounts": snap["accounts"][:-1]})
