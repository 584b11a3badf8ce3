"""Orders are found by id however many orders came after them: the core's id
index holds one bucket per id modulo its size, and an order still open when the
ids come round to its bucket again moves aside. Both implementations, and a
core restored from a snapshot taken meanwhile."""

import msgspec
import pytest

from engine import config as venue_config
from engine import messages as m
from engine.engine import Engine
from tests.venue import IMPLEMENTATIONS, REF, Venue, make_config

# 16 order slots: the core's id index has 32 buckets, so ids come round every 32
CAPACITY = venue_config.CapacityConfig(orders=16, retired_orders=4)


def place_command(account, side, price) -> m.PlaceOrder:
    return m.PlaceOrder(
        account=account, instrument=0, side=side, type=m.OrderType.LIMIT, price=price, qty=1
    )


def place(venue, account, side, price) -> int:
    events = venue.apply(place_command(account, side, price))
    (order_id,) = [e.order_id for e in events if isinstance(e, m.OrderAccepted)]
    return order_id


def canceled(events) -> list[int]:
    return [e.order_id for e in events if isinstance(e, m.OrderCanceled)]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_long_lived_orders_are_found_after_the_ids_come_round_many_times(implementation):
    venue = Venue(implementation, make_config(capacity=CAPACITY))
    resting = [place(venue, 1, m.Side.BUY, REF - 10 - i) for i in range(6)]  # ids in a run
    for _ in range(150):  # each id's bucket taken again more than four times
        order_id = place(venue, 2, m.Side.SELL, REF + 10)
        assert canceled(venue.apply(m.CancelOrder(account=2, order_id=order_id))) == [order_id]
    amended = venue.apply(m.AmendOrder(account=1, order_id=resting[0], qty=2))
    assert [e.order_id for e in amended if isinstance(e, m.OrderAmended)] == [resting[0]]
    for order_id in resting:
        assert canceled(venue.apply(m.CancelOrder(account=1, order_id=order_id))) == [order_id]
        refused = venue.apply(m.CancelOrder(account=1, order_id=order_id))
        assert [e.code for e in refused if isinstance(e, m.OrderRejected)] == ["UNKNOWN_ORDER"]


def test_a_restored_core_finds_the_orders_that_moved_aside():
    config = make_config(capacity=CAPACITY)
    venue = Venue("core", config)
    resting = [place(venue, 1, m.Side.BUY, REF - 10 - i) for i in range(6)]
    for _ in range(40):
        order_id = place(venue, 2, m.Side.SELL, REF + 10)
        venue.apply(m.CancelOrder(account=2, order_id=order_id))
    copy = Engine(config)
    copy.core.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(venue.engine.core.snapshot())))
    ts = 10**6
    for _ in range(40):  # the restored index, too, sees the ids come round
        ts += 1
        events = copy.apply(place_command(2, m.Side.SELL, REF + 10), ts)
        (order_id,) = [e.order_id for e in events if isinstance(e, m.OrderAccepted)]
        copy.apply(m.CancelOrder(account=2, order_id=order_id), ts)
    for order_id in resting:
        ts += 1
        assert canceled(copy.apply(m.CancelOrder(account=1, order_id=order_id), ts)) == [order_id]
