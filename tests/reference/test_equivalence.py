"""Random command streams through the Cython core and the pure-Python reference:
identical events, balances, positions and state hash after every command, and
the venue's invariants hold throughout."""

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import config as venue_config
from engine import messages as m
from engine.engine import Engine, state_hash
from tests.reference.invariants import check_invariants
from tests.reference.model import ReferenceEngine

ACCOUNTS = [1, 2, 3]
REFERENCE = {0: 5_000_000, 1: 300_000}  # reference prices in ticks


def small_config():
    config = venue_config.demo(accounts=3)
    # small capacities so eviction, exhaustion and open-order limits are reached
    config.capacity = venue_config.CapacityConfig(orders=24, retired_orders=6)
    config.risk = venue_config.RiskConfig(max_open_orders_per_account=6)
    config.accounts[2].balances = {"BTC": "0.002", "USDT": "100"}
    return config


coids = st.sampled_from(["", "", "", "a", "b", "c"])


@st.composite
def valid_places(draw):
    instrument = draw(st.sampled_from([0, 0, 0, 1]))
    order_type = draw(st.sampled_from([m.OrderType.LIMIT] * 5 + [m.OrderType.MARKET]))
    if order_type == m.OrderType.MARKET:
        tif, price, post_only = (
            draw(st.sampled_from([m.TimeInForce.IOC, m.TimeInForce.FOK])),
            0,
            False,
        )
    else:
        tif = draw(st.sampled_from([m.TimeInForce.GTC] * 4 + list(m.TimeInForce)))
        price = REFERENCE[instrument] + draw(st.integers(-6, 6))
        post_only = tif in (m.TimeInForce.GTC, m.TimeInForce.GTD) and draw(st.booleans())
    return m.PlaceOrder(
        account=draw(st.sampled_from(ACCOUNTS)),
        instrument=instrument,
        side=draw(st.sampled_from(m.Side)),
        type=order_type,
        qty=draw(st.integers(1, 12)),
        price=price,
        tif=tif,
        post_only=post_only,
        stp=draw(st.sampled_from(m.SelfTradePrevention)),
        client_order_id=draw(coids),
        expire_ns=draw(st.sampled_from([60, 300, 900, 3000])) if tif == m.TimeInForce.GTD else 0,
    )


# anything at all, to exercise every rejection
wild_places = st.builds(
    m.PlaceOrder,
    account=st.sampled_from(ACCOUNTS + [0, 9]),
    instrument=st.sampled_from([0, 1, 5, -1]),
    side=st.sampled_from(m.Side),
    type=st.sampled_from(m.OrderType),
    qty=st.sampled_from([0, -3, 1, 10**6 + 1, 10**9]),
    price=st.sampled_from([0, -1, 1, 4_400_000, 5_000_000, 5_600_000, 10**8 + 1]),
    tif=st.sampled_from(m.TimeInForce),
    post_only=st.booleans(),
    stp=st.sampled_from(m.SelfTradePrevention),
    client_order_id=coids | st.just("x" * 37),
    expire_ns=st.sampled_from([0, 1, 10**6]),
)
order_refs = st.integers(1, 60)
cancels = st.builds(m.CancelOrder, account=st.sampled_from(ACCOUNTS), order_id=order_refs)
amends = st.builds(m.AmendOrder, account=st.sampled_from(ACCOUNTS), order_id=order_refs,
                   price=st.just(0) | st.integers(-6, 6).map(lambda d: REFERENCE[0] + d),
                   qty=st.integers(0, 14))  # fmt: skip

