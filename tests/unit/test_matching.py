"""Matching rules as tables: the book before, one command, the events it
produces, the book after. Every row runs against the Cython core and the
pure-Python reference."""

from dataclasses import dataclass, field

import pytest

from engine import messages as m
from tests.venue import IMPLEMENTATIONS, REF, Venue, kinds

BUY, SELL = m.Side.BUY, m.Side.SELL
P = REF
IOC, FOK, GTD = m.TimeInForce.IOC, m.TimeInForce.FOK, m.TimeInForce.GTD
MARKET = m.OrderType.MARKET
NEWEST, OLDEST, BOTH = (
    m.SelfTradePrevention.CANCEL_NEWEST,
    m.SelfTradePrevention.CANCEL_OLDEST,
    m.SelfTradePrevention.CANCEL_BOTH,
)


def place(account, side, price, qty, **fields):
    fields.setdefault("type", m.OrderType.LIMIT)
    return m.PlaceOrder(account=account, instrument=0, side=side, price=price, qty=qty, **fields)


@dataclass
class Rule:
    name: str
    book: list  # resting orders placed first, as (account, side, price, qty); ids 1, 2, ...
    command: m.Command
    events: list  # kinds of the command's events (see tests.venue.kinds)
    trades: list = field(default_factory=list)  # (price, qty, maker order id)
    bids: list = field(default_factory=list)  # after: [(price, [(order id, leaves)])]
    asks: list = field(default_factory=list)


