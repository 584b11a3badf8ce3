"""The gateways' read model of the venue, kept from the event stream alone.

A `VenueView` starts from the core's state at some seq (the in-process engine
itself, or the snapshot the engine process writes when it is ready) and then
applies every event batch the engine publishes, in order. It holds what the
gateways answer queries and build streams from: the L2 book of every
instrument, open orders, balances and positions. It never reaches into the
engine.

Events are read as plain tuples (`core.event_tuples`), which is several
times cheaper than numpy records field by field; `E_*` name the tuple's
indexes, in the order of ext/core.pxd EventRecord.
"""

import bisect
from collections import defaultdict

import msgspec

from engine.config import InstrumentSpec
from ext import core

(E_SEQ, E_TS, E_RECV, E_TAG, E_ORDER_ID, E_PRICE, E_QTY, E_LEAVES, E_FILLED, E_FILLED_QUOTE,
 E_EXPIRE, E_TRADE_ID, E_MAKER_ORDER_ID, E_MAKER_LEAVES, E_TAKER_FEE, E_MAKER_FEE, E_TOTAL,
 E_LOCKED, E_NET_QTY, E_COST, E_REALIZED_PNL, E_ACCOUNT, E_INSTRUMENT, E_MAKER_ACCOUNT, E_RESULT,
 E_TYPE, E_CMD_TYPE, E_SIDE, E_ORDER_TYPE, E_TIF, E_STP, E_STATUS, E_REASON, E_FLAGS, E_COID_LEN,
 E_COID) = range(36)  # fmt: skip

BUY, SELL = int(core.Side.SIDE_BUY), int(core.Side.SIDE_SELL)
LIMIT = int(core.OrderType.TYPE_LIMIT)
RESTING_TIFS = (int(core.TimeInForce.TIF_GTC), int(core.TimeInForce.TIF_GTD))
NEW = int(core.OrderStatus.STATUS_NEW)
PARTIALLY_FILLED = int(core.OrderStatus.STATUS_PARTIALLY_FILLED)
FILLED = int(core.OrderStatus.STATUS_FILLED)
ENDED = (int(core.OrderStatus.STATUS_CANCELED), int(core.OrderStatus.STATUS_EXPIRED))
BY_TIMER = int(core.CancelReason.REASON_CANCEL_ALL_AFTER)
_EV = core.EventType
ACCEPTED, REJECTED, TRADE = int(_EV.EV_ACCEPTED), int(_EV.EV_REJECTED), int(_EV.EV_TRADE)
CANCELED, EXPIRED, AMENDED = int(_EV.EV_CANCELED), int(_EV.EV_EXPIRED), int(_EV.EV_AMENDED)
BALANCE, POSITION, ORDER_STATE = int(_EV.EV_BALANCE), int(_EV.EV_POSITION), int(_EV.EV_ORDER_STATE)
MASS_CANCELED, CANCEL_ALL_AFTER = int(_EV.EV_MASS_CANCELED), int(_EV.EV_CANCEL_ALL_AFTER)
FLAG_LAST = int(core.EventFlag.FLAG_LAST)
FLAG_POST_ONLY = int(core.EventFlag.FLAG_POST_ONLY)
FLAG_PRIORITY_KEPT = int(core.EventFlag.FLAG_PRIORITY_KEPT)


def events_of(batch) -> list[tuple]:
    """The batch's events; an event's client order id is text."""
    return core.event_tuples(batch)


class OrderView(msgspec.Struct, gc=False):
    """An order as its events left it (core codes, integer units). Holds no
    containers, so the cyclic GC need not track the many alive at once. Once
    the view has handed one out it is not changed: a fill replaces it."""

    order_id: int
    account: int
    instrument: int
    side: int
    type: int
    tif: int
    stp: int
    post_only: bool
    price: int
    qty: int
    leaves: int
    filled: int
    filled_quote: int  # ticks x lots
    status: int
    expire_ns: int
    client_order_id: str
    ts_ns: int  # of the last change
    reason: int = 0  # why it was canceled
    reject_code: str = ""  # why it was refused (a placement the engine refused)


