"""Pre-trade risk, balances, fees and positions, with exact amounts, on both
implementations. Demo BTC-USDT: one tick x one lot is 1 minor unit of USDT
(10**-6), one lot is 10**4 satoshi; account 1 pays 0/3 bps maker/taker, the
others 2/5."""

import pytest

from engine import config as venue_config
from engine import messages as m
from tests.venue import IMPLEMENTATIONS, REF, Venue, kinds, make_config

BUY, SELL = m.Side.BUY, m.Side.SELL
BTC, USDT = 0, 2
P = REF


@pytest.fixture(params=IMPLEMENTATIONS)
def implementation(request):
    return request.param


def venue_with(implementation, **changes):
    return Venue(implementation, make_config(**changes))


def test_fill_moves_balances_and_fees_exactly(implementation):
    venue = Venue(implementation)
    btc2, usdt2 = venue.balance(2, BTC)[0], venue.balance(2, USDT)[0]
    btc3, usdt3 = venue.balance(3, BTC)[0], venue.balance(3, USDT)[0]
    venue.place(2, SELL, P, 100)  # maker, 2 bps
    events = venue.apply(
        m.PlaceOrder(
            account=3, instrument=0, side=BUY, type=m.OrderType.LIMIT, price=P + 10, qty=40
        )  # fmt: skip
    )
    (trade,) = [e for e in events if isinstance(e, m.Trade)]
    notional = P * 40  # ticks x lots x 1 minor unit
    assert (trade.taker_fee, trade.maker_fee) == (notional * 5 // 10000, notional * 2 // 10000)
    assert venue.balance(3, USDT) == (usdt3 - notional - trade.taker_fee, 0)
    assert venue.balance(3, BTC) == (btc3 + 40 * 10**4, 0)
    assert venue.balance(2, BTC) == (btc2 - 40 * 10**4, 60 * 10**4)
    assert venue.balance(2, USDT) == (usdt2 + notional - trade.maker_fee, 0)


def test_buy_holds_notional_plus_worst_case_taker_fee(implementation):
    venue = Venue(implementation)
    venue.place(3, BUY, P, 7)
    notional = P * 7
    assert venue.balance(3, USDT)[1] == notional + notional * 5 // 10000
    venue.place(3, SELL, P + 1, 9)
    assert venue.balance(3, BTC)[1] == 9 * 10**4


def test_price_improvement_releases_the_unused_hold(implementation):
    venue = Venue(implementation)
    venue.place(2, SELL, P, 5)
    total_before = venue.balance(3, USDT)[0]
    venue.place(3, BUY, P + 100, 5)
    notional = P * 5
    assert venue.balance(3, USDT) == (total_before - notional - notional * 5 // 10000, 0)


def test_insufficient_balance_is_rejected_and_nothing_changes(implementation):
    config = make_config()
    config.accounts[2].balances = {"USDT": "10"}  # 10 USDT = 10**7 minor units
    venue = Venue(implementation, config)
    before = venue.state_ints()
    # 2 lots at 50,000.00 is 10 USDT, plus the 5 bps fee: one minor unit short
    assert kinds(venue.place(3, BUY, 5_000_000, 2)) == ["rejected:INSUFFICIENT_BALANCE"]
    assert venue.state_ints() == before
    assert kinds(venue.place(3, BUY, 4_990_000, 2)) == ["accepted"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        (dict(price=P * 111 // 100), "PRICE_OUT_OF_BAND"),  # band is 10%
        (dict(price=P * 89 // 100, side=SELL), "PRICE_OUT_OF_BAND"),
        (dict(qty=1_000_001), "QUANTITY_ABOVE_MAX"),  # 100 BTC max
        (dict(price=100, qty=1), "PRICE_OUT_OF_BAND"),
        (dict(qty=0), "INVALID_QUANTITY"),
        (dict(qty=-1), "INVALID_QUANTITY"),
        (dict(price=0), "INVALID_PRICE"),
        (dict(price=-5), "INVALID_PRICE"),
        (dict(type=m.OrderType.MARKET, tif=m.TimeInForce.GTC, price=0), "INVALID_TIF"),
        (dict(type=m.OrderType.MARKET, tif=m.TimeInForce.IOC), "INVALID_PRICE"),
        (dict(type=m.OrderType.MARKET, tif=m.TimeInForce.IOC, price=0, post_only=True),
         "INVALID_ORDER_TYPE"),
        (dict(tif=m.TimeInForce.IOC, post_only=True), "INVALID_TIF"),
        (dict(tif=m.TimeInForce.GTD), "INVALID_EXPIRE_TIME"),
        (dict(expire_ns=10**12), "INVALID_EXPIRE_TIME"),
        (dict(instrument=2), "UNKNOWN_INSTRUMENT"),
        (dict(account=99), "UNKNOWN_ACCOUNT"),
        (dict(client_order_id="x" * 37), "INVALID_CLIENT_ORDER_ID"),
    ],
)  # fmt: skip
def test_invalid_orders_are_rejected_with_their_code(implementation, fields, code):
    venue = Venue(implementation)
    order = dict(account=2, instrument=0, side=BUY, type=m.OrderType.LIMIT, price=P, qty=1)
    order.update(fields)
    before = venue.state_ints()
    events = venue.apply(m.PlaceOrder(**order))
    assert kinds(events) == [f"rejected:{code}"]
    assert venue.state_ints() == before


def test_notional_limits(implementation):
    config = make_config()
    venue = Venue(implementation, config)
    assert kinds(venue.place(2, BUY, 4_999_999, 1)) == ["accepted"]
    spec = config.instruments[0]
    spec.min_notional = "100"
    venue = Venue(implementation, config)
    assert kinds(venue.place(2, BUY, P, 1)) == ["rejected:NOTIONAL_BELOW_MIN"]
    spec.min_notional, spec.max_notional = "1", "60"
    venue = Venue(implementation, config)
    assert kinds(venue.place(2, BUY, P, 13)) == ["rejected:NOTIONAL_ABOVE_MAX"]
    assert kinds(venue.place(2, BUY, P, 12)) == ["accepted"]


def test_open_order_limit_counts_resting_orders_only(implementation):
    venue = venue_with(implementation, risk=venue_config.RiskConfig(max_open_orders_per_account=2))
    assert kinds(venue.place(2, BUY, P - 1, 1)) == ["accepted"]
    assert kinds(venue.place(2, BUY, P - 2, 1)) == ["accepted"]
    assert kinds(venue.place(2, BUY, P - 3, 1)) == ["rejected:TOO_MANY_OPEN_ORDERS"]
    ioc = venue.place(2, BUY, P - 3, 1, tif=m.TimeInForce.IOC)
    assert kinds(ioc) == ["accepted", "canceled:unfilled"]


def test_pool_exhaustion_is_a_clean_reject(implementation):
    capacity = venue_config.CapacityConfig(orders=3, retired_orders=0)
    venue = venue_with(implementation, capacity=capacity)
    for i in range(3):
        assert kinds(venue.place(2, BUY, P - 1 - i, 1)) == ["accepted"]
    before = venue.state_ints()
    assert kinds(venue.place(3, BUY, P - 9, 1)) == ["rejected:CAPACITY_EXCEEDED"]
    assert venue.state_ints() == before
    venue.apply(m.CancelOrder(account=2, order_id=1))
    assert kinds(venue.place(3, BUY, P - 9, 1)) == ["accepted"]


def test_kill_switch_blocks_new_orders_but_not_cancels(implementation):
    venue = Venue(implementation)
    venue.place(2, BUY, P - 1, 1)
    venue.apply(m.SetKillSwitch(account=2, on=True))
    assert kinds(venue.place(2, BUY, P - 1, 1)) == ["rejected:KILL_SWITCH_ACTIVE"]
    venue.apply(m.SetKillSwitch(account=2, on=False))
    assert kinds(venue.place(2, BUY, P - 1, 1)) == ["accepted"]
    assert kinds(venue.apply(m.CancelOrder(account=2, order_id=2))) == ["canceled:user"]


def test_cancel_all_after_cancels_the_accounts_orders_at_its_deadline(implementation):
    venue = Venue(implementation)
    venue.place(2, BUY, P - 1, 1, client_order_id="a")
    venue.place(3, BUY, P - 2, 1)
    (armed,) = venue.apply(m.CancelAllAfter(account=2, timeout_ns=100), ts=1_000)
    assert (armed.deadline_ns, armed.fired) == (1_100, False)
    venue.apply(m.CancelAllAfter(account=2, timeout_ns=100), ts=1_050)  # a heartbeat: 1_150
    venue.place(2, SELL, P + 1, 1)
    assert venue.apply(m.Tick(), ts=1_149) == []
    events = venue.apply(m.Tick(), ts=1_150)
    assert kinds(events) == ["canceled:cancel_all_after"] * 2 + ["cancel_all_after"]
    (fired,) = [e for e in events if isinstance(e, m.CancelAllAfterSet)]
    assert (fired.account, fired.fired, fired.count, fired.deadline_ns) == (2, True, 2, 0)
    assert [i for _, ids in venue.book(BUY) for i, _ in ids] == [2]  # account 3 untouched
    assert venue.apply(m.Tick(), ts=5_000) == []  # fired once, then disarmed


def test_cancel_all_after_disarms_and_validates(implementation):
    venue = Venue(implementation)
    venue.place(2, BUY, P - 1, 1)
    venue.apply(m.CancelAllAfter(account=2, timeout_ns=10), ts=100)
    (disarmed,) = venue.apply(m.CancelAllAfter(account=2, timeout_ns=0), ts=105)
    assert disarmed.deadline_ns == 0
    assert venue.apply(m.Tick(), ts=1_000) == []
    assert kinds(venue.apply(m.CancelAllAfter(account=2, timeout_ns=-1))) == [
        "rejected:INVALID_TIMEOUT"
    ]
    assert kinds(venue.apply(m.CancelAllAfter(account=9, timeout_ns=5))) == [
        "rejected:UNKNOWN_ACCOUNT"
    ]


def test_band_follows_the_last_trade(implementation):
    venue = Venue(implementation)
    high = P + P // 10
    venue.place(2, SELL, high, 1)
    venue.place(3, BUY, high, 1)  # trades: the reference price is now `high`
    assert kinds(venue.place(3, BUY, high + high // 20, 1)) == ["accepted"]


def test_positions_average_entry_and_realized_pnl(implementation):
    venue = Venue(implementation)
    venue.place(2, SELL, P, 4)
    venue.place(3, BUY, P, 4)
    venue.place(2, SELL, P + 200, 10)
    venue.place(3, BUY, P + 200, 2)
    # account 3 is long 6 lots with cost 4*P + 2*(P+200) ticks x lots
    assert venue.position(3) == (6, 6 * P + 400, 0)
    venue.apply(m.MassCancel(account=2))
    venue.place(3, SELL, P + 400, 3)
    venue.place(4, BUY, P + 400, 3)
    removed = (6 * P + 400) * 3 // 6
    assert venue.position(3) == (3, 6 * P + 400 - removed, (P + 400) * 3 - removed)
    # account 2 sold 6 at two prices: short, nothing realized yet
    assert venue.position(2) == (-6, 4 * P + 2 * (P + 200), 0)


def test_position_flips_through_zero(implementation):
    venue = Venue(implementation)
    venue.place(2, SELL, P, 2)
    venue.place(3, BUY, P, 2)
    venue.place(4, BUY, P + 10, 5)
    venue.place(3, SELL, P + 10, 5)  # closes 2, opens a short of 3 at P + 10
    assert venue.position(3) == (-3, 3 * (P + 10), 20)


def test_an_assets_total_supply_is_capped(implementation):
    venue = Venue(implementation)
    supply = sum(venue.balance(a, USDT)[0] for a in (1, 2, 3, 4))
    room = (1 << 62) - supply
    assert kinds(venue.apply(m.Deposit(account=2, asset=USDT, amount=room + 1))) == [
        "rejected:INVALID_AMOUNT"
    ]
    assert kinds(venue.apply(m.Deposit(account=2, asset=USDT, amount=room))) == []
    assert kinds(venue.apply(m.Deposit(account=3, asset=USDT, amount=1))) == [
        "rejected:INVALID_AMOUNT"
    ]


def test_deposits_and_withdrawals(implementation):
    venue = Venue(implementation)
    total, _ = venue.balance(2, USDT)
    assert kinds(venue.apply(m.Deposit(account=2, asset=USDT, amount=5))) == []
    assert venue.balance(2, USDT) == (total + 5, 0)
    assert kinds(venue.apply(m.Deposit(account=2, asset=USDT, amount=0))) == [
        "rejected:INVALID_AMOUNT"
    ]
    assert kinds(venue.apply(m.Deposit(account=2, asset=7, amount=1))) == ["rejected:UNKNOWN_ASSET"]
    venue.place(2, BUY, P, 10)
    locked = venue.balance(2, USDT)[1]
    too_much = total + 5 - locked + 1
    assert kinds(venue.apply(m.Withdraw(account=2, asset=USDT, amount=too_much))) == [
        "rejected:INSUFFICIENT_BALANCE"
    ]
    assert kinds(venue.apply(m.Withdraw(account=2, asset=USDT, amount=too_much - 1))) == []
    assert venue.balance(2, USDT) == (locked, locked)
