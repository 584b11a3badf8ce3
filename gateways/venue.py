"""What every gateway shares: the venue view, the way into the engine, and
the one walk over each event batch that answers commands and feeds streams.

A gateway's session registers in `sessions` under its id (the high half of
its commands' tags), keeps `requests` (its command count) and `pending`
(number -> (Pending, index)), and implements `answer(pending, out_ns)`.
A gateway that wants private updates (orders, fills, balances, positions)
registers a `hook(account, channel, item)` for the channels it needs with
`add_private`; besides the streams' channels there are "amended", the order
as an amend left it, before any fill the amend made, and "ended", an order
canceled or expired (also on "orders"). Gateways with streams
(`streams`) implement `command_end()`, `market_data(trades, books)` and
`flush()`: the walk hands them every private update of a command after
the command's answer, and market data once per batch: the trades, and the
books the batch moved (`BookView.take_changes` gives what moved; the walk
forgets it after the batch).
"""

import collections
import logging
import sqlite3
import time

import msgspec

from engine.views import (
    ACCEPTED,
    AMENDED,
    BALANCE,
    CANCEL_ALL_AFTER,
    CANCELED,
    E_ACCOUNT,
    E_CMD_TYPE,
    E_COST,
    E_EXPIRE,
    E_FLAGS,
    E_INSTRUMENT,
    E_LOCKED,
    E_MAKER_FEE,
    E_NET_QTY,
    E_ORDER_ID,
    E_PRICE,
    E_QTY,
    E_REALIZED_PNL,
    E_RESULT,
    E_SEQ,
    E_SIDE,
    E_TAG,
    E_TAKER_FEE,
    E_TOTAL,
    E_TRADE_ID,
    E_TS,
    E_TYPE,
    ENDED,
    EXPIRED,
    FLAG_LAST,
    FLAG_PRIORITY_KEPT,
    MASS_CANCELED,
    ORDER_STATE,
    POSITION,
    REJECTED,
    TRADE,
    OrderView,
    VenueView,
    ended_by_timer,
    events_of,
    order_of,
)  # fmt: skip
from gateways import wire

log = logging.getLogger("flowgate.venue")

PRIVATE_CHANNELS = ("orders", "fills", "balances", "positions")
HOOKED = (*PRIVATE_CHANNELS, "amended", "ended")  # what `add_private` takes
CLOSED_ORDERS = 100_000  # recently closed orders a status query still finds in memory
RECENT_TRADES = 1_000  # public trades kept per instrument for queries
ONE_ORDER = (wire.CMD_PLACE, wire.CMD_CANCEL, wire.CMD_AMEND)  # commands about one order


class Outcome(msgspec.Struct, gc=False):
    """What one command did, gathered from its events for the answer. (A
    Struct: one is made per command, and a Struct's defaults are set in C.)"""

    tag: int = 0  # the command's: its session and request
    order: OrderView | None = None  # its own order (not others it ended)
    fills: list = []
    code: str = ""
    retry: bool = False
    count: int = 0  # orders a mass cancel canceled
    deadline_ns: int = 0  # of a dead man's switch, or of a command sequenced too late
    ts_ns: int = 0  # the sequencer's time of the command
    priority_kept: bool = False  # an amend's order kept its place in the queue


class Pending:
    """A request waiting for the engine: what it asked, and for a batch the
    outcomes gathered so far; `context` is the gateway's (its request id,
    its connection...)."""

    __slots__ = ("context", "method", "results", "waiting", "recv_ns", "engine_in_ns", "records")

    def __init__(self, context, method: str, size: int, recv_ns: int):
        self.context, self.method, self.recv_ns = context, method, recv_ns
        self.records: tuple | list = ()  # what was entered, one per command
        self.engine_in_ns = 0  # the sequencer's time of its (first) command
        # per command: ("", result), or (error code, the RequestError of a refusal at
        # the gateway or None)
        self.results: list = [None] * size
        self.waiting = size