def order_of(event: tuple) -> OrderView:
    """The order an ACCEPTED, AMENDED, ORDER_STATE, CANCELED or EXPIRED event describes."""
    return OrderView(
        event[E_ORDER_ID], event[E_ACCOUNT], event[E_INSTRUMENT], event[E_SIDE],
        event[E_ORDER_TYPE], event[E_TIF], event[E_STP], bool(event[E_FLAGS] & FLAG_POST_ONLY),
        event[E_PRICE], event[E_QTY], event[E_LEAVES], event[E_FILLED], event[E_FILLED_QUOTE],
        event[E_STATUS], event[E_EXPIRE],
        event[E_COID], event[E_TS], event[E_REASON],
    )  # fmt: skip


def ended_by_timer(event: tuple) -> bool:
    """Whether a CANCELED or EXPIRED event is a timer's that came due as a
    command came in (a GTD expiry, a dead man's switch): it carries that
    command's tag, but the command did not end the order."""
    return event[E_TYPE] == EXPIRED or event[E_REASON] == BY_TIMER


class BookView:
    """The L2 book of one instrument: total resting quantity per price level,
    and each side's prices kept sorted, so the best levels cost O(depth)."""

    def __init__(self, spec: InstrumentSpec):
        self.spec = spec
        self.levels = {BUY: {}, SELL: {}}  # side -> {price ticks: total lots}
        self.prices = {BUY: [], SELL: []}  # side -> its prices, ascending
        self.seq = 0  # of the last published change (the book channel's sequence)
        self.trade_seq = 0  # of the last trade (the trades channel's sequence)
        self.touched: dict[tuple[int, int], int] = {}  # (side, price) -> total before the batch

    def add(self, side: int, price: int, qty: int):
        levels = self.levels[side]
        before = levels.get(price, 0)
        self.touched.setdefault((side, price), before)
        if before + qty:
            levels[price] = before + qty
            if not before:
                bisect.insort(self.prices[side], price)
        else:
            del levels[price]
            prices = self.prices[side]
            del prices[bisect.bisect_left(prices, price)]

    def best(self, side: int, depth: int | None = None) -> list[tuple[int, int]]:
        """Levels of one side, best first: [(price ticks, total lots)]."""
        levels, prices = self.levels[side], self.prices[side]
        if side == BUY:
            chosen = prices[::-1] if depth is None else prices[: -depth - 1 : -1]
        else:
            chosen = prices[:depth]
        return [(p, levels[p]) for p in chosen]

    def take_changes(self) -> list[tuple[int, int, int]]:
        """(side, price, new total) of every level the batch changed."""
        levels = self.levels
        changes = [(side, price, levels[side].get(price, 0))
                   for (side, price), before in self.touched.items()
                   if levels[side].get(price, 0) != before]  # fmt: skip
        self.touched.clear()
        return changes


