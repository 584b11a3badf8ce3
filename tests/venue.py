"""One test interface over both implementations: the Cython core (through the
`Engine` facade) and the pure-Python reference."""

from engine import config as venue_config
from engine import messages as m
from engine.engine import Engine
from tests.reference.model import ReferenceEngine

REF = 5_000_000  # BTC-USDT reference price in the demo config, ticks
IMPLEMENTATIONS = ["core", "reference"]


def make_config(**changes):
    config = venue_config.demo(accounts=4)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


class Venue:
    """Applies commands with a clock that advances one nanosecond per command."""

    def __init__(self, implementation: str, config=None):
        self.config = config or make_config()
        self.implementation = implementation
        if implementation == "core":
            self.engine = Engine(self.config)
        else:
            self.engine = ReferenceEngine(self.config)
        self.ts = 0

    def apply(self, command: m.Command, ts: int | None = None) -> list[m.Event]:
        self.ts = self.ts + 1 if ts is None else ts
        return self.engine.apply(command, self.ts)

    def place(self, account, side, price, qty, **fields) -> list[m.Event]:
        fields.setdefault("type", m.OrderType.LIMIT)
        return self.apply(
            m.PlaceOrder(account=account, instrument=0, side=side, price=price, qty=qty, **fields)
        )

    def book(self, side: m.Side, instrument: int = 0):
        """[(price, [(order_id, leaves), ...]), ...], best price first."""
        if self.implementation == "core":
            levels = self.engine.core.book(instrument, m.SIDE_CODE[side])

            def leaves(order_id):
                return self.engine.core.order(order_id)["leaves"]
        else:
            levels = self.engine.book(instrument, side)

            def leaves(order_id):
                return self.engine.by_id[order_id].leaves

        return [(price, [(i, leaves(i)) for i in ids]) for price, _, ids in levels]

    def balance(self, account, asset):
        if self.implementation == "core":
            return self.engine.core.balance(account, asset)
        return tuple(self.engine.balances[account, asset])

    def position(self, account, instrument=0):
        if self.implementation == "core":
            return self.engine.core.position(account, instrument)
        return tuple(self.engine.positions[account, instrument])

    def state_ints(self):
        if self.implementation == "core":
            return self.engine.core.state_ints()
        return self.engine.state_ints()


def kinds(events) -> list[str]:
    """Event kinds without balance and position updates, with a reason or code."""
    out = []
    for e in events:
        kind = type(e).__struct_config__.tag
        if isinstance(e, m.BalanceChanged | m.PositionChanged):
            continue
        if isinstance(e, m.OrderCanceled):
            kind += f":{e.reason}"
        elif isinstance(e, m.OrderRejected):
            kind += f":{e.code}"
        elif isinstance(e, m.OrderAmended):
            kind += ":kept" if e.priority_kept else ":lost"
        out.append(kind)
    return out
