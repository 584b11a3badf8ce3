"""A realistic mixed order flow for one book, as stamped COMMAND_DTYPE records.

Market makers on many accounts keep about `depth` orders resting near the
touch: mostly new passive orders, cancels and amends of live orders, and a
share of aggressive IOC orders that trade through the touch. The flow is
generated in chunks against a scratch engine, so its cancels and amends name
orders that are really live at the time (a few hit orders that filled earlier
in the same chunk, as in real traffic).
"""

import random

import numpy as np

from engine import config as venue_config
from engine.engine import Engine
from engine.messages import SIDE_CODE, STP_CODE, TIF_CODE, TYPE_CODE, Side, TimeInForce
from engine.records import COMMAND_DTYPE
from ext import core

BUY, SELL = SIDE_CODE[Side.BUY], SIDE_CODE[Side.SELL]
LIMIT = TYPE_CODE["limit"]
GTC, IOC = TIF_CODE[TimeInForce.GTC], TIF_CODE[TimeInForce.IOC]
CANCEL_NEWEST = STP_CODE["cancel_newest"]
MID = 5_000_000  # ticks: 50,000.00

# share of each command kind, in percent, when the book is at its target depth
MIX = {"add": 45, "cancel": 25, "amend": 20, "aggressive": 10}


def bench_config(accounts: int = 1000, orders: int = 1 << 16) -> venue_config.VenueConfig:
    """The demo's BTC-USDT with many funded accounts and room for the flow."""
    config = venue_config.demo(accounts=accounts)
    config.capacity = venue_config.CapacityConfig(orders=orders, retired_orders=orders // 4)
    return config


class FlowGenerator:
    def __init__(self, config, depth: int, seed: int):
        self.engine = Engine(config)
        self.accounts = len(config.accounts)
        self.depth = depth
        self.rng = random.Random(seed)
        self.seq = 0

    def _book(self):
        bids = self.engine.core.book(0, BUY)
        asks = self.engine.core.book(0, SELL)
        live = [(order_id, BUY, price) for price, _, ids in bids for order_id in ids]
        live += [(order_id, SELL, price) for price, _, ids in asks for order_id in ids]
        best_bid = bids[0][0] if bids else MID - 1
        best_ask = asks[0][0] if asks else MID + 1
        return live, best_bid, best_ask

    def chunk(self, out: np.ndarray):
        """Fill out with the next len(out) commands and apply them to the scratch engine."""
        rng = self.rng
        live, best_bid, best_ask = self._book()
        owner = {}
        next_id = self.engine.core.next_order_id
        out.view(np.uint8)[:] = 0
        for i in range(len(out)):
            self.seq += 1
            r = out[i : i + 1]
            r["seq"] = self.seq
            r["ts_ns"] = self.seq * 1000
            r["stp"] = CANCEL_NEWEST
            kind = self._kind(len(live))
            if kind in ("cancel", "amend") and live:
                order_id, side, price = live.pop(rng.randrange(len(live)))
                r["order_id"] = order_id
                r["account"] = owner.get(order_id) or self._owner(order_id)
                if kind == "cancel":
                    r["type"] = core.CommandType.CMD_CANCEL
                    continue
                r["type"] = core.CommandType.CMD_AMEND
                if rng.random() < 0.5:
                    r["qty"] = 1 + rng.randrange(5)  # usually down: keeps priority
                else:
                    step = 1 + rng.randrange(3)
                    price = price - step if side == BUY else price + step
                    r["price"] = price
                live.append((order_id, side, price))
                continue
            side = BUY if rng.random() < 0.5 else SELL
            account = 1 + rng.randrange(self.accounts)
            r["type"] = core.CommandType.CMD_PLACE
            r["account"] = account
            r["order_type"] = LIMIT
            r["side"] = side
            if kind == "aggressive":
                through = rng.randrange(4)
                r["price"] = best_ask + through if side == BUY else best_bid - through
                r["qty"] = 1 + rng.randrange(30)
                r["tif"] = IOC
                next_id += 1  # accepted, then filled or canceled: it uses an id
            else:
                away = rng.randrange(20)
                price = (best_bid - away) if side == BUY else (best_ask + away)
                if best_ask - best_bid > 2 and rng.random() < 0.3:
                    price = best_bid + 1 if side == BUY else best_ask - 1  # improve the touch
                r["price"] = price
                r["qty"] = 1 + rng.randrange(10)
                r["tif"] = GTC
                owner[next_id] = account
                live.append((next_id, side, price))
                next_id += 1
        self.engine.core.apply_batch(out.view(np.uint8))
        self.engine.core.clear_events()

    def _kind(self, n_live: int) -> str:
        roll = self.rng.randrange(100)
        if n_live < self.depth * 0.9:
            return "add" if roll < 70 else "aggressive" if roll < 75 else "amend"
        if n_live > self.depth * 1.1:
            return "cancel" if roll < 60 else "add"
        for kind, share in MIX.items():
            if roll < share:
                return kind
            roll -= share
        return "add"

    def _owner(self, order_id: int) -> int:
        return self.engine.core.order(order_id)["account"]


def mixed_flow(n: int, depth: int = 1000, accounts: int = 1000, seed: int = 1, chunk: int = 1000):
    """(config, records): n stamped commands of the mixed flow on a fresh venue."""
    config = bench_config(accounts)
    generator = FlowGenerator(config, depth, seed)
    records = np.zeros(n, dtype=COMMAND_DTYPE)
    for start in range(0, n, chunk):
        generator.chunk(records[start : start + chunk])
    return config, records
