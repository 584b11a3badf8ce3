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
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from engine import messages as m
from engine.views import OrderView
from ext.fix import FixError, FixReader, encode
from gateways import wire
from gateways.auth.errors import AuthError
from gateways.auth.keys import TARGET_COMP_ID
from gateways.auth.verify import Authenticator, fix_logon_payload
from gateways.fix.store import MessageStore
from gateways.sessions import next_session_id
from gateways.venue import Pending, Venue

log = logging.getLogger("flowgate.fix")

SENDING_TIME_TOLERANCE_MS = 120_000  # SendingTime accuracy (as QuickFIX checks it)
ADMIN = {b"0", b"1", b"2", b"3", b"4", b"5", b"A"}
CANCEL_ON_DISCONNECT = 8013  # custom Logon tag: Y cancels the account's orders on disconnect
STP_TAG = 7928  # custom: self-trade prevention on NewOrderSingle
TIMESTAMP_TAGS = (7901, 7902, 7903, 7904)  # custom: gateway in, engine in, engine out, gateway out
SIDES = {b"1": m.Side.BUY, b"2": m.Side.SELL}
SIDE_CODES = {m.Side.BUY: b"1", m.Side.SELL: b"2"}
ORD_TYPES = {b"1": m.OrderType.MARKET, b"2": m.OrderType.LIMIT}
TIFS = {b"1": m.TimeInForce.GTC, b"3": m.TimeInForce.IOC, b"4": m.TimeInForce.FOK,
        b"6": m.TimeInForce.GTD}  # fmt: skip
TIF_CODES = {v: k for k, v in TIFS.items()}
ORD_STATUS = {m.OrderStatus.NEW: b"0", m.OrderStatus.PARTIALLY_FILLED: b"1",
              m.OrderStatus.FILLED: b"2", m.OrderStatus.CANCELED: b"4",
              m.OrderStatus.REJECTED: b"8", m.OrderStatus.EXPIRED: b"C"}  # fmt: skip


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
                 test_identity: tuple[str, str] | None = None):  # fmt: skip
        """`test_identity`: (SenderCompID, TargetCompID) of the session-test
        profile: no signature, reset on every Logon, application messages
        echoed back (for conformance harnesses; loopback only)."""
        self.test_identity = test_identity
        self.venue = venue
        self.instruments = venue.instruments
        self.authenticator = authenticator
        self.data_dir = Path(data_dir)
        self.live: dict[tuple[str, str], FixSession] = {}  # logged-on identities
        self.stores: dict[tuple[str, str], MessageStore] = {}
        self.owners: dict[int, tuple[str, str]] = {}  # order id -> identity that placed it
        self.connections: set[FixSession] = set()
        self.sweeper: asyncio.TimerHandle | None = None
        authenticator.on_revoked.append(self.key_revoked)
        venue.streams.append(self)

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

    # -- the venue walk's streaming gateway --

    def private(self, account: int, channel: str, item):
        """Fills of orders a FIX identity placed reach it even when they come
        later (a resting order taken): stored under its numbers if it is away."""
        if channel != "fills":
            return
        order, trade_id, price, qty, fee, is_maker, ts = item
        identity = self.owners.get(order.order_id)
        if identity is None or not is_maker:
            return  # the taker's fills come with the answer to its order
        session = self.live.get(identity)
        fields = execution_fields(self.instruments, order, b"F", (trade_id, price, qty))
        if session is not None:
            session.send(b"8", fields)
        else:
            send_stored(self.store(identity), b"8", fields)
        if order.leaves == 0:
            self.owners.pop(order.order_id, None)

    def command_end(self):
        pass

    def market_data(self, trades, books):
        pass

    def flush(self):
        pass


def send_stored(store: MessageStore, msg_type: bytes, fields: list) -> bytes:
    """Number, encode and store a message (its sender may be away)."""
    seq = store.next_out
    raw = encode(msg_type, store.sender, store.target, seq, utc_timestamp(), fields)
    store.sent(seq, raw)
    return raw


