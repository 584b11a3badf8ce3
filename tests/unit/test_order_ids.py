"""Orders are found by id however many orders came after them: the core's id
index holds one bucket per id modulo its size, and an order still open when the
ids come round to its bucket again moves aside. Both implementations, and a
core restored from a snapshot taken meanwhile."""

import pytest

from engine import config as venue_config
from engine import messages as m
from tests.unit.test_snapshot import restored
from tests.venue import IMPLEMENTATIONS, REF, Venue, make_config

# 16 order slots: the core's id index has 32 buckets, so ids come round every 32
CAPACITY = venue_config.CapacityConfig(orders=16, retired_orders=4)


def place(venue, account, side, price) -> int:
    events = venue.place(account, side, price, 1)
    (order_id,) = [e.order_id for e in events if isinstance(e, m.OrderAccepted)]
    return order_id


def canceled(events) -> list[int]:
    return [e.order_id for e in events if isinstance(e, m.OrderCanceled)]


def churn(venue, orders: int):
    """Orders placed and canceled one by one, each its own id."""
    for _ in range(orders):
        order_id = place(venue, 2, m.Side.SELL, REF + 10)
        assert canceled(venue.apply(m.CancelOrder(account=2, order_id=order_id))) == [order_id]


def long_lived(venue) -> list[int]:
    """Six resting bids with ids in a run."""
    return [place(venue, 1, m.Side.BUY, REF - 10 - i) for i in range(6)]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_long_lived_orders_are_found_after_the_ids_come_round_many_times(implementation):
    venue = Venue(implementation, make_config(capacity=CAPACITY))
    resting = long_lived(venue)
    churn(venue, 150)  # each id's bucket taken again more than four times
    amended = venue.apply(m.AmendOrder(account=1, order_id=resting[0], qty=2))
    assert [e.order_id for e in amended if isinstance(e, m.OrderAmended)] == [resting[0]]
    for order_id in resting:
        assert canceled(venue.apply(m.CancelOrder(account=1, order_id=order_id))) == [order_id]
        refused = venue.apply(m.CancelOrder(account=1, order_id=order_id))
        assert [e.code for e in refused if isinstance(e, m.OrderRejected)] == ["UNKNOWN_ORDER"]


def test_a_restored_core_finds_the_orders_that_moved_aside():
    venue = Venue("core", make_config(capacity=CAPACITY))
    resting = long_lived(venue)
    churn(venue, 40)
    venue.engine = restored(venue.engine)
    churn(venue, 40)  # the restored index, too, sees the ids come round
    for order_id in resting:
        assert canceled(venue.apply(m.CancelOrder(account=1, order_id=order_id))) == [order_id]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_an_id_that_shares_a_live_orders_bucket_names_no_order(implementation):
    venue = Venue(implementation, make_config(capacity=CAPACITY))
    resting = long_lived(venue)
    for order_id in resting:
        # 32 ids on, the same bucket: not yet an order
        refused = venue.apply(m.CancelOrder(account=1, order_id=order_id + 32))
        assert [e.code for e in refused if isinstance(e, m.OrderRejected)] == ["UNKNOWN_ORDER"]
    for order_id in resting:
        assert canceled(venue.apply(m.CancelOrder(account=1, order_id=order_id))) == [order_id]