# (weight, strategy): mostly valid orders, and cancels and amends of live ids
WEIGHTED = [
    (40, valid_places()),
    (4, wild_places),
    (12, cancels),
    (14, amends),
    (3, st.builds(m.CancelOrder, account=st.sampled_from(ACCOUNTS), client_order_id=coids)),
    (
        3,
        st.builds(
            m.AmendOrder,
            account=st.sampled_from(ACCOUNTS),
            client_order_id=coids,
            price=st.sampled_from([0, -1, REFERENCE[0], 10**8]),
            qty=st.sampled_from([0, -1, 1, 5, 10**7]),
        ),
    ),
    (
        2,
        st.builds(
            m.MassCancel,
            account=st.sampled_from(ACCOUNTS),
            instrument=st.sampled_from([-1, 0, 1, 7]),
            side=st.sampled_from([None, m.Side.BUY, m.Side.SELL]),
        ),
    ),
    (
        2,
        st.builds(
            m.Deposit,
            account=st.sampled_from(ACCOUNTS + [9]),
            asset=st.sampled_from([0, 2, 3]),
            amount=st.sampled_from([0, 10**6, 10**9, 1 << 62]),
        ),
    ),
    (
        2,
        st.builds(
            m.Withdraw,
            account=st.sampled_from(ACCOUNTS),
            asset=st.sampled_from([0, 2]),
            amount=st.sampled_from([1, 10**6, 10**14]),
        ),
    ),
    (1, st.builds(m.SetKillSwitch, account=st.sampled_from(ACCOUNTS), on=st.booleans())),
    (
        2,
        st.builds(
            m.CancelAllAfter,
            account=st.sampled_from(ACCOUNTS + [9]),
            timeout_ns=st.sampled_from([0, 1, 30, 100, 400, -1, 86_400 * 10**9 + 1]),
        ),
    ),
    (3, st.builds(m.Tick)),
]


def _pick(k):
    for weight, strategy in WEIGHTED:
        if k < weight:
            return strategy
        k -= weight
    raise AssertionError(k)


commands = st.integers(0, sum(w for w, _ in WEIGHTED) - 1).flatmap(_pick)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(commands, st.integers(0, 40)), min_size=20, max_size=150))
def test_core_matches_reference(stream):
    config = small_config()
    engine, reference = Engine(config), ReferenceEngine(config)
    ts = 0
    for step, (command, dt) in enumerate(stream):
        ts += dt
        got = engine.apply(command, ts)
        want = reference.apply(command, ts)
        assert msgspec.to_builtins(got) == msgspec.to_builtins(want), f"step {step}: {command}"
        assert engine.core.state_ints() == reference.state_ints(), f"step {step}: {command}"
        check_invariants(engine, config)
    assert engine.state_hash() == state_hash(reference.state_ints())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_core_matches_reference_on_live_orders(data):
    """Cancels and amends aimed at orders that are live at the time."""
    config = small_config()
    engine, reference = Engine(config), ReferenceEngine(config)
    ts = 0
    for step in range(data.draw(st.integers(20, 120), label="steps")):
        live = [o for orders in reference.account_orders.values() for o in orders]
        if live and data.draw(st.integers(0, 2)) == 0:
            o = data.draw(st.sampled_from(live))
            crossing = o.price + (3 if o.side == m.Side.BUY else -3)
            command = data.draw(
                st.sampled_from(
                    [
                        m.CancelOrder(o.account, o.order_id),
                        m.AmendOrder(o.account, o.order_id, qty=max(1, o.leaves + o.filled - 1)),
                        m.AmendOrder(o.account, o.order_id, qty=o.leaves + o.filled + 3),
                        m.AmendOrder(o.account, o.order_id, price=o.price + 1),
                        m.AmendOrder(o.account, o.order_id, price=o.price - 2, qty=o.filled + 1),
                        m.AmendOrder(o.account, o.order_id, price=crossing),
                    ]
                )
            )  # fmt: skip
        else:
            command = data.draw(commands)
        ts += data.draw(st.integers(0, 40))
        got, want = engine.apply(command, ts), reference.apply(command, ts)
        assert msgspec.to_builtins(got) == msgspec.to_builtins(want), f"step {step}: {command}"
        assert engine.core.state_ints() == reference.state_ints(), f"step {step}: {command}"
        check_invariants(engine, config)
