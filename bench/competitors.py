"""Operation throughput of third-party order books driven through their Python APIs.

Two open-source books are measured on the same deterministic operation streams:

* ``nanobook`` (Rust, PyO3 bindings): ``Exchange.submit_limit`` / ``Exchange.cancel``.
* ``liquibook`` (C++, SWIG bindings): ``OrderBook.add`` / ``OrderBook.cancel`` on
  ``SimpleOrder`` objects.

The streams come from :func:`operation_streams` and are plain tuples, so any engine
can replay them: implement the small :class:`BookAdapter` protocol and call
:func:`run_streams`.  Each timed operation is exactly one submission or cancel
through the engine's Python API.

Both packages are imported lazily so that this module (and the streams) stay
usable when they are not installed.
"""

import gc
import importlib.metadata
import random
import time
from typing import Any, Protocol

MID_PRICE = 100_000
"""Centre of the synthetic book, in ticks."""

PRICE_BAND = 50
"""Passive orders rest 1..PRICE_BAND ticks away from MID_PRICE on their own side."""

MAX_QTY = 100
"""Order quantities are drawn uniformly from 1..MAX_QTY lots."""

SETUP, TIMED = "setup", "timed"
LIMIT, IOC, CANCEL = "limit", "ioc", "cancel"
BUY, SELL = "buy", "sell"

# An operation is (phase, action, ref, side, price, qty):
#   phase   SETUP (applied untimed, in order) or TIMED (the measured loop)
#   action  LIMIT  - passive good-till-cancel limit order that must rest
#           IOC    - marketable immediate-or-cancel limit order
#           CANCEL - cancel the order previously submitted with the same ref
#   ref     stream-local order reference (unique per submitted order)
#   side, price, qty
#           of the submitted order; a CANCEL repeats those of the order it
#           cancels, for engines that need them to locate the order.
Op = tuple[str, str, int, str, int, int]


def _passive_order(rng: random.Random, index: int) -> tuple[str, int, int]:
    """Side alternates with ``index``; the price never reaches the other side."""
    offset = 1 + rng.randrange(PRICE_BAND)
    qty = 1 + rng.randrange(MAX_QTY)
    if index % 2 == 0:
        return BUY, MID_PRICE - offset, qty
    return SELL, MID_PRICE + offset, qty