class Venue:
    def __init__(self, pipeline, view: VenueView, instruments: wire.Instruments, history=None):
        """`pipeline`: where commands go (`submit`) and how to have them taken
        now (`kick`); `history`: a HistoryReader, for orders closed before the
        newest CLOSED_ORDERS (or before this start)."""
        self.submit = pipeline.submit
        self.kick = pipeline.kick
        self.view = view
        self.instruments = instruments
        self.history = history
        self.sessions: dict[int, object] = {}
        self.streams: list = []
        self.private_to = dict.fromkeys(HOOKED, _ignore)
        self.hooks = tuple(self.private_to.values())  # in HOOKED's order, for the walk
        self.closed: collections.OrderedDict[int, OrderView] = collections.OrderedDict()
        self.closed_coids: dict[tuple[int, str], int] = {}  # -> the newest such closed order
        # per instrument, newest last: (trade_id, price, qty, taker side, ts_ns)
        self.recent_trades = [collections.deque(maxlen=RECENT_TRADES) for _ in instruments.specs]
        if history is not None:  # (those before this start)
            for index, recent in enumerate(self.recent_trades):
                recent.extend(history.recent_trades(index, RECENT_TRADES))
        self.seq = view.seq  # of the last event walked: the state the view shows
        self.outcome = Outcome()  # during the walk: the command being walked

    def add_private(self, channels, hook):
        """Private updates of these channels go to `hook(account, channel, item)`
        too, in event order."""
        for channel in channels:
            before = self.private_to[channel]
            self.private_to[channel] = hook if before is _ignore else _both(before, hook)
        self.hooks = tuple(self.private_to[channel] for channel in HOOKED)

    def close(self):
        if self.history is not None:
            self.history.close()

    # -- into the engine --

    def enter(self, session, pending: Pending, items: list):
        """Submit the command records of one request (for a batch, a
        RequestError stands for an order refused at the gateway); the session
        is answered after the last event of its last command. A record the
        full command ring did not take is answered OVERLOADED at once."""
        records = bytearray()
        pending.records = items
        first = number = session.requests  # its commands are numbered first + 1...
        tag, tag_at, waits = wire.TAG.pack_into, wire.TAG_OFFSET, session.pending
        base = session.id << 32
        for i, item in enumerate(items):
            if isinstance(item, wire.RequestError):
                pending.results[i] = (item.code, item)  # answered in its own words
                pending.waiting -= 1
                continue
            number += 1
            tag(item, tag_at, base + number)
            waits[number] = (pending, i)
            records += item
        session.requests = number
        taken = self.submit(records) if records else 0
        for refused in range(first + taken + 1, number + 1):
            _, i = waits.pop(refused)
            pending.results[i] = ("OVERLOADED", None)
            pending.waiting -= 1
        if pending.waiting == 0:
            session.answer(pending, time.time_ns())

    def enter_one(self, session, pending: Pending, record: bytearray):
        """`enter` for the common request of one command, kept short."""
        session.requests = number = session.requests + 1
        pending.records = (record,)
        wire.TAG.pack_into(record, wire.TAG_OFFSET, (session.id << 32) + number)
        if self.submit(record):
            session.pending[number] = (pending, 0)
        else:
            pending.results[0] = ("OVERLOADED", None)
            session.answer(pending, time.time_ns())

    def cancel_on_disconnect(self, account: int, session_id: int):
        """A session that asked for it ended: a mass cancel of its account's
        open orders."""
        record = wire.mass_cancel_record(self.instruments, wire.CancelAllParams(), account,
                                         time.time_ns())  # fmt: skip
        if not self.submit(record):
            log.error("cancel-on-disconnect refused: the command ring is full",
                      extra={"session": session_id, "account": account})  # fmt: skip

    def amend_target(self, session, account: int, order_id: int,
                     client_order_id: bytes) -> tuple[int, tuple | None]:  # fmt: skip
        """The instrument of the account's open order an amend names, and the
        terms an amend cannot change (side, order type, time in force): also
        of one the session placed that the engine has not answered yet (an
        amend sent right behind its placement). None: (-1, None)."""
        order = self.view.find(account, order_id, client_order_id.decode())
        if order is not None:
            return order.instrument, (order.side, order.type, order.tif)
        if client_order_id:
            for pending, index in session.pending.values():
                record = pending.records[index]
                if wire.placement_of(record) == client_order_id:
                    return wire.instrument_of(record), wire.placement_terms(record)
        return -1, None

    # -- out of the engine --

    def on_events(self, batch: bytes):
        """Event ring subscriber: one walk over the batch, in engine order."""
        out_ns = time.time_ns()
        view = self.view
        streams = self.streams
        to_orders, to_fills, to_balances, to_positions, to_amended, to_ended = self.hooks
        outcome = self.outcome = Outcome()
        trades: dict[int, list] = {}
        for e in events_of(batch):
            kind = e[E_TYPE]
            tag = outcome.tag = e[E_TAG]
            # (the commonest first: a placement's acceptance and its hold)
            if kind == ACCEPTED:
                order = outcome.order = view.accepted(e)
                to_orders(order.account, "orders", order)
            elif kind == BALANCE:
                view.balance(e)
                to_balances(e[E_ACCOUNT], "balances", (e[E_INSTRUMENT], e[E_TOTAL], e[E_LOCKED]))
            elif kind == TRADE:
                taker, maker = view.trade(e)
                trade_id, price, qty, ts = e[E_TRADE_ID], e[E_PRICE], e[E_QTY], e[E_TS]
                for order, fee, is_maker in ((taker, e[E_TAKER_FEE], False),
                                             (maker, e[E_MAKER_FEE], True)):  # fmt: skip
                    if order is None:
                        continue
                    fill = (order, trade_id, price, qty, fee, is_maker, ts)
                    to_orders(order.account, "orders", order)
                    to_fills(order.account, "fills", fill)
                    if not is_maker and tag:
                        outcome.fills.append(fill)
                        outcome.order = order  # the command's own order, as filled
                    if order.leaves == 0:
                        self.remember(order)
                trades.setdefault(e[E_INSTRUMENT], []).append(e)
                self.recent_trades[e[E_INSTRUMENT]].append((trade_id, price, qty, e[E_SIDE], ts))
            elif kind == AMENDED:
                order = outcome.order = view.amended(e)
                outcome.priority_kept = bool(e[E_FLAGS] & FLAG_PRIORITY_KEPT)
                to_amended(order.account, "amended", order)
                to_orders(order.account, "orders", order)
            elif kind == POSITION:
                view.position(e)
                held = (e[E_INSTRUMENT], e[E_NET_QTY], e[E_COST], e[E_REALIZED_PNL])
                to_positions(e[E_ACCOUNT], "positions", held)
            elif kind == CANCELED or kind == EXPIRED:
                order = view.ended(e)
                # the command's own order (a cancel's, the rest of a placement): not a
                # resting one self-trade prevention canceled, nor one a mass cancel or
                # a timer that came due as the command came in ended
                if (outcome.order.order_id == order.order_id if outcome.order is not None
                        else e[E_CMD_TYPE] in ONE_ORDER and not ended_by_timer(e)):  # fmt: skip
                    outcome.order = order
                self.remember(order)
                to_orders(order.account, "orders", order)
                to_ended(order.account, "ended", order)
            elif kind == REJECTED:
                outcome.code = wire.result_name(e[E_RESULT])
                outcome.deadline_ns = e[E_EXPIRE]  # of a command sequenced too late
                # (not a duplicate: its client order id names the account's live order)
                if (e[E_CMD_TYPE] == wire.CMD_PLACE and 0 < e[E_ACCOUNT] <= view.n_accounts
                        and outcome.code != "DUPLICATE_CLIENT_ORDER_ID"):  # fmt: skip
                    refused = order_of(e)
                    refused.reject_code = outcome.code
                    to_orders(e[E_ACCOUNT], "orders", refused)
            elif kind == ORDER_STATE:  # a retried placement: the order as it is now
                outcome.order = self.order_now(e)
                outcome.retry = True
            elif kind == MASS_CANCELED:
                outcome.count = e[E_QTY]
            elif kind == CANCEL_ALL_AFTER:
                outcome.deadline_ns = e[E_EXPIRE]
            if e[E_FLAGS] & FLAG_LAST:
                waiting = False  # its request waits for more of its commands (a batch)
                if tag:
                    outcome.ts_ns = e[E_TS]
                    session = self.sessions.get(tag >> 32)
                    if session is not None:
                        waiting = self.command_done(session, tag & 0xFFFFFFFF, outcome, out_ns)
                outcome = self.outcome = Outcome()
                if not waiting:  # a batch's private updates wait for its answer
                    for gateway in streams:
                        gateway.command_end()
                self.seq = e[E_SEQ]
        for gateway in streams:  # answers and private updates first, market data after
            gateway.flush()
        books = [book for book in view.books if book.touched]
        for gateway in streams:
            gateway.market_data(trades, books)
            gateway.flush()
        for book in books:
            book.touched.clear()

    def command_done(self, session, number: int, outcome: Outcome, out_ns: int) -> bool:
        """One command of a session's request is done; the session answers the
        request once all of them are. Whether the request still waits."""
        entry = session.pending.pop(number, None)
        if entry is None:
            return False
        pending, index = entry
        pending.engine_in_ns = pending.engine_in_ns or outcome.ts_ns
        pending.results[index] = (outcome.code, self.result_of(pending.method, outcome))
        pending.waiting -= 1
        if pending.waiting == 0:
            session.answer(pending, out_ns)
        return pending.waiting > 0

    def order_now(self, e: tuple) -> OrderView:
        """The order an ORDER_STATE event names, as it stands: the event
        carries the order's fields at the time of the retry, not of its last
        change, and a closed order's unfilled rest."""
        try:
            return self.order_status(e[E_ACCOUNT], e[E_ORDER_ID], "")
        except wire.RequestError:  # (a venue without its history)
            pass
        except sqlite3.Error as error:  # (nothing may stop the walk)
            log.error("history unreadable", extra={"error": str(error)})
        order = order_of(e)
        if order.status in ENDED:
            order.leaves = 0
        return order

    def remember(self, order: OrderView):
        """Closed orders a status query still finds (the newest CLOSED_ORDERS)."""
        self.closed[order.order_id] = order
        if order.client_order_id:
            self.closed_coids[order.account, order.client_order_id] = order.order_id
        if len(self.closed) > CLOSED_ORDERS:
            _, gone = self.closed.popitem(last=False)
            if self.closed_coids.get((gone.account, gone.client_order_id)) == gone.order_id:
                del self.closed_coids[gone.account, gone.client_order_id]

    # -- queries every protocol answers alike --

    def order_status(self, account: int, order_id: int, client_order_id: str) -> OrderView:
        """An order of the account: open ones by either id, closed ones too (a
        client order id names the newest with it), recent ones from memory and
        older ones from the history; UNKNOWN_ORDER otherwise."""
        order = self.view.find(account, order_id, client_order_id)
        if order is None and not order_id:
            order_id = self.closed_coids.get((account, client_order_id), 0)
            if not order_id and self.history is not None:
                order_id = self.history.order_id(account, client_order_id)
        if order is None and order_id:
            order = self.closed.get(order_id)
            if order is None and self.history is not None:
                row = self.history.order(account, order_id)
                if row is not None:
                    order = OrderView(
                        row["order_id"], row["account"], row["instrument"], row["side"],
                        row["order_type"], row["tif"], row["stp"], bool(row["post_only"]),
                        row["price"], row["qty"], row["leaves"], row["filled"],
                        row["filled_quote"], row["status"], row["expire_ns"],
                        row["client_order_id"], row["updated_ns"], row["reason"],
                    )  # fmt: skip
        if order is None or order.account != account:
            raise wire.RequestError("UNKNOWN_ORDER", "no such order for this account")
        return order

    def result_of(self, method: str, outcome: Outcome):
        """The result of a command that succeeded, in the shapes of the API;
        for a refusal, its details if it has any."""
        code = outcome.code
        if code:
            if code == "DEADLINE_EXCEEDED":
                return wire.RequestError(code, wire.MESSAGES[code],
                                         deadline_ns=outcome.deadline_ns)  # fmt: skip
            return None
        instruments = self.instruments
        if method == "cancel_all_after":
            return {"deadline_ns": outcome.deadline_ns}
        if method == "cancel_all":
            return {"canceled": outcome.count}
        result = {"order": wire.order_out(instruments, outcome.order)}
        if method != "cancel":
            fills = outcome.fills  # (most orders have none: no comprehension for them)
            result["fills"] = [wire.fill_out(instruments, *f) for f in fills] if fills else []
        if outcome.retry:
            result["retry"] = True
        if method == "amend":
            result["priority_kept"] = outcome.priority_kept
        return result


def _ignore(account: int, channel: str, item):
    pass


def _both(first, second):
    def both(account: int, channel: str, item):
        first(account, channel, item)
        second(account, channel, item)

    return both
