"""The demo's built-in market maker: keeps a few levels on both sides of every
book, around a mid price that wanders, so a demo venue has something to trade
against. It sends ordinary commands through the command ring, like any client.
"""

import asyncio
import random

from engine import messages as m
from engine.records import command_record

ACCOUNT = 1  # the demo's market-maker account
LEVELS = 5
INTERVAL_S = 0.5


def quotes(spec, mid: int, rng: random.Random) -> list[m.Command]:
    """Cancel the maker's orders on this book, then a fresh ladder around mid."""
    commands: list[m.Command] = [m.MassCancel(account=ACCOUNT, instrument=spec.index)]
    step = max(1, mid // 20_000)  # levels half a basis point apart
    for level in range(1, LEVELS + 1):
        qty = spec.min_qty * rng.randint(1, 20)
        for side, price in ((m.Side.BUY, mid - level * step), (m.Side.SELL, mid + level * step)):
            commands.append(m.PlaceOrder(
                account=ACCOUNT, instrument=spec.index, side=side, type=m.OrderType.LIMIT,
                qty=qty, price=price, post_only=True,
            ))  # fmt: skip
    return commands


async def run(submit, specs, seed: int = 0):
    """Requote every INTERVAL_S until cancelled. `submit` takes command records."""
    rng = random.Random(seed)
    mids = {spec.index: spec.reference_price for spec in specs}
    while True:
        for spec in specs:
            # a random walk of up to a basis point a step, kept within 2% of the reference
            mid = mids[spec.index] + rng.randint(-1, 1) * max(1, mids[spec.index] // 10_000)
            bound = spec.reference_price // 50
            mids[spec.index] = min(max(mid, spec.reference_price - bound),
                                   spec.reference_price + bound)  # fmt: skip
            records = b"".join(command_record(c) for c in quotes(spec, mids[spec.index], rng))
            submit(records)  # a full ring drops this round of quotes; the next one follows
        await asyncio.sleep(INTERVAL_S)