class VenueView:
    """Books, open orders, balances and positions, from one consistent seq on."""

    def __init__(self, specs: list[InstrumentSpec], n_assets: int, core_state, seq: int,
                 history=None):  # fmt: skip
        """`core_state` is a MatchingCore at `seq` (read once, here); `history`, a
        HistoryReader, says when each open order last changed (the core keeps
        no clock per order)."""
        self.specs = specs
        self.n_assets = n_assets
        self.seq = seq
        self.books = [BookView(spec) for spec in specs]
        self.orders: dict[int, OrderView] = {}  # open orders by id
        self.coids: dict[tuple[int, str], int] = {}  # (account, client order id) -> order id
        # per account, made on first use (read them with `.get`): open orders by
        # id, and per asset (total, locked), per instrument (net, cost, pnl)
        self.open: defaultdict[int, dict[int, OrderView]] = defaultdict(dict)
        self.balances: defaultdict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
        self.positions: defaultdict[int, dict[int, tuple[int, int, int]]] = defaultdict(dict)
        self.n_accounts = n_accounts = core_state.shape()[0]
        self.first_order_id = core_state.next_order_id  # the first order placed after this
        for account in range(1, n_accounts + 1):
            for asset in range(n_assets):
                total, locked = core_state.balance(account, asset)
                if total or locked:
                    self.balances[account][asset] = (total, locked)
            for spec in specs:
                position = core_state.position(account, spec.index)
                if any(position):
                    self.positions[account][spec.index] = position
            open_ids = core_state.open_orders(account)
            times = history.updated_ns(open_ids) if history is not None else {}
            for order_id in open_ids:
                o = core_state.order(order_id)
                order = OrderView(
                    o["order_id"], o["account"], o["instrument"], o["side"], o["order_type"],
                    o["tif"], o["stp"], o["post_only"], o["price"], o["qty"], o["leaves"],
                    o["filled"], o["filled_quote"], o["status"], o["expire_ns"],
                    o["client_order_id"], times.get(order_id, 0),
                )  # fmt: skip
                self._open(order)
        for book in self.books:
            book.touched.clear()

    def _open(self, order: OrderView):
        self.orders[order.order_id] = order
        self.open[order.account][order.order_id] = order
        if order.client_order_id:
            self.coids[order.account, order.client_order_id] = order.order_id
        if order.type == LIMIT and order.tif in RESTING_TIFS:
            self.books[order.instrument].add(order.side, order.price, order.leaves)

    def _close(self, order_id: int) -> OrderView | None:
        order = self.orders.pop(order_id, None)
        if order is not None:
            del self.open[order.account][order_id]
            if order.client_order_id:
                del self.coids[order.account, order.client_order_id]
            if order.type == LIMIT and order.tif in RESTING_TIFS and order.leaves:
                self.books[order.instrument].add(order.side, order.price, -order.leaves)
        return order

    def find(self, account: int, order_id: int, client_order_id: str) -> OrderView | None:
        """An open order of the account, by id or by client order id."""
        if not order_id:
            order_id = self.coids.get((account, client_order_id), 0)
        order = self.orders.get(order_id)
        return order if order is not None and order.account == account else None

    # -- applying events (the gateways call these in event order) --

    def accepted(self, event: tuple) -> OrderView:
        order = order_of(event)
        self._open(order)
        return order

    def ended(self, event: tuple) -> OrderView:
        """CANCELED or EXPIRED: the order as it closed (nothing left to fill)."""
        closed = self._close(event[E_ORDER_ID])
        order = order_of(event)
        order.leaves = 0
        if closed is not None:
            order.stp, order.post_only = closed.stp, closed.post_only
            order.expire_ns = closed.expire_ns
        return order

    def amended(self, event: tuple) -> OrderView:
        self._close(event[E_ORDER_ID])
        order = order_of(event)
        self._open(order)
        return order

    def trade(self, event: tuple) -> tuple[OrderView | None, OrderView | None]:
        """Both orders after the fill (None for one the view never saw open)."""
        qty, price = event[E_QTY], event[E_PRICE]
        taker = self.orders.get(event[E_ORDER_ID])
        if taker is not None:
            taker = self._fill(taker, qty, price, event[E_LEAVES], event[E_TS])
        maker = self.orders.get(event[E_MAKER_ORDER_ID])
        if maker is not None:
            maker = self._fill(maker, qty, price, event[E_MAKER_LEAVES], event[E_TS])
        self.books[event[E_INSTRUMENT]].trade_seq += 1
        return taker, maker

    def _fill(self, order: OrderView, qty: int, price: int, leaves: int,
              ts_ns: int) -> OrderView:  # fmt: skip
        """The order after a fill: a new OrderView in its place (one the view
        has handed out is never changed, so it can be kept as it was)."""
        if order.type == LIMIT and order.tif in RESTING_TIFS:
            self.books[order.instrument].add(order.side, order.price, leaves - order.leaves)
        filled = msgspec.structs.replace(
            order, leaves=leaves, filled=order.filled + qty,
            filled_quote=order.filled_quote + qty * price,
            status=PARTIALLY_FILLED if leaves else FILLED, ts_ns=ts_ns,
        )  # fmt: skip
        self.orders[order.order_id] = self.open[order.account][order.order_id] = filled
        if not leaves:
            self._close(order.order_id)
        return filled

    def balance(self, event: tuple):
        self.balances[event[E_ACCOUNT]][event[E_INSTRUMENT]] = (
            event[E_TOTAL], event[E_LOCKED])  # fmt: skip

    def position(self, event: tuple):
        self.positions[event[E_ACCOUNT]][event[E_INSTRUMENT]] = (
            event[E_NET_QTY], event[E_COST], event[E_REALIZED_PNL])  # fmt: skip

    def apply(self, event: tuple):
        """Apply one event whose details the caller does not need."""
        kind = event[E_TYPE]
        if kind == ACCEPTED:
            self.accepted(event)
        elif kind == TRADE:
            self.trade(event)
        elif kind == CANCELED or kind == EXPIRED:
            self.ended(event)
        elif kind == AMENDED:
            self.amended(event)
        elif kind == BALANCE:
            self.balance(event)
        elif kind == POSITION:
            self.position(event)