RULES = [
    Rule("a buy below the best ask rests",
         book=[(2, SELL, P + 1, 5)],
         command=place(1, BUY, P, 3),
         events=["accepted"],
         bids=[(P, [(2, 3)])], asks=[(P + 1, [(1, 5)])]),
    Rule("a crossing buy trades at the resting price and rests its remainder",
         book=[(2, SELL, P + 1, 5)],
         command=place(1, BUY, P + 3, 8),
         events=["accepted", "trade"], trades=[(P + 1, 5, 1)],
         bids=[(P + 3, [(2, 3)])]),
    Rule("better prices first, then time within a price",
         book=[(2, SELL, P + 2, 4), (3, SELL, P + 1, 2), (4, SELL, P + 1, 3)],
         command=place(1, BUY, P + 2, 6),
         events=["accepted", "trade", "trade", "trade"],
         trades=[(P + 1, 2, 2), (P + 1, 3, 3), (P + 2, 1, 1)],
         asks=[(P + 2, [(1, 3)])]),
    Rule("a sell sweeps bids from the highest down",
         book=[(2, BUY, P - 1, 2), (3, BUY, P, 2)],
         command=place(1, SELL, P - 1, 3),
         events=["accepted", "trade", "trade"], trades=[(P, 2, 2), (P - 1, 1, 1)],
         bids=[(P - 1, [(1, 1)])]),
    Rule("a market buy takes what the band allows and cancels the rest",
         book=[(2, SELL, P + 1, 2), (3, SELL, P + 5, 1)],
         command=place(1, BUY, 0, 10, type=MARKET, tif=IOC),
         events=["accepted", "trade", "trade", "canceled:unfilled"],
         trades=[(P + 1, 2, 1), (P + 5, 1, 2)]),
    Rule("an IOC limit fills what crosses and cancels the rest",
         book=[(2, SELL, P + 1, 2), (3, SELL, P + 3, 2)],
         command=place(1, BUY, P + 2, 5, tif=IOC),
         events=["accepted", "trade", "canceled:unfilled"], trades=[(P + 1, 2, 1)],
         asks=[(P + 3, [(2, 2)])]),
    Rule("an IOC that crosses nothing is canceled whole",
         book=[(2, SELL, P + 1, 2)],
         command=place(1, BUY, P, 5, tif=IOC),
         events=["accepted", "canceled:unfilled"],
         asks=[(P + 1, [(1, 2)])]),
    Rule("a FOK that cannot fill whole does not trade at all",
         book=[(2, SELL, P + 1, 2), (3, SELL, P + 2, 2)],
         command=place(1, BUY, P + 2, 5, tif=FOK),
         events=["accepted", "canceled:fok_unfillable"],
         asks=[(P + 1, [(1, 2)]), (P + 2, [(2, 2)])]),
    Rule("a FOK that can fill whole fills across levels",
         book=[(2, SELL, P + 1, 2), (3, SELL, P + 2, 4)],
         command=place(1, BUY, P + 2, 5, tif=FOK),
         events=["accepted", "trade", "trade"], trades=[(P + 1, 2, 1), (P + 2, 3, 2)],
         asks=[(P + 2, [(2, 1)])]),
    Rule("post-only is rejected when it would take",
         book=[(2, SELL, P + 1, 2)],
         command=place(1, BUY, P + 1, 1, post_only=True),
         events=["rejected:POST_ONLY_WOULD_TAKE"],
         asks=[(P + 1, [(1, 2)])]),
    Rule("post-only rests when it would not take",
         book=[(2, SELL, P + 1, 2)],
         command=place(1, BUY, P, 1, post_only=True),
         events=["accepted"],
         bids=[(P, [(2, 1)])], asks=[(P + 1, [(1, 2)])]),
    Rule("cancel_newest: the taker is canceled on meeting its own order",
         book=[(2, SELL, P + 1, 1), (1, SELL, P + 1, 2), (3, SELL, P + 1, 2)],
         command=place(1, BUY, P + 1, 4, stp=NEWEST),
         events=["accepted", "trade", "canceled:self_trade"], trades=[(P + 1, 1, 1)],
         asks=[(P + 1, [(2, 2), (3, 2)])]),
    Rule("cancel_oldest: the resting own order is canceled and matching goes on",
         book=[(1, SELL, P + 1, 2), (3, SELL, P + 1, 2)],
         command=place(1, BUY, P + 1, 3, stp=OLDEST),
         events=["accepted", "canceled:self_trade", "trade"], trades=[(P + 1, 2, 2)],
         bids=[(P + 1, [(3, 1)])]),
    Rule("cancel_both: both orders are canceled",
         book=[(1, SELL, P + 1, 2), (3, SELL, P + 1, 2)],
         command=place(1, BUY, P + 1, 3, stp=BOTH),
         events=["accepted", "canceled:self_trade", "canceled:self_trade"],
         asks=[(P + 1, [(2, 2)])]),
    Rule("a FOK with cancel_oldest counts only other accounts' quantity",
         book=[(1, SELL, P + 1, 2), (3, SELL, P + 1, 2)],
         command=place(1, BUY, P + 1, 3, tif=FOK, stp=OLDEST),
         events=["accepted", "canceled:fok_unfillable"],
         asks=[(P + 1, [(1, 2), (2, 2)])]),
    Rule("amending the quantity down keeps the place in the queue",
         book=[(2, SELL, P + 1, 5), (3, SELL, P + 1, 5)],
         command=m.AmendOrder(account=2, order_id=1, qty=3),
         events=["amended:kept"],
         asks=[(P + 1, [(1, 3), (2, 5)])]),
    Rule("amending the quantity up loses the place in the queue",
         book=[(2, SELL, P + 1, 5), (3, SELL, P + 1, 5)],
         command=m.AmendOrder(account=2, order_id=1, qty=6),
         events=["amended:lost"],
         asks=[(P + 1, [(2, 5), (1, 6)])]),
    Rule("amending the price loses the place and may trade",
         book=[(2, BUY, P - 1, 5), (3, SELL, P + 1, 2)],
         command=m.AmendOrder(account=2, order_id=1, price=P + 1),
         events=["amended:lost", "trade"], trades=[(P + 1, 2, 2)],
         bids=[(P + 1, [(1, 3)])]),
    Rule("another account's order cannot be canceled",
         book=[(2, SELL, P + 1, 5)],
         command=m.CancelOrder(account=3, order_id=1),
         events=["rejected:UNKNOWN_ORDER"],
         asks=[(P + 1, [(1, 5)])]),
    Rule("mass cancel by side leaves the other side",
         book=[(2, SELL, P + 1, 5), (2, BUY, P - 1, 5), (3, BUY, P - 2, 1)],
         command=m.MassCancel(account=2, instrument=0, side=BUY),
         events=["canceled:mass", "mass_canceled"],
         bids=[(P - 2, [(3, 1)])], asks=[(P + 1, [(1, 5)])]),
    Rule("the kill switch cancels everything of the account",
         book=[(2, SELL, P + 1, 5), (2, BUY, P - 1, 5), (3, BUY, P - 2, 1)],
         command=m.SetKillSwitch(account=2, on=True),
         events=["kill_switch", "canceled:kill_switch", "canceled:kill_switch"],
         bids=[(P - 2, [(3, 1)])]),
]  # fmt: skip


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_rule(rule, implementation):
    venue = Venue(implementation)
    for account, side, price, qty in rule.book:
        assert kinds(venue.place(account, side, price, qty)) == ["accepted"]
    events = venue.apply(rule.command)
    assert kinds(events) == rule.events
    trades = [(e.price, e.qty, e.maker_order_id) for e in events if isinstance(e, m.Trade)]
    assert trades == rule.trades
    assert venue.book(BUY) == rule.bids
    assert venue.book(SELL) == rule.asks


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gtd_order_expires_on_the_first_command_at_its_time(implementation):
    venue = Venue(implementation)
    venue.apply(place(1, BUY, P, 1, tif=GTD, expire_ns=100), ts=10)
    assert kinds(venue.apply(m.Tick(), ts=99)) == []
    events = venue.apply(m.Tick(), ts=100)
    assert kinds(events) == ["expired"]
    assert venue.book(BUY) == []


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gtd_expiry_runs_before_the_command_that_carries_the_time(implementation):
    venue = Venue(implementation)
    venue.apply(place(1, SELL, P + 1, 2, tif=GTD, expire_ns=50), ts=1)
    events = venue.apply(place(2, BUY, P + 1, 2), ts=60)
    assert kinds(events) == ["expired", "accepted"]
    assert venue.book(BUY) == [(P + 1, [(2, 2)])]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_retry_with_same_client_order_id(implementation):
    venue = Venue(implementation)
    first = place(1, BUY, P, 3, client_order_id="abc-1")
    assert kinds(venue.apply(first)) == ["accepted"]
    venue.place(2, SELL, P, 1)  # partially fills it
    (state,) = venue.apply(first)
    assert isinstance(state, m.OrderState)
    assert (state.order_id, state.status, state.filled, state.leaves) == (
        1, m.OrderStatus.PARTIALLY_FILLED, 1, 2,
    )  # fmt: skip
    different = place(1, BUY, P, 4, client_order_id="abc-1")
    assert kinds(venue.apply(different)) == ["rejected:DUPLICATE_CLIENT_ORDER_ID"]
    venue.apply(m.CancelOrder(account=1, client_order_id="abc-1"))
    # once closed, the id may name a new order; the same parameters still mean a retry
    assert kinds(venue.apply(first))[0] == "order_state"
    assert kinds(venue.apply(different)) == ["accepted"]
    assert venue.book(BUY) == [(P, [(3, 4)])]
