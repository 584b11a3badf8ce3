"""The gateways' read model follows the core through random command streams:
after every batch its books, open orders, balances and positions are the
core's, whether it started empty or from a core in mid-stream."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.engine import Engine
from engine.records import COMMAND_DTYPE, encode_command
from engine.views import BUY, SELL, VenueView, events_of
from tests.reference.test_equivalence import commands, small_config


def apply(engine: Engine, batch, ts: int) -> bytes:
    records = np.zeros(len(batch), COMMAND_DTYPE)
    for i, command in enumerate(batch):
        encode_command(command, records[i : i + 1], engine.seq + 1 + i, ts)
    return engine.apply_batch(records).tobytes()


def assert_same(view: VenueView, engine: Engine):
    core = engine.core
    n_accounts, n_assets, n_instruments = core.shape()[:3]
    for instrument in range(n_instruments):
        for side in (BUY, SELL):
            want = [(price, total) for price, total, _ in core.book(instrument, side)]
            assert view.books[instrument].best(side) == want
            assert view.books[instrument].best(side, 2) == want[:2]
    for account in range(1, n_accounts + 1):
        open_ids = core.open_orders(account)
        assert sorted(view.open.get(account, {})) == sorted(open_ids)
        for order_id in open_ids:
            o, seen = core.order(order_id), view.orders[order_id]
            assert (seen.price, seen.leaves, seen.filled, seen.filled_quote, seen.status) == (
                o["price"],
                o["leaves"],
                o["filled"],
                o["filled_quote"],
                o["status"],
            )
            assert (seen.post_only, seen.stp) == (o["post_only"], o["stp"])
        for asset in range(n_assets):
            assert view.balances.get(account, {}).get(asset, (0, 0)) == core.balance(account, asset)
        for instrument in range(n_instruments):
            held = view.positions.get(account, {}).get(instrument, (0, 0, 0))
            assert held == core.position(account, instrument)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(commands, min_size=1, max_size=6), min_size=4, max_size=40),
       st.integers(0, 3))  # fmt: skip
def test_view_follows_the_core(batches, start_at):
    config = small_config()
    engine = Engine(config)
    ts = 0
    view = None
    for i, batch in enumerate(batches):
        if i == start_at:
            view = VenueView(engine.instruments, len(config.assets), engine.core, engine.seq)
            assert_same(view, engine)
        ts += 7
        raw = apply(engine, batch, ts)
        if view is not None:
            for event in events_of(raw):
                view.apply(event)
            for book in view.books:
                book.take_changes()
            assert_same(view, engine)


def test_changes_name_each_level_the_batch_moved():
    from engine import messages as m

    config = small_config()
    engine = Engine(config)
    view = VenueView(engine.instruments, len(config.assets), engine.core, 0)
    place = dict(instrument=0, type=m.OrderType.LIMIT)
    raw = apply(engine, [
        m.PlaceOrder(account=1, side=m.Side.SELL, price=5_000_010, qty=3, **place),
        m.PlaceOrder(account=1, side=m.Side.SELL, price=5_000_020, qty=2, **place),
        m.PlaceOrder(account=2, side=m.Side.BUY, price=5_000_010, qty=3, **place),  # takes all
    ], 1)  # fmt: skip
    for event in events_of(raw):
        view.apply(event)
    assert view.books[0].take_changes() == [(SELL, 5_000_020, 2)]  # 5_000_010 came and went
    assert view.books[0].take_changes() == []
