"""MatchingCore's one-call-per-command methods give exactly the events of the same
commands applied through Engine.apply."""

from engine import config
from engine import messages as m
from engine.engine import Engine
from engine.records import decode_events

BUY, SELL = m.Side.BUY, m.Side.SELL
LIMIT = m.OrderType.LIMIT
P = 5_000_000


def test_per_call_methods_match_engine_apply():
    commands = [
        m.PlaceOrder(account=1, instrument=0, side=SELL, type=LIMIT, price=P + 1, qty=5,
                     post_only=True, client_order_id="q-1"),
        m.PlaceOrder(account=2, instrument=0, side=BUY, type=LIMIT, price=P - 1, qty=3,
                     tif=m.TimeInForce.GTD, expire_ns=50),
        m.PlaceOrder(account=1, instrument=0, side=BUY, type=LIMIT, price=P + 1, qty=2,
                     stp=m.SelfTradePrevention.CANCEL_OLDEST),
        m.AmendOrder(account=2, order_id=2, price=P, qty=4),
        m.PlaceOrder(account=3, instrument=0, side=SELL, type=LIMIT, price=P, qty=1,
                     tif=m.TimeInForce.IOC),
        m.CancelOrder(account=2, order_id=2),
        m.CancelOrder(account=2, order_id=99),
    ]  # fmt: skip
    via_apply = Engine(config.demo())
    via_calls = Engine(config.demo()).core
    for ts, c in enumerate(commands, start=1):
        expected = via_apply.apply(c, ts_ns=ts)
        if isinstance(c, m.PlaceOrder):
            via_calls.place(
                ts, c.account, c.instrument, m.SIDE_CODE[c.side], m.TYPE_CODE[c.type],
                m.TIF_CODE[c.tif], c.price, c.qty, m.STP_CODE[c.stp], c.post_only, c.expire_ns,
                c.client_order_id.encode(),
            )  # fmt: skip
        elif isinstance(c, m.AmendOrder):
            via_calls.amend(ts, c.account, c.order_id, c.price, c.qty)
        else:
            via_calls.cancel(ts, c.account, c.order_id)
        assert decode_events(via_calls.take_events()) == expected, c
    assert via_calls.state_ints() == via_apply.core.state_ints()