def execution_fields(instruments: wire.Instruments, order: OrderView, exec_type: bytes,
                     fill: tuple | None = None, times: tuple = ()) -> list:  # fmt: skip
    spec = instruments.specs[order.instrument]
    status = m.STATUS_OF[order.status]
    exec_id = f"{order.order_id}-{fill[0]}" if fill else f"{order.order_id}-{exec_type.decode()}"
    fields = [(37, str(order.order_id)), (11, order.client_order_id or "NONE"),
              (17, exec_id), (150, exec_type), (39, ORD_STATUS[status]),
              (55, spec.symbol), (54, SIDE_CODES[m.SIDE_OF[order.side]]),
              (38, instruments.qty(spec, order.qty)),
              (40, b"2" if order.type == 1 else b"1")]  # fmt: skip
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
        self.reader = FixReader()
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.identity: tuple[str, str] | None = None
        self.store: MessageStore | None = None
        self.account = 0
        self.key_id = ""
        self.heartbeat_s = 30
        self.cancel_on_disconnect = False
        self.received_at = self.sent_at = time.monotonic()
        self.test_request_at = 0.0
        self.awaiting_resend = False  # a ResendRequest of ours is not yet answered
        self.closing = False

    # -- connection --

    def connection_made(self, transport):
        self.transport = transport
        self.ip = transport.get_extra_info("peername")[0]
        try:
            self.gateway.authenticator.guard.connect(self.ip)
        except AuthError:
            transport.close()
            self.ip = ""
            return
        self.gateway.connections.add(self)
        if self.gateway.sweeper is None:
            self.gateway.sweep()

    def connection_lost(self, exc):
        gateway = self.gateway
        if self.ip:
            gateway.authenticator.guard.disconnect(self.ip)
        gateway.connections.discard(self)
        gateway.venue.sessions.pop(self.id, None)
        if self.identity is not None and gateway.live.get(self.identity) is self:
            del gateway.live[self.identity]
            self.cancel_orders_if_asked()
            log.info("fix session closed", extra={"sender": self.identity[0]})

    def cancel_orders_if_asked(self):
        if self.cancel_on_disconnect and self.account:
            self.cancel_on_disconnect = False
            record = wire.mass_cancel_record(self.gateway.instruments, wire.CancelAllParams(),
                                             self.account, time.time_ns())  # fmt: skip
            self.gateway.venue.submit(record)

    def check_time(self, now: float):
        if self.store is None:
            if now - self.received_at > 30:  # no logon
                self.close()
            return
        if now - self.sent_at >= self.heartbeat_s:
            self.send(b"0", [])
        silent = now - self.received_at
        if self.test_request_at and now - self.test_request_at > self.heartbeat_s:
            self.logout("no answer to a TestRequest")
        elif not self.test_request_at and silent > self.heartbeat_s * 1.2:
            self.test_request_at = now
            self.send(b"1", [(112, f"TEST{int(now)}")])

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
        for message in self.reader.feed(data):
            if isinstance(message, FixError):
                self.faulty(message)
            else:
                try:
                    self.handle(message)
                except Exception:
                    log.exception("fix message failed", extra={"session": self.id})
                    self.reject(message, 99, "the message failed inside the gateway")
            if self.closing:
                break
        self.gateway.venue.kick()

    def faulty(self, error: FixError):
        """Garbled: ignored (FIX). A field fault: Reject, and the number counts."""
        if error.garbled or self.store is None:
            return
        seq = error.fields.get(34)
        if seq is None or not seq.isdigit():
            return
        if int(seq) == self.store.next_in:
            self.store.set_next_in(int(seq) + 1)
        self.send(b"3", [(45, int(seq)), (371, error.tag or 0), (373, error.reason),
                         (58, str(error))])  # fmt: skip

    def handle(self, fields: dict):
        msg_type = fields[35]
        if self.store is None:
            self.logon(fields)
            return
        if (fields.get(49, b"").decode(errors="replace"),
                fields.get(56, b"").decode(errors="replace")) != self.identity:  # fmt: skip
            self.reject(fields, 9, "CompID problem")
            self.logout("CompID problem")
            return
        seq = int(fields.get(34, b"0")) if fields.get(34, b"").isdigit() else 0
        expected = self.store.next_in
        if msg_type == b"4" and fields.get(123) != b"Y":  # SequenceReset-Reset: any number
            self.sequence_reset(fields)
            return
        if seq > expected:
            if msg_type == b"5":
                self.logout("logged out")
                return
            if not self.awaiting_resend:
                self.awaiting_resend = True
                self.send(b"2", [(7, expected), (16, 0)])
            if msg_type != b"2":
                return
        elif seq < expected:
            if fields.get(43) == b"Y":
                return  # a possible duplicate already seen
            self.logout(f"MsgSeqNum too low, expecting {expected} but received {seq}")
            return
        else:
            self.store.set_next_in(seq + 1)
            self.awaiting_resend = False
        if not self.sending_time_ok(fields):
            return
        if msg_type in ADMIN:
            self.admin(msg_type, fields)
        else:
            self.application(msg_type, fields)

    def sending_time_ok(self, fields: dict) -> bool:
        sent_ms = parse_timestamp_ms(fields.get(52, b""))
        if sent_ms is None or abs(time.time_ns() // 1_000_000 - sent_ms) > (
                SENDING_TIME_TOLERANCE_MS):  # fmt: skip
            self.reject(fields, 10, "SendingTime accuracy problem")
            self.logout("SendingTime accuracy problem")
            return False
        return True

    # -- session messages --

    def logon(self, fields: dict):
        gateway = self.gateway
        if fields[35] != b"A":
            self.close()  # the first message must be a Logon
            return
        sender = fields.get(49, b"").decode(errors="replace")
        target = fields.get(56, b"").decode(errors="replace")
        seq_raw, sending_time = fields.get(34, b""), fields.get(52, b"")
        identity = (sender, target)
        testing = identity == gateway.test_identity
        if (target != TARGET_COMP_ID and not testing) or not sender or not seq_raw.isdigit():
            self.refuse_logon(identity, "unknown TargetCompID or a bad header")
            return
        if identity in gateway.live:
            self.refuse_logon(identity, "this identity is logged on already", reply=False)
            return
        heartbeat = fields.get(108, b"")
        if not heartbeat.isdigit() or not 1 <= int(heartbeat) <= 3600:
            self.refuse_logon(identity, "HeartBtInt(108) must be 1 to 3600 seconds")
            return
        sent_ms = parse_timestamp_ms(sending_time)
        if testing:
            self.start_test_session(identity, int(seq_raw), int(heartbeat))
            return
        try:
            if sent_ms is None:
                raise AuthError("TIMESTAMP_OUT_OF_WINDOW", "SendingTime(52) is not a timestamp")
            payload = fix_logon_payload(sender, target, seq_raw.decode(), sending_time.decode())
            principal = gateway.authenticator.verify(
                fields.get(553, b"").decode(errors="replace"), sent_ms,
                f"{seq_raw.decode()}/{sending_time.decode()}",
                fields.get(96, b"").decode(errors="replace"), payload, self.ip, None,
            )  # fmt: skip
        except AuthError as e:
            self.refuse_logon(identity, f"{e.code}: {e.message}")
            return
        store = gateway.store(identity)
        seq = int(seq_raw)
        reset = fields.get(141) == b"Y"
        if reset:
            store.reset()
        elif seq < store.next_in:
            self.refuse_logon(identity, f"MsgSeqNum too low, expecting {store.next_in} but "
                                        f"received {seq}")  # fmt: skip
            return
        self.identity, self.store = identity, store
        self.account, self.key_id = principal.account, principal.key_id
        self.heartbeat_s = int(heartbeat)
        self.cancel_on_disconnect = fields.get(CANCEL_ON_DISCONNECT) == b"Y"
        gateway.live[identity] = self
        gateway.venue.sessions[self.id] = self
        gap = seq > store.next_in
        if not gap:
            store.set_next_in(seq + 1)
        reply = [(98, 0), (108, self.heartbeat_s)]
        if reset:
            reply.append((141, b"Y"))
        if self.cancel_on_disconnect:
            reply.append((CANCEL_ON_DISCONNECT, b"Y"))
        self.send(b"A", reply)
        if gap:
            self.awaiting_resend = True
            self.send(b"2", [(7, store.next_in), (16, 0)])
        log.info("fix session open", extra={"sender": sender, "account": self.account})

    def start_test_session(self, identity: tuple[str, str], seq: int, heartbeat: int):
        """The session-test profile's Logon: no signature, numbers reset."""
        store = self.gateway.store(identity)
        store.reset()
        store.set_next_in(seq + 1)
        self.identity, self.store, self.heartbeat_s = identity, store, heartbeat
        self.gateway.live[identity] = self
        self.send(b"A", [(98, 0), (108, heartbeat)])

    def refuse_logon(self, identity: tuple[str, str], text: str, reply: bool = True):
        """A Logout carrying the reason, numbered 1 (nothing of the identity
        is touched), then the connection closes."""
        if reply and identity[0]:
            raw = encode(b"5", identity[1], identity[0], 1, utc_timestamp(), [(58, text)])
            self.transport.write(raw)
        log.info("fix logon refused", extra={"sender": identity[0], "why": text})
        self.close()

    def admin(self, msg_type: bytes, fields: dict):
        if msg_type == b"1":
            self.send(b"0", [(112, fields.get(112, b"TEST"))])
        elif msg_type == b"2":
            self.resend(fields)
        elif msg_type == b"4":
            self.sequence_reset(fields)
        elif msg_type == b"5":
            self.send(b"5", [])
            self.close()
        elif msg_type == b"A":
            self.reject(fields, 99, "already logged on")

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
            body = [(43, b"Y"), (122, original[52])]
            body += [(tag, value) for tag, value in original.items()
                     if tag not in (35, 49, 56, 34, 52, 43, 122)]  # fmt: skip
            self.write(encode(original[35], self.identity[1], self.identity[0], seq,
                              utc_timestamp(), body))  # fmt: skip
        if gap_from is not None:
            self.gap_fill(gap_from, last + 1)

    def gap_fill(self, seq: int, new_seq: int):
        self.write(encode(b"4", self.identity[1], self.identity[0], seq, utc_timestamp(),
                          [(43, b"Y"), (123, b"Y"), (36, new_seq)]))  # fmt: skip

    def sequence_reset(self, fields: dict):
        new_seq = fields.get(36, b"")
        if not new_seq.isdigit():
            self.reject(fields, 1, "NewSeqNo(36) is required")
            return
        if int(new_seq) < self.store.next_in:
            self.reject(fields, 5, f"NewSeqNo(36) {int(new_seq)} is below the expected "
                                   f"{self.store.next_in}")  # fmt: skip
            return
        self.store.set_next_in(int(new_seq))

    def reject(self, fields: dict, reason: int, text: str):
        self.send(b"3", [(45, fields.get(34, b"0")), (372, fields.get(35, b"?")),
                         (373, reason), (58, text)])  # fmt: skip

    def logout(self, text: str):
        if self.store is not None and not self.closing:
            self.send(b"5", [(58, text)])
        self.close()

    # -- writing --

    def send(self, msg_type: bytes, fields: list):
        self.write(send_stored(self.store, msg_type, fields))

    def write(self, raw: bytes):
        self.sent_at = time.monotonic()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(raw)

    # -- application --

    def application(self, msg_type: bytes, fields: dict):
        if self.identity == self.gateway.test_identity:  # the test profile echoes
            self.send(msg_type, [(tag, value) for tag, value in fields.items()
                                 if tag not in (35, 49, 56, 34, 52, 43, 122)])  # fmt: skip
            return
        recv_ns = time.time_ns()
        try:
            if msg_type == b"D":
                self.new_order(fields, recv_ns)
            elif msg_type == b"F":
                self.cancel(fields, recv_ns)
            elif msg_type == b"G":
                self.replace(fields, recv_ns)
            elif msg_type == b"H":
                self.status(fields)
            elif msg_type == b"q":
                self.mass_cancel(fields, recv_ns)
            else:
                self.send(b"j", [(45, fields[34]), (372, msg_type), (380, 3),
                                 (58, "unsupported message type")])  # fmt: skip
        except wire.RequestError as e:
            self.refused(msg_type, fields, e.code, e.message)

    def refused(self, msg_type: bytes, fields: dict, code: str, message: str):
        """An order message refused at the gateway: the answer its type calls for."""
        text = f"{code}: {message}"
        if msg_type == b"q":
            self.send(b"r", [(11, fields.get(11, b"NONE")), (37, b"NONE"),
                             (530, fields.get(530, b"7")), (531, b"0"), (58, text)])  # fmt: skip
        elif code == "RATE_LIMITED":
            self.send(b"j", [(45, fields[34]), (372, msg_type), (380, 99), (58, text)])
        elif msg_type in (b"F", b"G"):
            self.send(b"9", [(11, fields.get(11, b"NONE")), (41, fields.get(41, b"NONE")),
                             (37, fields.get(37, b"NONE")), (39, b"8"),
                             (434, b"1" if msg_type == b"F" else b"2"),
                             (102, b"1" if code == "UNKNOWN_ORDER" else b"99"),
                             (58, text)])  # fmt: skip
        else:
            self.send(b"8", [(37, b"NONE"), (11, fields.get(11, b"NONE")),
                             (17, f"R{fields.get(34, b'0').decode()}"), (150, b"8"),
                             (39, b"8"), (55, fields.get(55, b"NONE")),
                             (54, fields.get(54, b"1")), (14, 0), (151, 0), (6, 0),
                             (103, 99), (58, text)])  # fmt: skip

    def spend(self):
        refused = self.gateway.authenticator.limiter.spend_order(self.account)
        if refused is not None:
            raise wire.RequestError("RATE_LIMITED", f"retry after {refused.retry_after_ms} ms")

    def new_order(self, fields: dict, recv_ns: int):
        side = SIDES.get(fields.get(54))
        order_type = ORD_TYPES.get(fields.get(40, b"2"))
        tif = TIFS.get(fields.get(59, b"1"))
        if side is None or order_type is None or tif is None:
            raise wire.RequestError("INVALID_PARAMS", "Side(54) 1|2, OrdType(40) 1|2, "
                                    "TimeInForce(59) 1|3|4|6")  # fmt: skip
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
        self.spend()
        record = wire.place_record(self.gateway.instruments, params, self.account, recv_ns)
        self.enter(fields, "place", record, recv_ns)

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
        self.spend()
        ref = self.order_ref(fields)
        params = wire.AmendParams(order_id=ref.order_id, client_order_id=ref.client_order_id,
                                  price=fields[44].decode() if 44 in fields else None,
                                  qty=fields[38].decode() if 38 in fields else None)  # fmt: skip
        order_id, coid = wire.order_id_of(params)
        order = self.gateway.venue.view.find(self.account, order_id, coid.decode())
        record = wire.amend_record(self.gateway.instruments, params,
                                   -1 if order is None else order.instrument, self.account,
                                   recv_ns)  # fmt: skip
        self.enter(fields, "amend", record, recv_ns)

    def status(self, fields: dict):
        ref = self.order_ref(fields)
        order_id, coid = wire.order_id_of(ref)
        order = self.gateway.venue.order_status(self.account, order_id, coid.decode())
        self.send(b"8", execution_fields(self.gateway.instruments, order, b"I"))

    def mass_cancel(self, fields: dict, recv_ns: int):
        kind = fields.get(530, b"7")
        symbol = fields[55].decode() if kind == b"1" and 55 in fields else None
        if kind not in (b"1", b"7") or (kind == b"1" and symbol is None):
            raise wire.RequestError("INVALID_PARAMS", "MassCancelRequestType(530) 1 (with "
                                    "Symbol) or 7")  # fmt: skip
        side = SIDES.get(fields.get(54)) if 54 in fields else None
        params = wire.CancelAllParams(symbol=symbol, side=side)
        record = wire.mass_cancel_record(self.gateway.instruments, params, self.account, recv_ns)
        self.enter(fields, "cancel_all", record, recv_ns)

    def enter(self, fields: dict, kind: str, record: bytes, recv_ns: int):
        pending = Pending(fields, kind, 1, recv_ns)
        self.gateway.venue.enter_one(self, pending, bytearray(record))

    def answer(self, pending: Pending, out_ns: int):
        """The engine's outcome as FIX answers (the venue calls this)."""
        fields: dict = pending.context
        ((code, result),) = pending.results
        kind = pending.method
        if code:
            self.refused({"place": b"D", "cancel": b"F", "amend": b"G"}.get(kind, b"q"), fields,
                         code, wire.MESSAGES.get(code, code))  # fmt: skip
            return
        times = (pending.recv_ns, pending.engine_in_ns, out_ns, time.time_ns())
        if kind == "cancel_all":
            self.send(b"r", [(11, fields.get(11, b"NONE")), (37, b"NONE"),
                             (530, fields.get(530, b"7")), (531, fields.get(530, b"7")),
                             (533, result["canceled"])])  # fmt: skip
            return
        order_id = int(result["order"].order_id)
        state = (self.gateway.venue.view.orders.get(order_id)
                 or self.gateway.venue.closed.get(order_id)
                 or self.order_from(result["order"]))  # fmt: skip
        instruments = self.gateway.instruments
        if result.get("retry"):
            self.send(b"8", execution_fields(instruments, state, b"I", None, times))
            return
        if kind != "place":
            exec_type = b"4" if kind == "cancel" else b"5"
            self.send(b"8", execution_fields(instruments, state, exec_type, None, times))
            return
        # a placement: New, then each fill with the quantities as they stood, then the
        # end of an IOC or market order's rest
        self.gateway.owners[state.order_id] = self.identity
        spec = instruments.specs[state.instrument]
        fills = [(int(f.trade_id), wire.price_ticks(spec, f.price), wire.qty_lots(spec, f.qty))
                 for f in result.get("fills", [])]  # fmt: skip
        filled = state.filled - sum(qty for _, _, qty in fills)
        quote = state.filled_quote - sum(price * qty for _, price, qty in fills)
        status = m.STATUS_CODE[m.OrderStatus.NEW]
        self.send(b"8", execution_fields(instruments, msgspec.structs.replace(
            state, filled=filled, leaves=state.qty - filled, filled_quote=quote, status=status,
            reason=0), b"0", None, times))  # fmt: skip
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
