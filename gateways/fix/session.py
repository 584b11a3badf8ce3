"""The FIX 4.4 gateway: the session layer (logon with an Ed25519 signature,
heartbeats, test requests, sequence numbers kept in a message store, resend
with gap fill, sequence reset, reject, logout) and order entry through the
venue (docs/fix.md is the rules of engagement).

One `FixSession` per connection; its identity (SenderCompID, TargetCompID)
owns a `MessageStore`, so numbers and sent messages outlive the connection:
execution reports about its orders sent while it is away are stored under
the next numbers, and a client that logs on again sees the gap and asks for
them with a ResendRequest.
"""

import asyncio
import collections
import itertools
import logging
import re
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import msgspec

from engine import messages as m
from engine.views import FILLED, NEW, PARTIALLY_FILLED, OrderView
from ext.fix import FixError, FixReader, encode
from gateways import wire
from gateways.auth.errors import AuthError
from gateways.auth.keys import TARGET_COMP_ID
from gateways.auth.verify import Authenticator, fix_logon_payload
from gateways.fix import dictionary
from gateways.fix.store import MessageStore
from gateways.sessions import next_session_id, peer_ip
from gateways.venue import Pending, Venue

log = logging.getLogger("flowgate.fix")

DIALECT = Path(__file__).parents[2] / "docs" / "FIX44-flowgate.xml"  # our data dictionary
SENDING_TIME_TOLERANCE_MS = 120_000  # SendingTime accuracy (as QuickFIX checks it)
LOGOUT_TIMEOUT_S = 2.0  # how long a Logout of ours waits for the peer's
LOGON_TIMEOUT_S = 30.0  # from connecting to a sound Logon
ADMIN = {b"0", b"1", b"2", b"3", b"4", b"5", b"A"}
ECHO = "echo"  # the session-test profile's key for the message as its dictionary read it
# header fields the venue fills in anew when it sends a message again (echo, resend)
REFILLED = (8, 9, 35, 34, 49, 52, 56, 43, 122)
ROUTES = {115: 128, 128: 115, 116: 129, 129: 116, 144: 145, 145: 144}  # a reply's reverse route
CANCEL_ON_DISCONNECT = 8013  # custom Logon tag: Y cancels the account's orders on disconnect
STP_TAG = 7928  # custom: self-trade prevention on NewOrderSingle
# custom CancelAllAfterRequest (U1): the timeout in ms (0 disarms); its report (U2)
# also carries the deadline, in ns since the epoch (0 when disarmed)
CANCEL_ALL_AFTER_TAG, DEADLINE_TAG = 7930, 7931
PRIORITY_KEPT_TAG = 7932  # custom, on a Replaced: Y if the order kept its place in the queue
MAX_UNOWNED_FILLS = 10_000  # orders kept in FixGateway.unowned_fills
REQUEST_TYPES = {"place": b"D", "cancel": b"F", "amend": b"G", "cancel_all": b"q",
                 "cancel_all_after": b"U1"}  # fmt: skip
TIMESTAMP_TAGS = (7901, 7902, 7903, 7904)  # custom: gateway in, engine in, engine out, gateway out
SIDES = {b"1": m.Side.BUY, b"2": m.Side.SELL}
SIDE_CODES = {m.Side.BUY: b"1", m.Side.SELL: b"2"}
ORD_TYPES = {b"1": m.OrderType.MARKET, b"2": m.OrderType.LIMIT}
ORD_TYPE_CODES = {v: k for k, v in ORD_TYPES.items()}
TIFS = {b"1": m.TimeInForce.GTC, b"3": m.TimeInForce.IOC, b"4": m.TimeInForce.FOK,
        b"6": m.TimeInForce.GTD}  # fmt: skip
TIF_CODES = {v: k for k, v in TIFS.items()}
ORD_STATUS = {m.OrderStatus.NEW: b"0", m.OrderStatus.PARTIALLY_FILLED: b"1",
              m.OrderStatus.FILLED: b"2", m.OrderStatus.CANCELED: b"4",
              m.OrderStatus.REJECTED: b"8", m.OrderStatus.EXPIRED: b"C"}  # fmt: skip


# the coded values the published dictionary allows: any other is out of range
# (Reject 373=5), as a client validating with the dictionary would hold it
CODED = {tag: values for tag, values in dictionary.DataDictionary(DIALECT).enums.items()
         if tag in (40, 54, 59, 530)}  # fmt: skip
REPORT_FIELDS = re.compile(rb"\x01(17|37|39|49|56|150)=([^\x01]*)")  # what recover_reports reads
ENDED_STATUSES = (b"2", b"4", b"8", b"C")  # filled, canceled, rejected, expired
ENDS = {m.OrderStatus.CANCELED: b"4", m.OrderStatus.EXPIRED: b"C"}  # ExecType of an end
_second: list = [-1, ""]  # the last second formatted, and its text


def utc_timestamp(ns: int | None = None) -> str:
    """FIX UTCTimestamp with milliseconds (the seconds are formatted once a second)."""
    ns = time.time_ns() if ns is None else ns
    second = ns // 1_000_000_000
    if second != _second[0]:
        _second[:] = second, datetime.fromtimestamp(second, UTC).strftime("%Y%m%d-%H:%M:%S.")
    return f"{_second[1]}{ns // 1_000_000 % 1000:03d}"


_days: dict[bytes, int] = {}  # YYYYMMDD -> days since the epoch