def _insert_stream(n_ops: int, depth: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    for ref in range(depth + n_ops):
        phase = SETUP if ref < depth else TIMED
        ops.append((phase, LIMIT, ref, *_passive_order(rng, ref)))
    return ops


def _rounds(n_ops: int, book_orders: int) -> list[int]:
    """Round sizes: n_ops operations, at most book_orders in each round."""
    return [min(book_orders, n_ops - start) for start in range(0, n_ops, book_orders)]


def _cancel_stream(n_ops: int, book_orders: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    first = 0
    for size in _rounds(n_ops, book_orders):
        resting = [_passive_order(rng, ref) for ref in range(first, first + size)]
        ops.extend((SETUP, LIMIT, first + i, *order) for i, order in enumerate(resting))
        order_of_cancels = list(range(size))
        rng.shuffle(order_of_cancels)
        ops.extend((TIMED, CANCEL, first + i, *resting[i]) for i in order_of_cancels)
        first += size
    return ops


def _aggressive_round(first: int, size: int, rng: random.Random) -> list[Op]:
    resting = [_passive_order(rng, ref) for ref in range(size)]
    ops: list[Op] = [(SETUP, LIMIT, first + i, *order) for i, order in enumerate(resting)]

    # Price-time priority of the resting book: best price first, FIFO within a price.
    bids = sorted(
        (r for r in range(size) if resting[r][0] == BUY), key=lambda r: (-resting[r][1], r)
    )
    asks = sorted(
        (r for r in range(size) if resting[r][0] == SELL), key=lambda r: (resting[r][1], r)
    )

    # Each taker is limited at the price of the order at the head of the queue and
    # carries exactly its quantity, so it produces one trade that fully fills both
    # orders and cannot walk to a second order.  Takers alternate sides while both
    # sides have liquidity left.
    next_bid = next_ask = 0
    for k in range(size):
        if next_bid == len(bids) or (k % 2 == 0 and next_ask < len(asks)):
            _, price, qty = resting[asks[next_ask]]
            next_ask += 1
            ops.append((TIMED, IOC, first + size + k, BUY, price, qty))
        else:
            _, price, qty = resting[bids[next_bid]]
            next_bid += 1
            ops.append((TIMED, IOC, first + size + k, SELL, price, qty))
    return ops


def _aggressive_stream(n_ops: int, book_orders: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    first = 0
    for size in _rounds(n_ops, book_orders):
        ops.extend(_aggressive_round(first, size, rng))
        first += 2 * size
    return ops


def operation_streams(
    n_ops: int, depth: int, seed: int, book_orders: int | None = None
) -> dict[str, list[tuple]]:
    """Build the three deterministic operation streams.

    ``insert``:     ``depth`` resting orders (setup), then ``n_ops`` passive limit
                    orders (timed).  All orders alternate buy/sell and sit 1..PRICE_BAND
                    ticks from ``MID_PRICE`` on their own side, so nothing crosses.
    ``cancel``:     rounds of ``book_orders`` resting orders (setup), then one cancel
                    for each of them in random order (timed); every round ends with
                    an empty book, and the rounds add up to ``n_ops`` cancels.
    ``aggressive``: rounds of ``book_orders`` resting orders (setup), then as many
                    IOC limit orders (timed), each of which fully fills against
                    exactly one resting order of equal quantity; every round ends
                    with an empty book, after ``n_ops`` trades in all.

    ``book_orders`` defaults to ``n_ops``: one round, the whole stream resting at
    once.  Each round lists its setup operations first.  The streams depend only
    on (n_ops, depth, seed, book_orders).
    """
    book_orders = n_ops if book_orders is None else book_orders
    if n_ops < 1 or book_orders < 1:
        raise ValueError("n_ops and book_orders must be positive")
    if depth < 0:
        raise ValueError("depth must be non-negative")

    def rng(name: str) -> random.Random:
        # String seeds are hashed with SHA-512, independent of PYTHONHASHSEED.
        return random.Random(f"flowgate-bench:{name}:{seed}")

    return {
        "insert": _insert_stream(n_ops, depth, rng("insert")),
        "cancel": _cancel_stream(n_ops, book_orders, rng("cancel")),
        "aggressive": _aggressive_stream(n_ops, book_orders, rng("aggressive")),
    }


def expected_outcome(stream: list[tuple]) -> dict[str, int]:
    """Book state after replaying ``stream``, derived from its construction rules.

    Every LIMIT rests, every CANCEL removes one resting order, and every IOC fully
    fills exactly one resting order of the same quantity.
    """
    orders = qty = trades = 0
    for _, action, _, _, _, order_qty in stream:
        if action == LIMIT:
            orders += 1
            qty += order_qty
        else:
            orders -= 1
            qty -= order_qty
            trades += action == IOC
    return {"resting_orders": orders, "resting_qty": qty, "trades": trades}


class BookAdapter(Protocol):
    """What :func:`run_streams` needs from an engine.

    ``prepare`` turns the timed operations into the engine's native arguments
    before the clock starts; ``execute`` is the timed loop and must make exactly
    one engine call per operation (plus building any order object the API insists
    on).
    """

    name: str
    version: str

    def reset(self) -> None:
        """Start from a fresh, empty book."""

    def place(self, side: str, price: int, qty: int) -> Any:
        """Untimed: rest a GTC limit order; return the handle ``prepare`` needs to cancel it."""

    def prepare(self, action: str, ops: list[tuple], handles: dict[int, Any]) -> Any:
        """Untimed: native arguments for a homogeneous list of timed ops."""

    def execute(self, action: str, args: Any) -> None:
        """Timed: submit every prepared operation."""

    def resting(self) -> tuple[int, int]:
        """Number of resting orders and their total open quantity."""

    def trade_count(self) -> int | None:
        """Trades since the last reset, or None if the engine cannot report it cheaply."""


def _round_blocks(stream: list[tuple]) -> list[tuple[list[tuple], list[tuple]]]:
    """The stream's rounds: (setup ops, timed ops) in order."""
    blocks: list[tuple[list[tuple], list[tuple]]] = []
    for op in stream:
        timed = op[0] == TIMED
        if not blocks or (not timed and blocks[-1][1]):  # a setup after timed ops opens a round
            blocks.append(([], []))
        blocks[-1][timed].append(op)
    return blocks


def _replay(adapter: BookAdapter, stream: list[tuple]) -> tuple[int, int]:
    """Replay ``stream`` on a fresh book, verify the result, return (timed ops, ns).

    Rounds run one after the other on the same book; only their timed
    operations are on the clock."""
    blocks = _round_blocks(stream)
    actions = {op[1] for _, timed in blocks for op in timed}
    if len(actions) != 1:
        raise ValueError(f"timed operations must share one action, got {sorted(actions)}")
    (action,) = actions

    adapter.reset()
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    timed_ops = elapsed_ns = 0
    try:
        for setup, timed in blocks:
            handles = {
                ref: adapter.place(side, price, qty) for _, _, ref, side, price, qty in setup
            }
            args = adapter.prepare(action, timed, handles)
            start = time.perf_counter_ns()
            adapter.execute(action, args)
            elapsed_ns += time.perf_counter_ns() - start
            timed_ops += len(timed)
            del handles, args
    finally:
        if gc_was_enabled:
            gc.enable()

    expected = expected_outcome(stream)
    orders, qty = adapter.resting()
    trades = adapter.trade_count()
    if (orders, qty) != (expected["resting_orders"], expected["resting_qty"]) or (
        trades is not None and trades != expected["trades"]
    ):
        raise RuntimeError(
            f"{adapter.name}: book state after {action} stream is "
            f"orders={orders} qty={qty} trades={trades}, expected {expected}"
        )
    adapter.reset()
    return timed_ops, elapsed_ns


def run_stream(adapter: BookAdapter, stream: list[tuple], warmup: bool = True) -> float:
    """Replay ``stream`` on a fresh book and return the timed operations per second.

    Setup operations and argument preparation are untimed.  The timed region is the
    single ``adapter.execute`` call, with the cyclic garbage collector disabled and
    ``time.perf_counter_ns`` read immediately around it.  The book state is
    checked against :func:`expected_outcome` after every replay; a mismatch raises
    ``RuntimeError``.

    With ``warmup`` the whole replay is run once first and its timing discarded:
    the first large replay in a process also pays for faulting in fresh heap
    pages, which would otherwise penalise whichever engine happens to run first.
    """
    if warmup:
        _replay(adapter, stream)
    n, elapsed_ns = _replay(adapter, stream)
    return n * 1e9 / elapsed_ns


def run_streams(
    adapter: BookAdapter, streams: dict[str, list[tuple]], warmup: bool = True
) -> dict[str, Any]:
    """Run every stream through ``adapter``; keys are ``<stream>_ops_per_s``."""
    result: dict[str, Any] = {"version": adapter.version}
    for name, stream in streams.items():
        result[f"{name}_ops_per_s"] = run_stream(adapter, stream, warmup)
    return result


def _package_version(dist: str, module: Any) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


class NanobookAdapter:
    """``nanobook.Exchange`` through its PyO3 API.

    Orders are addressed by the integer ``order_id`` of the ``SubmitResult``.  The
    exchange keeps every trade, every order (including filled and cancelled ones)
    and, in the PyPI build, an event log entry per call; ``clear_trades`` and
    ``clear_order_history`` release the first two but the event log cannot be
    cleared from Python, so a long-lived exchange grows without bound.  Each phase
    therefore runs on its own ``Exchange`` that is dropped afterwards.
    """

    name = "nanobook"

    def __init__(self) -> None:
        import nanobook

        self._nanobook = nanobook
        self.version = _package_version("nanobook", nanobook)
        self._exchange = nanobook.Exchange()

    def reset(self) -> None:
        self._exchange = self._nanobook.Exchange()

    def place(self, side: str, price: int, qty: int) -> int:
        return self._exchange.submit_limit(side, price, qty, "gtc").order_id

    def prepare(self, action: str, ops: list[tuple], handles: dict[int, Any]) -> list:
        if action == CANCEL:
            return [handles[op[2]] for op in ops]
        return [(side, price, qty) for _, _, _, side, price, qty in ops]

    def execute(self, action: str, args: list) -> None:
        if action == CANCEL:
            cancel = self._exchange.cancel
            for order_id in args:
                cancel(order_id)
            return
        submit_limit = self._exchange.submit_limit
        tif = "gtc" if action == LIMIT else "ioc"
        for side, price, qty in args:
            submit_limit(side, price, qty, tif)

    def resting(self) -> tuple[int, int]:
        book = self._exchange.full_book()
        levels = book.bids + book.asks
        return sum(level.order_count for level in levels), sum(level.quantity for level in levels)

    def trade_count(self) -> int:
        return len(self._exchange.trades())


def _fill_counting_listener(liquibook: Any) -> Any:
    """An ``OrderListener`` that counts fills.

    Every notification becomes a Python upcall, so it is only for correctness
    checks.  All listener methods are pure virtual in C++ and must be defined.
    """

    class FillCounter(liquibook.OrderListener):
        def __init__(self) -> None:
            super().__init__()
            self.fills = 0

        def on_accept(self, order):
            pass

        def on_reject(self, order, reason):
            pass

        def on_fill(self, order, matched_order, fill_qty, fill_cost):
            self.fills += 1

        def on_cancel(self, order):
            pass

        def on_cancel_reject(self, order, reason):
            pass

        def on_replace(self, order, size_delta, new_price):
            pass

        def on_replace_reject(self, order, reason):
            pass

        def on_trigger_stop(self, order):
            pass

    return FillCounter()


class LiquibookAdapter:
    """LiquiBook's ``OrderBook<shared_ptr<SimpleOrder>>`` through its SWIG API.

    The plain ``liquibook_book_OrderBook`` is used: it is the matching engine
    without the depth aggregation of ``DepthOrderBook`` (which is slower), and the
    wrapped ``SimpleOrderBook`` exposes no ``add``/``cancel``.  Listeners are
    optional; without one the book still matches correctly, but ``SimpleOrder``'s
    own state and quantities are never updated (the book tracks open quantity
    internally).  IOC must be passed as ``add(order, oc_immediate_or_cancel)``: the
    condition given to the ``SimpleOrder`` constructor is ignored by the book.
    Orders are identified by object identity, not ``order_id_``, so cancelling
    needs the ``SimpleOrder`` that was added, and the book finds it by a linear
    scan of the orders at its price.
    """

    name = "liquibook"

    def __init__(self, count_fills: bool = False) -> None:
        import liquibook

        self._liquibook = liquibook
        self.version = _package_version("liquibook", liquibook)
        self._count_fills = count_fills
        self.reset()

    def reset(self) -> None:
        self._book = self._liquibook.liquibook_book_OrderBook()
        # The book stores a raw pointer to the listener: keeping the reference here
        # is what keeps it alive (dropping it leads to a segfault on the next add).
        self._listener = None
        if self._count_fills:
            self._listener = _fill_counting_listener(self._liquibook)
            self._book.set_order_listener(self._listener)

    def place(self, side: str, price: int, qty: int) -> Any:
        order = self._liquibook.SimpleOrder(side == BUY, price, qty)
        self._book.add(order)
        return order

    def prepare(self, action: str, ops: list[tuple], handles: dict[int, Any]) -> list:
        if action == CANCEL:
            return [handles[op[2]] for op in ops]
        return [(side == BUY, price, qty) for _, _, _, side, price, qty in ops]

    def execute(self, action: str, args: list) -> None:
        book = self._book
        if action == CANCEL:
            cancel = book.cancel
            for order in args:
                cancel(order)
            return
        add = book.add
        simple_order = self._liquibook.SimpleOrder
        if action == LIMIT:
            for is_buy, price, qty in args:
                add(simple_order(is_buy, price, qty))
        else:
            ioc = self._liquibook.oc_immediate_or_cancel
            for is_buy, price, qty in args:
                add(simple_order(is_buy, price, qty), ioc)

    def resting(self) -> tuple[int, int]:
        orders = qty = 0
        for side in (self._book.bids(), self._book.asks()):
            orders += side.size()
            qty += sum(tracker.open_qty() for tracker in side.values())
        return orders, qty

    def trade_count(self) -> int | None:
        return self._listener.fills if self._listener is not None else None