def parse_timestamp_ms(text: bytes) -> int | None:
    """ms since the epoch of a UTCTimestamp (YYYYMMDD-HH:MM:SS[.sss...]); None if malformed."""
    if len(text) < 17 or text[8:9] != b"-" or text[11:12] != b":" or text[14:15] != b":":
        return None
    date, clock, fraction = text[:8], text[9:17], text[18:21] if len(text) > 18 else b"0"
    if not (date.isdigit() and clock[:2].isdigit() and clock[3:5].isdigit()
            and clock[6:8].isdigit() and fraction.isdigit()):  # fmt: skip
        return None
    days = _days.get(date)
    if days is None:
        try:
            moment = datetime.strptime(date.decode(), "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            return None
        days = _days[date] = int(moment.timestamp()) // 86400
    hours, minutes, seconds = int(clock[:2]), int(clock[3:5]), int(clock[6:8])
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    millis = int(fraction.ljust(3, b"0")[:3])
    return ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000 + millis


class FixGateway:
    def __init__(self, venue: Venue, authenticator: Authenticator, data_dir: Path,
                 test_identity: tuple[str, str] | None = None,
                 test_dictionary: Path | None = None):  # fmt: skip
        """`test_identity`: (SenderCompID, TargetCompID) of the session-test
        profile: no signature, reset on every Logon, messages validated with
        `test_dictionary` (a QuickFIX data dictionary; default DIALECT) and application
        messages echoed back (for conformance harnesses; loopback only)."""
        self.test_identity = test_identity
        self.dictionary = None if test_identity is None else (
            dictionary.DataDictionary(test_dictionary or DIALECT))  # fmt: skip
        self.venue = venue
        self.instruments = venue.instruments
        self.authenticator = authenticator
        self.data_dir = Path(data_dir)
        self.live: dict[tuple[str, str], FixSession] = {}  # logged-on identities
        self.stores: dict[tuple[str, str], MessageStore] = {}
        self.owners: dict[int, tuple[str, str]] = {}  # order id -> identity that placed it
        self.last_new: dict[tuple[str, str], int] = {}  # the newest order with a stored New
        self.rebuilt: set[int] = set()  # orders whose lost New was sent since this start
        self.unowned_fills: dict[int, list[dict]] = {}  # fills since this start of orders before it
        self.lost_after = 0  # orders after this one and before this start may have lost their New
        self.connections: set[FixSession] = set()
        self.sweeper: asyncio.TimerHandle | None = None
        authenticator.on_revoked.append(self.key_revoked)
        venue.add_private(("fills",), self.fill)
        venue.add_private(("ended",), self.order_ended)
        venue.add_private(("amended",), self.amended)
        self.recover_reports()

    def recover_reports(self):
        """From the reports in the stores: which identity placed each open order
        (a restart must not cut its later reports off), and the reports a
        crash kept from the stores after the engine had journaled what they
        report (fills, ends of orders whose New was stored). Those are stored
        now, for a ResendRequest."""
        reported: dict[int, list] = {}  # order id -> [identity, trade ids reported, ended]
        newest = []  # per store, the newest order with a New in it (0: none)
        for directory in sorted((self.data_dir / "fix").glob("*/")):
            if not (directory / "messages").exists():
                continue
            newest.append(0)
            for message in MessageStore.sent_messages(directory):
                if b"\x0135=8\x01" not in message:
                    continue
                fields = dict(REPORT_FIELDS.findall(message))
                if fields.get(b"150") == b"0":  # a New: (the venue's 49, the peer's 56)
                    identity = (fields[b"56"].decode(), fields[b"49"].decode())
                    reported[int(fields[b"37"])] = [identity, set(), False]
                    newest[-1] = max(newest[-1], int(fields[b"37"]))
                entry = reported.get(int(fields[b"37"])) if fields[b"37"].isdigit() else None
                if entry is None:
                    continue
                if fields.get(b"150") == b"F":  # ExecID: order id, trade id
                    entry[1].add(int(fields[b"17"].rpartition(b"-")[2]))
                entry[2] = entry[2] or fields.get(b"39") in ENDED_STATUSES
        # the oldest order a FIX identity may have placed with no New stored
        self.lost_after = min(newest, default=self.venue.view.first_order_id)
        for order_id, (identity, trades, ended) in reported.items():
            self.last_new[identity] = max(self.last_new.get(identity, 0), order_id)
            if order_id in self.venue.view.orders:
                self.owners[order_id] = identity
            if not ended and self.venue.history is not None:
                account = self.store(identity).account
                self.report_missed(partial(self.deliver, identity), account, order_id, trades)

    def report_missed(self, send, account: int, order_id: int, reported: set[int]):
        """Send (`send(msg_type, fields)`) the Trade reports of an order's fills
        not among `reported`, and its Canceled or Expired report if it has
        ended so; return the order (None if forgotten by now)."""
        try:
            order = self.venue.order_status(account, order_id, "")
        except wire.RequestError:
            return None
        fills = {f["trade_id"]: f for f in self.unowned_fills.pop(order_id, ())}
        fills.update((f["trade_id"], f) for f in self.venue.history.order_fills(order_id))
        filled = filled_quote = 0
        for _, fill in sorted(fills.items()):
            filled += fill["qty"]
            filled_quote += fill["price"] * fill["qty"]
            if fill["trade_id"] in reported:
                continue
            status = FILLED if filled == order.qty else PARTIALLY_FILLED
            then = msgspec.structs.replace(  # the order as this fill left it
                order, filled=filled, filled_quote=filled_quote, leaves=order.qty - filled,
                status=status, ts_ns=fill["ts_ns"])  # fmt: skip
            trade = (fill["trade_id"], fill["price"], fill["qty"])
            send(b"8", execution_fields(self.instruments, then, b"F", trade))
        end = ENDS.get(m.STATUS_OF[order.status])
        if end is not None:
            send(b"8", execution_fields(self.instruments, order, end))
        return order

    def lost_new(self, identity: tuple[str, str], order_id: int) -> bool:
        """Whether an order placed before this start has no New report stored
        (a crash came between the engine and the store)."""
        return (self.last_new.get(identity, 0) < order_id < self.venue.view.first_order_id
                and order_id not in self.rebuilt)  # fmt: skip

    def connection(self) -> "FixSession":
        return FixSession(self)

    def store(self, identity: tuple[str, str]) -> MessageStore:
        store = self.stores.get(identity)
        if store is None:
            store = self.stores[identity] = MessageStore(self.data_dir, identity[1],
                                                         identity[0])  # fmt: skip
        return store

    def key_revoked(self, key_id: str):
        for session in list(self.live.values()):
            if session.key_id == key_id:
                session.logout("the API key was revoked or expired")

    def sweep(self):
        """Once a second: heartbeats, test requests, dead peers."""
        now = time.monotonic()
        for session in list(self.connections):
            session.check_time(now)
        self.sweeper = asyncio.get_running_loop().call_later(1.0, self.sweep)

    def cancel_on_shutdown(self):
        for session in list(self.live.values()):
            session.cancel_orders_if_asked()

    def close(self):
        if self.sweeper is not None:
            self.sweeper.cancel()
        for session in list(self.connections):
            session.logout("the venue is shutting down")
        for store in self.stores.values():
            store.close()

    def fill(self, account: int, channel: str, item):
        """The venue walk's fills: those of orders a FIX identity placed reach
        it even when they come later (a resting order taken), stored under its
        numbers if it is away."""
        order, trade_id, price, qty, fee, is_maker, ts = item
        identity = self.owners.get(order.order_id)
        if (identity is None and is_maker and len(self.unowned_fills) < MAX_UNOWNED_FILLS
                and self.lost_after < order.order_id < self.venue.view.first_order_id):  # fmt: skip
            # perhaps an order whose New a crash lost, not yet sent again: the
            # history may lag behind this fill when `rebuild` reports it
            fills = self.unowned_fills.setdefault(order.order_id, [])
            fills.append({"trade_id": trade_id, "price": price, "qty": qty, "ts_ns": ts})
        if identity is None or (not is_maker and self.answered(identity, order)):
            return  # (the taker's fills of the identity's own request come with its answer)
        self.deliver(identity, b"8", execution_fields(self.instruments, order, b"F",
                                                      (trade_id, price, qty)))  # fmt: skip
        if order.leaves == 0:
            self.owners.pop(order.order_id, None)

    def amended(self, account: int, channel: str, order: OrderView):
        """An order a FIX identity placed was replaced by anything but that
        identity's own replace request (REST, WebSocket, another identity):
        its owner gets the Replaced report, before any fill the new terms
        made, stored if it is away."""
        identity = self.owners.get(order.order_id)
        if identity is not None and not self.answered(identity, order):
            kept = self.venue.outcome.priority_kept  # (the amend being walked)
            self.deliver(identity, b"8", execution_fields(self.instruments, order, b"5")
                         + [(PRIORITY_KEPT_TAG, b"Y" if kept else b"N")])  # fmt: skip

    def order_ended(self, account: int, channel: str, order: OrderView):
        """An order a FIX identity placed was canceled or expired by anything
        but that identity's own request about it (answered as such): an
        expiry, a mass cancel, another protocol or identity,
        cancel-on-disconnect, self-trade prevention. Its owner gets the
        report, stored if it is away."""
        identity = self.owners.pop(order.order_id, None)
        if identity is None or self.answered(identity, order):  # (most: not a FIX order)
            return
        exec_type = b"C" if m.STATUS_OF[order.status] is m.OrderStatus.EXPIRED else b"4"
        self.deliver(identity, b"8", execution_fields(self.instruments, order, exec_type))

    def answered(self, identity: tuple[str, str], order: OrderView) -> bool:
        """Whether the command being walked is the identity's own request
        about the order (its placement, replace or cancel), whose answer
        reports what the command did to it (`FixSession.report`)."""
        outcome = self.venue.outcome
        if outcome.order is None or outcome.order.order_id != order.order_id:
            return False
        session = self.venue.sessions.get(outcome.tag >> 32)
        return isinstance(session, FixSession) and session.identity == identity

    def deliver(self, identity: tuple[str, str], msg_type: bytes, fields: list):
        """A message to an identity: to its session, or stored if it is away.
        While the command being walked is the session's own placement or
        replace, it goes after the command's answer, which reports what came
        first (the order, before the resting one self-trade prevention
        canceled)."""
        session = self.live.get(identity)
        if session is None:
            send_stored(self.store(identity), msg_type, fields)
        elif self.venue.outcome.order is not None and self.walking(session):
            session.after_answer.append((msg_type, fields))
        else:
            session.send(msg_type, fields)

    def walking(self, session: "FixSession") -> bool:
        """Whether the command being walked is the session's."""
        return self.venue.sessions.get(self.venue.outcome.tag >> 32) is session


def send_stored(store: MessageStore, msg_type: bytes, fields: list, header: tuple = ()) -> bytes:
    """Number, encode and store a message (its sender may be away)."""
    seq = store.next_out
    raw = encode(msg_type, store.sender, store.target, seq, utc_timestamp(), fields, header)
    store.sent(seq, raw)
    return raw


# ExecIDs of reports that are not fills (a fill's is its order's and trade's ids):
# this run's start and a count, so no two reports of any run share one
_EXEC_IDS = itertools.count(1)
_RUN = f"{time.time_ns() // 1_000_000:x}"


def next_exec_id() -> str:
    return f"{_RUN}-{next(_EXEC_IDS)}"


def execution_fields(instruments: wire.Instruments, order: OrderView, exec_type: bytes,
                     fill: tuple | None = None, times: tuple = ()) -> list:  # fmt: skip
    spec = instruments.specs[order.instrument]
    status = m.STATUS_OF[order.status]
    exec_id = f"{order.order_id}-{fill[0]}" if fill else next_exec_id()
    fields = [(37, str(order.order_id)), (11, order.client_order_id or "NONE"),
              (17, exec_id), (150, exec_type), (39, ORD_STATUS[status]),
              (55, spec.symbol), (54, SIDE_CODES[m.SIDE_OF[order.side]]),
              (38, instruments.qty(spec, order.qty)),
              (40, ORD_TYPE_CODES[m.TYPE_OF[order.type]])]  # fmt: skip
    if order.price:
        fields.append((44, instruments.price(spec, order.price)))
    fields.append((59, TIF_CODES.get(m.TIF_OF[order.tif], b"1")))
    if fill:
        fields += [(32, instruments.qty(spec, fill[2])), (31, instruments.price(spec, fill[1]))]
    fields += [(14, instruments.qty(spec, order.filled)),
               (151, instruments.qty(spec, order.leaves))]  # fmt: skip
    fields.append((6, average_price(spec, order)))
    fields.append((60, utc_timestamp(order.ts_ns)))
    fields += [(tag, value) for tag, value in zip(TIMESTAMP_TAGS, times, strict=False)]
    return fields


def average_price(spec, order: OrderView) -> str:
    if not order.filled:
        return "0"
    from ext import decimal

    extra = 10**4
    return decimal.format(order.filled_quote * spec.tick_units * extra // order.filled,
                          spec.price_scale + 4)  # fmt: skip


class FixSession(asyncio.Protocol):
    def __init__(self, gateway: FixGateway):
        self.gateway = gateway
        self.id = next_session_id()
        self.requests = 0
        self.pending: dict[int, tuple[Pending, int]] = {}
        # status requests waiting for the answers to the commands sent before
        # them: (the last such command's number, fields, receive time)
        self.held_status: collections.deque[tuple[int, dict, int]] = collections.deque()
        self.after_answer: list[tuple[bytes, list]] = []  # reports behind the answer walked
        self.reader = FixReader(keep_raw=gateway.dictionary is not None)
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.identity: tuple[str, str] | None = None
        self.store: MessageStore | None = None
        self.account = 0
        self.key_id = ""
        self.heartbeat_s = 30
        self.cancel_on_disconnect = False
        self.connected_at = self.received_at = self.sent_at = time.monotonic()
        self.test_request_at = 0.0
        self.resend_until = 0  # the last number our ResendRequest still waits for
        self.queued: dict[int, dict] = {}  # messages numbered too high, waiting for the gap
        self.echoed_orders: set = set()  # the session-test profile's ClOrdIDs
        self.closing = False
        self.logout_sent = False  # ours, waiting for the peer's

    # -- connection --

    def connection_made(self, transport):
        self.transport = transport
        ip = peer_ip(transport)
        try:
            if ip is not None:  # (None: it reset as it opened)
                self.gateway.authenticator.guard.connect(ip)
        except AuthError:
            ip = None
        if ip is None:
            transport.close()
            return
        self.ip = ip  # (counted by the guard until the connection is lost)
        self.gateway.connections.add(self)
        if self.gateway.sweeper is None:
            self.gateway.sweep()

    def connection_lost(self, exc):
        gateway = self.gateway
        if self.ip:
            gateway.authenticator.guard.disconnect(self.ip)
        gateway.connections.discard(self)
        self.transport = None
        if not self.pending:  # else its answers still come, for the store (`answer`)
            gateway.venue.sessions.pop(self.id, None)
        if self.identity is not None and gateway.live.get(self.identity) is self:
            del gateway.live[self.identity]
            self.cancel_orders_if_asked()
            log.info("fix session closed", extra={"sender": self.identity[0]})

    def cancel_orders_if_asked(self):
        if self.cancel_on_disconnect and self.account:
            self.cancel_on_disconnect = False
            self.gateway.venue.cancel_on_disconnect(self.account, self.id)

    def check_time(self, now: float):
        if self.store is None:
            if now - self.connected_at > LOGON_TIMEOUT_S:  # however much else it sent
                self.close()
            return
        if now - self.sent_at >= self.heartbeat_s and not self.test_request_at:
            self.send(b"0", [])
        silent = now - self.received_at
        if self.test_request_at and now - self.test_request_at > self.heartbeat_s:
            self.close()  # no answer to a TestRequest: the peer is gone
        elif not self.test_request_at and silent > self.heartbeat_s * 1.2:
            self.test_request_at = now
            self.send(b"1", [(112, b"TEST")])

    def close(self):
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    # -- reading --

    def data_received(self, data: bytes):
        if self.closing:
            return
        self.received_at = time.monotonic()
        self.test_request_at = 0.0
        messages = self.reader.feed(data)
        raws = self.reader.raw
        for i, message in enumerate(messages):
            # (the identity, and with it the profile, can come with a Logon of this read)
            if self.testing and raws[i] is not None:
                message = self.checked(raws[i])
                if message is None:
                    continue
            if isinstance(message, FixError):
                self.faulty(message)
            else:
                try:
                    self.handle(message)
                except Exception:
                    log.exception("fix message failed", extra={"session": self.id})
                    self.reject(message, dictionary.OTHER, text="the message failed inside "
                                                                "the gateway")  # fmt: skip
            if self.closing:
                break
        self.gateway.venue.kick()

    @property
    def testing(self) -> bool:
        return self.identity is not None and self.identity == self.gateway.test_identity

    def checked(self, raw: bytes) -> dict | None:
        """The session-test profile reads every message again with its data
        dictionary, as QuickFIX does: a fault is Rejected (None)."""
        schema = self.gateway.dictionary
        try:
            message = schema.read(raw)
        except dictionary.Invalid as e:
            self.reject(dictionary.loose_fields(raw), e.reason, e.tag)
            return None
        fields = dict(message.header.fields + message.trailer.fields + message.body.fields)
        try:
            schema.validate(message)
        except dictionary.Invalid as e:
            self.reject(fields, e.reason, e.tag)
            return None
        fields[ECHO] = message
        return fields

    def faulty(self, error: FixError):
        """Before Logon, anything but a sound Logon ends the connection.
        Garbled: ignored (FIX), but a stream with no message end in sight is
        logged out. Another FIX version: Logout. A field fault: Reject, and
        the number counts."""
        if self.store is None:
            self.close()
        elif error.too_large:
            self.logout(error.args[0])
        elif error.other_version:
            self.logout("Incorrect BeginString", wait=True)
        elif not error.garbled and error.fields.get(34, b"").isdigit():
            self.reject(error.fields, error.reason, error.tag or 0)

    def handle(self, fields: dict, queued: bool = False):
        """One message, with the checks and numbering QuickFIX's session
        applies to its type; then what waited for it (queued, too high)."""
        msg_type = fields[35]
        if self.store is None:
            self.logon(fields)
            return
        seq = int(fields[34]) if fields.get(34, b"").isdigit() else 0
        if msg_type == b"5":  # a Logout is answered whatever its number
            if self.logout_sent:
                self.close()
            elif self.verify(fields, too_high=False, too_low=False):
                if seq == self.store.next_in:
                    self.store.set_next_in(seq + 1)
                self.logout()
            return
        if msg_type == b"2":
            if self.verify(fields, too_high=False, too_low=False):
                self.resend(fields)
                if seq == self.store.next_in:
                    self.store.set_next_in(seq + 1)
        elif msg_type == b"4":
            gap_fill = fields.get(123) == b"Y"
            if self.verify(fields, too_high=gap_fill, too_low=gap_fill):
                self.sequence_reset(fields)
        elif msg_type == b"A":
            self.logon_again(fields, seq)
        elif self.verify(fields):
            if msg_type == b"1":
                self.send(b"0", [(112, fields.get(112, b"TEST"))])
            elif msg_type not in ADMIN:
                self.application(msg_type, fields)
            self.store.set_next_in(seq + 1)
        if not queued:
            self.next_queued()

    def verify(self, fields: dict, too_high: bool = True, too_low: bool = True) -> bool:
        """SendingTime, CompIDs, then the number: too high waits in the queue
        behind a ResendRequest; too low ends the session unless PossDupFlag."""
        if not self.sending_time_ok(fields.get(52, b"")):
            self.reject(fields, dictionary.SENDING_TIME_PROBLEM)
            self.logout(wait=True)
            return False
        if (fields.get(49, b"").decode(errors="replace"),
                fields.get(56, b"").decode(errors="replace")) != self.identity:  # fmt: skip
            self.reject(fields, dictionary.COMPID_PROBLEM)
            self.logout(wait=True)
            return False
        seq = int(fields[34]) if fields.get(34, b"").isdigit() else 0
        expected = self.store.next_in
        if too_high and seq > expected:
            self.queued[seq] = fields
            if not self.resend_until:  # one ResendRequest (to infinity) covers every gap
                self.send(b"2", [(7, expected), (16, 0)])
            self.resend_until = max(self.resend_until, seq - 1)
            return False
        if too_low and seq < expected:
            if fields.get(43) != b"Y":
                self.logout(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            elif fields[35] != b"4":
                original = parse_timestamp_ms(fields.get(122, b""))
                if original is None:
                    self.reject(fields, dictionary.REQUIRED_TAG_MISSING, 122)
                elif original > parse_timestamp_ms(fields[52]):
                    self.reject(fields, dictionary.SENDING_TIME_PROBLEM)
                    self.logout(wait=True)
            return False  # a possible duplicate already seen
        if (too_high or too_low) and self.resend_until and seq >= self.resend_until:
            self.resend_until = 0  # our ResendRequest is satisfied
        return True

    def next_queued(self):
        while self.queued and not self.closing:
            fields = self.queued.pop(self.store.next_in, None)
            if fields is None:
                self.queued = {s: f for s, f in self.queued.items() if s > self.store.next_in}
                return
            if fields[35] in (b"A", b"2"):  # answered when they came
                self.store.set_next_in(self.store.next_in + 1)
            else:
                self.handle(fields, queued=True)

    @staticmethod
    def sending_time_ok(sending_time: bytes) -> bool:
        sent_ms = parse_timestamp_ms(sending_time)
        return sent_ms is not None and abs(time.time_ns() // 1_000_000 - sent_ms) <= (
            SENDING_TIME_TOLERANCE_MS)  # fmt: skip

    # -- session messages --

    def logon(self, fields: dict):
        """The first message. Only a Logon of a known session is answered:
        anything else, an unknown TargetCompID or a second connection for a
        live identity, and the connection just closes (as QuickFIX does)."""
        gateway = self.gateway
        sender = fields.get(49, b"").decode(errors="replace")
        target = fields.get(56, b"").decode(errors="replace")
        seq_raw, sending_time = fields.get(34, b""), fields.get(52, b"")
        identity = (sender, target)
        testing = identity == gateway.test_identity
        if (fields[35] != b"A" or (target != TARGET_COMP_ID and not testing) or not sender
                or not seq_raw.isdigit() or identity in gateway.live):  # fmt: skip
            self.close()
            return
        heartbeat = fields.get(108, b"")
        if not heartbeat.isdigit() or not 1 <= int(heartbeat) <= 3600:
            self.refuse_logon(identity, "HeartBtInt(108) must be 1 to 3600 seconds")
            return
        if testing:  # no signature; numbers reset on every Logon
            if not self.sending_time_ok(sending_time):
                self.close()
                return
            store = gateway.store(identity)
            store.reset()
            self.open(identity, store, fields, fields.get(141) == b"Y")
            return
        sent_ms = parse_timestamp_ms(sending_time)
        try:
            if sent_ms is None:
                raise AuthError("TIMESTAMP_OUT_OF_WINDOW", "SendingTime(52) is not a timestamp")
            payload = fix_logon_payload(sender, target, seq_raw.decode(), sending_time.decode())
            principal = gateway.authenticator.verify(  # the nonce: all that was signed
                fields.get(553, b"").decode(errors="replace"), sent_ms, payload.decode("latin-1"),
                fields.get(96, b"").decode(errors="replace"), payload, self.ip, None,
                ed25519_only=True,
            )  # fmt: skip
        except AuthError as e:
            self.refuse_logon(identity, f"{e.code}: {e.message}")
            return
        store = gateway.store(identity)
        if not store.claim(principal.account):  # its messages and fills are another account's
            self.refuse_logon(identity, "FORBIDDEN: this SenderCompID belongs to another account")
            return
        reset = fields.get(141) == b"Y"
        if reset:
            store.reset()
        elif int(seq_raw) < store.next_in:
            self.refuse_logon(identity, f"MsgSeqNum too low, expecting {store.next_in} but "
                                        f"received {int(seq_raw)}")  # fmt: skip
            return
        self.account, self.key_id = principal.account, principal.key_id
        self.cancel_on_disconnect = fields.get(CANCEL_ON_DISCONNECT) == b"Y"
        gateway.venue.sessions[self.id] = self
        extra = [(CANCEL_ON_DISCONNECT, b"Y")] if self.cancel_on_disconnect else []
        self.open(identity, store, fields, reset, extra)
        log.info("fix session open", extra={"sender": sender, "account": self.account})

    def open(self, identity: tuple[str, str], store: MessageStore, fields: dict, reset: bool,
             extra: list = ()):  # fmt: skip
        """Logged on: the Logon answered, then a number too high asks for
        what is missing."""
        self.identity, self.store = identity, store
        self.heartbeat_s = int(fields[108])
        self.gateway.live[identity] = self
        self.logon_reply(reset, extra)
        seq = int(fields[34])
        if reset or seq <= store.next_in or self.verify(fields):
            store.set_next_in(seq + 1)

    def logon_reply(self, reset: bool, extra=()):
        self.send(b"A", [(98, 0), (108, self.heartbeat_s), *([(141, b"Y")] if reset else []),
                         *extra])  # fmt: skip

    def logon_again(self, fields: dict, seq: int):
        """A Logon with ResetSeqNumFlag(141)=Y starts both numbers again at 1;
        any other is Rejected."""
        if fields.get(141) == b"Y":
            self.store.reset()
            self.queued.clear()
            self.resend_until = 0
            self.logon_reply(reset=True)
            self.store.set_next_in(seq + 1)
        elif self.verify(fields):
            self.reject(fields, dictionary.OTHER, text="already logged on")
            self.store.set_next_in(seq + 1)

    def refuse_logon(self, identity: tuple[str, str], text: str):
        """A Logout carrying the reason, numbered 1 (nothing of the identity
        is touched), then the connection closes."""
        raw = encode(b"5", identity[1], identity[0], 1, utc_timestamp(), [(58, text)])
        self.transport.write(raw)
        log.info("fix logon refused", extra={"sender": identity[0], "why": text})
        self.close()

    def resend(self, fields: dict):
        """Stored application messages again (PossDupFlag, OrigSendingTime);
        session messages replaced by gap fills."""
        begin = int(fields.get(7, b"1")) if fields.get(7, b"").isdigit() else 1
        end = int(fields.get(16, b"0")) if fields.get(16, b"").isdigit() else 0
        last = self.store.next_out - 1 if end == 0 else min(end, self.store.next_out - 1)
        gap_from = None
        stored = dict(self.store.messages(begin, last))
        for seq in range(begin, last + 1):
            raw = stored.get(seq)
            original = None if raw is None else FixReader().feed(raw)[0]
            if not isinstance(original, dict) or original[35] in ADMIN:
                gap_from = seq if gap_from is None else gap_from
                continue
            if gap_from is not None:
                self.gap_fill(gap_from, seq)
                gap_from = None
            body = [(tag, value) for tag, value in original.items() if tag not in REFILLED]
            header = ((43, b"Y"), (122, original[52]))
            self.write(encode(original[35], self.identity[1], self.identity[0], seq,
                              utc_timestamp(), body, header))  # fmt: skip
        if gap_from is not None:
            self.gap_fill(gap_from, last + 1)

    def gap_fill(self, seq: int, new_seq: int):
        now = utc_timestamp()
        self.write(encode(b"4", self.identity[1], self.identity[0], seq, now,
                          [(36, new_seq), (123, b"Y")], ((43, b"Y"), (122, now))))  # fmt: skip

    def sequence_reset(self, fields: dict):
        new_seq = fields.get(36, b"")
        if not new_seq.isdigit():
            self.reject(fields, dictionary.REQUIRED_TAG_MISSING, 36)
        elif int(new_seq) > self.store.next_in:
            self.store.set_next_in(int(new_seq))
        elif int(new_seq) < self.store.next_in:
            self.reject(fields, dictionary.VALUE_INCORRECT)

    def reject(self, fields: dict, reason: int, tag: int = 0, text: str | None = None):
        """Reject(3) in QuickFIX's form; it counts the message it refers to
        when that was the one expected (a Logon or SequenceReset aside)."""
        if self.store is None:  # nothing to number a Reject with before the Logon
            self.close()
            return
        text = dictionary.REJECT_TEXT.get(reason, text)
        body = [(45, fields[34])] if fields.get(34) else []
        body.append((58, text))
        if tag or reason == dictionary.INVALID_TAG_NUMBER:
            body.append((371, tag))
        if fields.get(35):
            body.append((372, fields[35]))
        body.append((373, reason))
        seq = fields.get(34, b"")
        if (fields.get(35) not in (b"A", b"4") and seq.isdigit()
                and int(seq) == self.store.next_in):  # fmt: skip
            self.store.set_next_in(int(seq) + 1)
        self.send(b"3", body, tuple((ROUTES[tag], fields[tag]) for tag in ROUTES
                                    if fields.get(tag)))  # fmt: skip

    def logout(self, text: str | None = None, wait: bool = False):
        """Logout(5), then the connection closes: at once, or with `wait`
        when the peer answers with its Logout (LOGOUT_TIMEOUT_S at most)."""
        if self.store is not None and not self.closing and not self.logout_sent:
            self.send(b"5", [(58, text)] if text else [])
        if wait:
            self.logout_sent = True
            asyncio.get_running_loop().call_later(LOGOUT_TIMEOUT_S, self.close)
        else:
            self.close()

    # -- writing --

    def send(self, msg_type: bytes, fields: list, header: tuple = ()):
        self.write(send_stored(self.store, msg_type, fields, header))

    def write(self, raw: bytes):
        self.sent_at = time.monotonic()
        transport = self.transport
        if transport is None or transport.is_closing():
            # gone: an answer still due goes to its identity's new session
            live = self.gateway.live.get(self.identity)
            transport = live.transport if live is not None and live is not self else None
        if transport is not None and not transport.is_closing():
            transport.write(raw)

    # -- application --

    def echo(self, msg_type: bytes, fields: dict):
        """The session-test profile's application, as QuickFIX's acceptance
        tests expect: NewOrderSingle and SecurityDefinition come back as they
        came (a PossResend order only if its ClOrdID is new); any other type
        is unsupported."""
        if msg_type not in (b"D", b"d"):
            self.send(b"j", [(45, fields[34]), (58, "Unsupported Message Type"),
                             (372, msg_type), (380, 3)])  # fmt: skip
            return
        if msg_type == b"D":
            if fields.get(97) == b"Y" and fields.get(11) in self.echoed_orders:
                return
            self.echoed_orders.add(fields.get(11))
        message = fields[ECHO]
        body = self.gateway.dictionary.body_fields(message)
        # the header kept but for what the venue fills in
        kept = tuple(field for field in message.header.fields if field[0] not in REFILLED)
        self.send(msg_type, body, kept)

    def application(self, msg_type: bytes, fields: dict):
        if self.testing:
            self.echo(msg_type, fields)
            return
        if fields.get(43) == b"Y" and int(fields[34]) in self.store.refused:
            return  # refused before a crash, and sent again: a duplicate
        recv_ns = time.time_ns()
        for tag, allowed in CODED.items():
            if tag in fields and fields[tag] not in allowed:
                self.reject(fields, dictionary.VALUE_INCORRECT, tag)
                return
        try:
            if msg_type == b"D":
                self.new_order(fields, recv_ns)
            elif msg_type == b"F":
                self.cancel(fields, recv_ns)
            elif msg_type == b"G":
                self.replace(fields, recv_ns)
            elif msg_type == b"H":
                self.status(fields, recv_ns)
            elif msg_type == b"q":
                self.mass_cancel(fields, recv_ns)
            elif msg_type == b"U1":
                self.cancel_all_after(fields, recv_ns)
            else:
                self.send(b"j", [(45, fields[34]), (372, msg_type), (380, 3),
                                 (58, "unsupported message type")])  # fmt: skip
        except wire.RequestError as e:  # never reached the engine: its clocks are 0
            self.refused(msg_type, fields, e.code, e.message, e.details,
                         (recv_ns, 0, 0, time.time_ns()))  # fmt: skip

    def refused(self, msg_type: bytes, fields: dict, code: str, message: str,
                details: dict | None = None, times: tuple = ()):  # fmt: skip
        """An order message refused: the answer its type calls for, with the
        venue's clocks (`times`) where the dictionary has them."""
        if code in ("RATE_LIMITED", "OVERLOADED"):  # (sent again after a crash: a duplicate)
            self.store.note_refused(int(fields[34]))
        text = f"{code}: {message}"
        if details and "retry_after_ms" in details:
            text += f"; retry after {details['retry_after_ms']} ms"
        stamps = list(zip(TIMESTAMP_TAGS, times, strict=False))
        if msg_type == b"q":
            self.send(b"r", [(11, fields.get(11, b"NONE")), (37, b"NONE"),
                             (530, fields.get(530, b"7")), (531, b"0"), (58, text),
                             *stamps])  # fmt: skip
        elif code == "RATE_LIMITED" or msg_type == b"U1":
            self.send(b"j", [(45, fields[34]), (372, msg_type), (380, 99), (58, text), *stamps])
        elif msg_type in (b"F", b"G"):
            order = self.named_order(fields)  # OrdStatus: its, or Rejected
            if order is not None and order.status not in (NEW, PARTIALLY_FILLED):
                reason = b"0"  # too late: it has ended
            else:
                reason = b"1" if code == "UNKNOWN_ORDER" else b"99"
            self.send(b"9", [(11, fields.get(11, b"NONE")), (41, fields.get(41, b"NONE")),
                             (37, fields.get(37, b"NONE") if order is None else order.order_id),
                             (39, b"8" if order is None else ORD_STATUS[m.STATUS_OF[order.status]]),
                             (434, b"1" if msg_type == b"F" else b"2"),
                             (102, reason),
                             (58, text), *stamps])  # fmt: skip
        elif msg_type == b"H":
            self.send(b"8", [(37, fields.get(37, b"NONE")), (11, fields.get(11, b"NONE")),
                             (17, next_exec_id()), (150, b"I"), (39, b"8"),
                             (55, fields.get(55, b"NONE")), (54, fields.get(54, b"1")),
                             (14, 0), (151, 0), (6, 0), (58, text)])  # fmt: skip
        else:
            self.send(b"8", [(37, b"NONE"), (11, fields.get(11, b"NONE")),
                             (17, next_exec_id()), (150, b"8"),
                             (39, b"8"), (55, fields.get(55, b"NONE")),
                             (54, fields.get(54, b"1")), (14, 0), (151, 0), (6, 0),
                             (103, 99), (58, text), *stamps])  # fmt: skip

    def new_order(self, fields: dict, recv_ns: int):
        side = SIDES.get(fields.get(54))
        order_type = ORD_TYPES.get(fields.get(40, b"2"))
        tif = TIFS.get(fields.get(59))  # None: GTC, market IOC (a value is in CODED)
        if side is None:
            raise wire.RequestError("INVALID_PARAMS", "Side(54) is required")
        expire = None
        if 126 in fields:
            expire = parse_timestamp_ms(fields[126])
            if expire is None:
                raise wire.RequestError("INVALID_EXPIRE_TIME", "ExpireTime(126) is a timestamp")
        try:
            stp = m.SelfTradePrevention(fields.get(STP_TAG, b"cancel_newest").decode())
        except ValueError:
            raise wire.RequestError("INVALID_STP", "see docs/fix.md for tag 7928") from None
        params = wire.PlaceParams(
            symbol=fields.get(55, b"").decode(errors="replace"), side=side, type=order_type,
            qty=fields.get(38, b"").decode(errors="replace"),
            price=fields[44].decode(errors="replace") if 44 in fields else None, tif=tif,
            post_only=b"6" in fields.get(18, b"").split(b" "),
            client_order_id=fields.get(11, b"").decode(errors="replace"), stp=stp,
            expire_ts=expire,
        )  # fmt: skip
        if not params.client_order_id:
            raise wire.RequestError("INVALID_CLIENT_ORDER_ID", "ClOrdID(11) is required")
        wire.spend_order(self.gateway.authenticator.limiter, self.account)
        record = wire.place_record(self.gateway.instruments, params, self.account, recv_ns)
        self.enter(fields, "place", record, recv_ns)

    def named_order(self, fields: dict) -> OrderView | None:
        """The order a cancel or replace names, open or ended, if there is one."""
        try:
            order_id, coid = wire.order_id_of(self.order_ref(fields))
            return self.gateway.venue.order_status(self.account, order_id, coid.decode())
        except wire.RequestError:
            return None

    def order_ref(self, fields: dict) -> wire.OrderRef:
        if 37 in fields:
            return wire.OrderRef(order_id=fields[37].decode(errors="replace"))
        if 41 in fields:
            return wire.OrderRef(client_order_id=fields[41].decode(errors="replace"))
        raise wire.RequestError("UNKNOWN_ORDER", "name the order: OrderID(37) or OrigClOrdID(41)")

    def cancel(self, fields: dict, recv_ns: int):
        record = wire.cancel_record(self.order_ref(fields), self.account, recv_ns)
        self.enter(fields, "cancel", record, recv_ns)

    def replace(self, fields: dict, recv_ns: int):
        wire.spend_order(self.gateway.authenticator.limiter, self.account)
        ref = self.order_ref(fields)
        params = wire.AmendParams(order_id=ref.order_id, client_order_id=ref.client_order_id,
                                  price=fields[44].decode() if 44 in fields else None,
                                  qty=fields[38].decode() if 38 in fields else None)  # fmt: skip
        order_id, coid = wire.order_id_of(params)
        instrument, terms = self.gateway.venue.amend_target(self, self.account, order_id, coid)
        self.keeps(fields, instrument, terms)
        record = wire.amend_record(self.gateway.instruments, params, instrument, self.account,
                                   recv_ns)  # fmt: skip
        self.enter(fields, "amend", record, recv_ns)

    def keeps(self, fields: dict, instrument: int, terms: tuple[int, int, int] | None):
        """A replace changes OrderQty(38) and Price(44) only: the Symbol(55),
        Side(54), OrdType(40) and TimeInForce(59) it carries must be the
        order's (`Venue.amend_target`)."""
        if terms is None:
            return  # no such order: the engine answers UNKNOWN_ORDER
        side, order_type, tif = terms
        kept = {55: self.gateway.instruments.specs[instrument].symbol.encode(),
                54: SIDE_CODES[m.SIDE_OF[side]], 40: ORD_TYPE_CODES[m.TYPE_OF[order_type]],
                59: TIF_CODES.get(m.TIF_OF[tif], b"1")}  # fmt: skip
        for tag, value in kept.items():
            if tag in fields and fields[tag] != value:
                raise wire.RequestError("INVALID_PARAMS", "a replace changes OrderQty(38) and "
                                        f"Price(44) only; tag {tag} differs")  # fmt: skip

    def status(self, fields: dict, recv_ns: int):
        """The order as the venue has it, answered after the commands sent
        before the request (a status after a cancel shows the cancel)."""
        if self.pending:
            self.held_status.append((self.requests, fields, recv_ns))
        else:
            self.report_status(fields)

    def report_status(self, fields: dict):
        order_id, coid = wire.order_id_of(self.order_ref(fields))
        order = self.gateway.venue.order_status(self.account, order_id, coid.decode())
        self.send(b"8", execution_fields(self.gateway.instruments, order, b"I"))

    def release_status(self):
        """Status requests whose earlier commands are all answered now."""
        held = self.held_status
        while held and (not self.pending or min(self.pending) > held[0][0]):
            _, fields, recv_ns = held.popleft()
            try:
                self.report_status(fields)
            except wire.RequestError as e:
                self.refused(b"H", fields, e.code, e.message, e.details,
                             (recv_ns, 0, 0, time.time_ns()))  # fmt: skip

    def mass_cancel(self, fields: dict, recv_ns: int):
        kind = fields.get(530, b"7")
        symbol = fields[55].decode() if kind == b"1" and 55 in fields else None
        if kind not in (b"1", b"7") or (kind == b"1" and symbol is None):
            raise wire.RequestError("INVALID_PARAMS", "MassCancelRequestType(530) 1 (with "
                                    "Symbol) or 7")  # fmt: skip
        side = SIDES.get(fields.get(54))  # (a value is 1 or 2: CODED)
        params = wire.CancelAllParams(symbol=symbol, side=side)
        record = wire.mass_cancel_record(self.gateway.instruments, params, self.account, recv_ns)
        self.enter(fields, "cancel_all", record, recv_ns)

    def rebuild(self, order: OrderView, times: tuple):
        """The reports of an order whose New a crash kept from the store: its
        New, its fills, its end; its later fills reach this identity."""
        gateway = self.gateway
        gateway.rebuilt.add(order.order_id)
        new = msgspec.structs.replace(order, filled=0, filled_quote=0, leaves=order.qty,
                                      status=NEW, reason=0)  # fmt: skip
        self.send(b"8", execution_fields(gateway.instruments, new, b"0", None, times))
        if gateway.report_missed(self.send, self.account, order.order_id, set()) is not None and (
                order.order_id in gateway.venue.view.orders):  # fmt: skip
            gateway.owners[order.order_id] = self.identity

    def cancel_all_after(self, fields: dict, recv_ns: int):
        """The account's dead man's switch, as `session.cancel_all_after`."""
        timeout = fields.get(CANCEL_ALL_AFTER_TAG, b"")
        if not wire.whole_number(timeout.decode(errors="replace"), wire.MAX_CANCEL_AFTER_MS):
            raise wire.RequestError("INVALID_TIMEOUT", wire.MESSAGES["INVALID_TIMEOUT"])
        record = wire.cancel_all_after_record(int(timeout), self.account, recv_ns)
        self.enter(fields, "cancel_all_after", record, recv_ns)

    def enter(self, fields: dict, kind: str, record: bytearray, recv_ns: int):
        self.store.hold(int(fields[34]))  # asked for again after a crash, until answered
        pending = Pending(fields, kind, 1, recv_ns)
        self.gateway.venue.enter_one(self, pending, record)

    def answer(self, pending: Pending, out_ns: int):
        """The engine's outcome as FIX answers (the venue calls this), stored
        for the identity even when the connection has gone meanwhile."""
        self.store.release(int(pending.context[34]))  # (saved with the first report)
        self.report(pending, out_ns)
        for msg_type, fields in self.after_answer:
            self.send(msg_type, fields)
        self.after_answer.clear()
        if self.held_status:
            self.release_status()
        if self.transport is None and not self.pending:  # the last one it waited for
            self.gateway.venue.sessions.pop(self.id, None)

    def report(self, pending: Pending, out_ns: int):
        fields: dict = pending.context
        ((code, result),) = pending.results
        kind = pending.method
        times = (pending.recv_ns, pending.engine_in_ns, out_ns, time.time_ns())
        if code:
            self.refused(REQUEST_TYPES[kind], fields, code, wire.MESSAGES.get(code, code), None,
                         times)  # fmt: skip
            return
        if kind == "cancel_all_after":
            timeout = fields[CANCEL_ALL_AFTER_TAG]
            self.send(b"U2", [(11, fields.get(11, b"NONE")), (CANCEL_ALL_AFTER_TAG, timeout),
                              (DEADLINE_TAG, result["deadline_ns"]),
                              *zip(TIMESTAMP_TAGS, times, strict=True)])  # fmt: skip
            return
        if kind == "cancel_all":
            self.send(b"r", [(11, fields.get(11, b"NONE")), (37, b"NONE"),
                             (530, fields.get(530, b"7")), (531, fields.get(530, b"7")),
                             (533, result["canceled"]),
                             *zip(TIMESTAMP_TAGS, times, strict=True)])  # fmt: skip
            return
        order_id = int(result["order"].order_id)
        try:  # open, recently closed, or from the history (its average price too)
            state = self.gateway.venue.order_status(self.account, order_id, "")
        except wire.RequestError:
            state = self.order_from(result["order"])
        instruments = self.gateway.instruments
        if result.get("retry"):
            if fields.get(43) == b"Y" and self.gateway.lost_new(self.identity, order_id):
                self.rebuild(state, times)  # sent again as asked after a crash
            else:
                self.send(b"8", execution_fields(instruments, state, b"I", None, times))
            return
        if kind == "cancel":  # ClOrdID: the cancel request's; OrigClOrdID: the order's
            report = execution_fields(instruments, state, b"4", None, times)
            report[1:2] = [(11, fields.get(11, b"NONE")), (41, state.client_order_id or "NONE")]
            self.send(b"8", report)
            return
        # a placement (New) or a replace (Replaced), with the quantities as they stood
        # before its fills; then each fill; then the end of an IOC or market order's rest
        if kind == "place":
            self.gateway.owners[state.order_id] = self.identity
        spec = instruments.specs[state.instrument]
        fills = [(int(f.trade_id), wire.price_ticks(spec, f.price), wire.qty_lots(spec, f.qty))
                 for f in result.get("fills", [])]  # fmt: skip
        filled = state.filled - sum(qty for _, _, qty in fills)
        quote = state.filled_quote - sum(price * qty for _, price, qty in fills)
        status = m.STATUS_CODE[m.OrderStatus.PARTIALLY_FILLED if filled else m.OrderStatus.NEW]
        first = execution_fields(instruments, msgspec.structs.replace(
            state, filled=filled, leaves=state.qty - filled, filled_quote=quote, status=status,
            reason=0), b"0" if kind == "place" else b"5", None, times)  # fmt: skip
        if kind == "amend":
            first.append((PRIORITY_KEPT_TAG, b"Y" if result["priority_kept"] else b"N"))
        self.send(b"8", first)
        for trade in fills:
            filled += trade[2]
            quote += trade[1] * trade[2]
            status = m.STATUS_CODE[m.OrderStatus.FILLED if filled == state.qty
                                   else m.OrderStatus.PARTIALLY_FILLED]  # fmt: skip
            self.send(b"8", execution_fields(instruments, msgspec.structs.replace(
                state, filled=filled, leaves=state.qty - filled, filled_quote=quote,
                status=status, reason=0), b"F", trade))  # fmt: skip
        if m.STATUS_OF[state.status] in (m.OrderStatus.CANCELED, m.OrderStatus.EXPIRED):
            self.send(b"8", execution_fields(instruments, state, b"4"))
        if state.leaves == 0:  # done: nothing more to report
            self.gateway.owners.pop(state.order_id, None)

    def order_from(self, order: wire.Order) -> OrderView:
        """An order the view no longer holds, from its answer."""
        spec = self.gateway.instruments.by_symbol[order.symbol]
        return OrderView(
            int(order.order_id), self.account, spec.index, m.SIDE_CODE[order.side],
            m.TYPE_CODE[order.type], m.TIF_CODE[order.tif], 0, order.post_only,
            wire.price_ticks(spec, order.price) if order.price else 0,
            wire.qty_lots(spec, order.qty), wire.qty_lots(spec, order.leaves_qty),
            wire.qty_lots(spec, order.filled_qty), 0,
            m.STATUS_CODE[order.status], 0, order.client_order_id or "", order.ts_ns,
        )  # fmt: skip


async def serve(gateway: FixGateway, host: str, port: int):
    loop = asyncio.get_running_loop()
    return await loop.create_server(gateway.connection, host, port)
