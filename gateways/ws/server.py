"""The WebSocket gateway (picows) at `/v1/ws`: order entry, queries and
streams, JSON by default and MessagePack with `?encoding=msgpack`.

A request is decoded, checked, rate-limited and turned into command records
(`gateways.wire`) in one callback; its answer is written when the engine
publishes the last event of its command. `on_events` walks each event batch
once: it keeps the venue view, answers requests, then pushes private updates
(one sequence per account, replayable) and market data (books as snapshot +
deltas with a checksum, trades, best bid/offer).

Nothing a client sends can stall the gateway: every failure is an error
response with a stable code. A client that stops reading loses market data
(replaced by a gap notice and a fresh snapshot once it reads again), never
its answers or private updates; past MAX_UNSENT_BYTES it is disconnected.
"""

import collections
import logging
import socket
import struct
import time
from urllib.parse import parse_qs

import msgspec
from picows import WSCloseCode, WSListener, WSMsgType, WSTransport, ws_create_server

from engine.views import BUY, E_PRICE, E_QTY, E_SIDE, E_TRADE_ID, E_TS, SELL
from gateways import wire
from gateways.auth.errors import AuthError
from gateways.auth.verify import Authenticator, canonical
from gateways.sessions import next_session_id, peer_ip
from gateways.venue import PRIVATE_CHANNELS, Pending, Venue

log = logging.getLogger("flowgate.ws")

PATH = "/v1/ws"
MAX_FRAME_BYTES = 1 << 20  # larger frames close the connection (1009)
MARKET_DATA_HIGH_BYTES = 256 << 10  # unsent bytes past which market data is held back
# The kernel's share of a connection's unsent bytes. Left to autotuning it
# grows to 4 MiB, seconds of stale market data for a slow reader before the
# gateway can notice; fixed, a slow reader is caught within about a megabyte.
KERNEL_SEND_BUFFER = 256 << 10
MAX_UNSENT_BYTES = 32 << 20  # a client this far behind is disconnected
PRIVATE_HISTORY = 10_000  # private updates kept per account for from_seq replay
IDLE_PING_S, PONG_TIMEOUT_S = 20.0, 10.0
PUBLIC_CHANNELS = ("book", "trades", "bbo")
# frame kinds, looked up once: an enum member lookup costs several times a global's
TEXT, BINARY, CLOSE, CONTINUATION = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE,
                                     WSMsgType.CONTINUATION)  # fmt: skip


NO_PARAMS = msgspec.Raw(b"{}")  # a request without params: an empty map in its encoding


class Request(msgspec.Struct):
    method: str
    id: int | str | None = None
    params: msgspec.Raw = NO_PARAMS


class NoParams(msgspec.Struct, forbid_unknown_fields=True):
    """The params of a method that takes none: `{}` or left out."""


class RequestId(msgspec.Struct):
    """A request that is not one may still name itself: its id, for the error."""

    id: int | str | None = None


class LogonParams(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    ts: int
    nonce: str
    sig: str
    window: int | None = None  # ms, as FG-WINDOW


class EnabledParams(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


class TimeoutParams(msgspec.Struct, forbid_unknown_fields=True):
    timeout_ms: int


class BatchParams(msgspec.Struct, forbid_unknown_fields=True):
    orders: wire.BatchOrders


class OpenOrdersParams(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str | None = None


class SubscribeParams(msgspec.Struct, forbid_unknown_fields=True):
    channels: list[str]
    from_seq: int | None = None  # private channels: replay what followed this seq


class Push(msgspec.Struct, gc=False):
    channel: str
    seq: int
    data: object


class Codec:
    """JSON text frames or MessagePack binary frames; decodes either kind."""

    def __init__(self, msgpack: bool):
        self.msgpack = msgpack
        self.opcode = 0x82 if msgpack else 0x81  # a whole binary or text frame
        self.encode = (msgspec.msgpack if msgpack else msgspec.json).Encoder().encode


JSON, MSGPACK = Codec(False), Codec(True)


_HEADER, _HEADER_16, _HEADER_64 = struct.Struct(">BB"), struct.Struct(">BBH"), struct.Struct(">BBQ")


def frame_header(opcode: int, size: int) -> bytes:
    """A server frame's header (servers send unmasked frames)."""
    if size < 126:
        return _HEADER.pack(opcode, size)
    if size < 1 << 16:
        return _HEADER_16.pack(opcode, 126, size)
    return _HEADER_64.pack(opcode, 127, size)


DECODERS = {TEXT: msgspec.json.Decoder(Request).decode,
            BINARY: msgspec.msgpack.Decoder(Request).decode}  # fmt: skip
ID_DECODERS = {TEXT: msgspec.json.Decoder(RequestId).decode,
               BINARY: msgspec.msgpack.Decoder(RequestId).decode}  # fmt: skip


def request_id_of(kind: WSMsgType, payload: bytes):
    """The id of a message that is not a request (no method, a wrong type...),
    if it has a readable one."""
    try:
        return ID_DECODERS[kind](payload).id
    except (msgspec.DecodeError, RecursionError):
        return None


EMPTY_MAP = {TEXT: b"{}", BINARY: msgspec.msgpack.encode({})}


class Encoded:
    """One push, encoded at most once per codec however many sessions get it."""

    __slots__ = ("push", "frames")

    def __init__(self, push: Push):
        self.push = push
        self.frames: dict[bool, bytes] = {}

    def frame(self, codec: Codec) -> bytes:
        frame = self.frames.get(codec.msgpack)
        if frame is None:
            frame = self.frames[codec.msgpack] = codec.encode(self.push)
        return frame


class PrivateStream:
    """One account's private updates: a sequence, the last PRIVATE_HISTORY
    updates for replay, and the sessions subscribed to each channel."""

    __slots__ = ("seq", "history", "subscribers")

    def __init__(self):
        self.seq = 0
        self.history: collections.deque = collections.deque(maxlen=PRIVATE_HISTORY)
        self.subscribers: dict[str, set] = {channel: set() for channel in PRIVATE_CHANNELS}


class WsGateway:
    def __init__(self, venue: Venue, authenticator: Authenticator):
        self.venue = venue
        self.view = venue.view
        self.instruments = venue.instruments
        self.authenticator = authenticator
        self.guard = authenticator.guard
        self.limiter = authenticator.limiter
        self.max_message = authenticator.limits.max_message_bytes
        self.sessions: dict[int, WsSession] = {}
        self.epoch = time.time_ns() // 1_000_000  # names this run's private sequences
        self.private_streams: dict[int, PrivateStream] = collections.defaultdict(PrivateStream)
        n = len(self.instruments.specs)
        self.book_subscribers: list[set] = [set() for _ in range(n)]
        self.trade_subscribers: list[set] = [set() for _ in range(n)]
        self.bbo_subscribers: list[set] = [set() for _ in range(n)]
        self.bbo_seq = [0] * n
        self.bbo_last: list = [None] * n
        self.deferred: list = []  # pushes of the command being walked, sent after its answer
        self.dirty: list[WsSession] = []  # sessions with messages queued
        self.decoders = PARAM_DECODERS[TEXT]  # params decoders of the request being handled
        authenticator.on_revoked.append(self.key_revoked)
        venue.streams.append(self)
        venue.add_private(PRIVATE_CHANNELS, self.private)

    # -- connections --

    def listener(self, request) -> "WsSession | None":
        path, _, query = request.path.decode("latin-1").partition("?")
        if path != PATH:
            return None  # picows answers 404
        encoding = parse_qs(query).get("encoding", ["json"])[0]
        return WsSession(self, MSGPACK if encoding == "msgpack" else JSON)

    def key_revoked(self, key_id: str):
        for session in list(self.sessions.values()):
            if session.key_id == key_id:
                session.close_with("UNAUTHENTICATED", "the API key was revoked or expired")

    def cancel_on_shutdown(self):
        """Before the engine stops: cancel-on-disconnect for every session that
        asked for it, since each is about to be disconnected."""
        for session in self.sessions.values():
            session.cancel_orders_if_asked()

    def flush(self):
        for session in self.dirty:
            session.flush()
        self.dirty.clear()

    def close(self):
        self.flush()
        for session in list(self.sessions.values()):
            session.transport.send_close(WSCloseCode.GOING_AWAY, b"server shutting down")
            session.transport.disconnect()

    # -- requests --

    def handle(self, session: "WsSession", kind: WSMsgType, payload: bytes):
        recv_ns = time.time_ns()
        request = request_id = None
        try:
            if len(payload) > self.max_message:
                too_large = f"messages are at most {self.max_message} bytes"
                raise wire.RequestError("MESSAGE_TOO_LARGE", too_large)
            try:
                request = DECODERS[kind](payload)
            except (msgspec.DecodeError, RecursionError) as e:  # (nested too deep to decode)
                request_id = request_id_of(kind, payload)
                raise wire.RequestError("INVALID_REQUEST", f"not a request: {e}") from None
            request_id = request.id
            handler = METHODS.get(request.method)
            if handler is None:
                raise wire.RequestError("UNKNOWN_METHOD", f"no method {request.method!r}")
            method, params_type, permission = handler
            if permission is not None and session.account == 0:
                raise wire.RequestError("UNAUTHENTICATED", "log on first (session.logon)")
            if permission is not None and permission not in session.permissions:
                raise wire.RequestError("FORBIDDEN", f"this key lacks the {permission} permission")
            decoders = self.decoders = PARAM_DECODERS[kind]  # (for what is decoded later)
            raw = EMPTY_MAP[kind] if request.params is NO_PARAMS else request.params
            try:
                params = decoders[params_type](raw)
            except (msgspec.DecodeError, RecursionError) as e:
                raise wire.RequestError("INVALID_PARAMS", str(e)) from None
            method(self, session, request, params, recv_ns)
        except (wire.RequestError, AuthError) as e:
            details = e.details
            if request is not None and request.method in ORDER_METHODS:
                details = {**details, "timestamps": wire.refusal_times(recv_ns)}
            session.error(request_id, e.code, e.message, details)
        except Exception:
            log.exception("request failed", extra={"session": session.id})
            session.error(request_id, "INTERNAL", "the request failed inside the gateway")

    def spend(self, session: "WsSession"):
        """Rate limits of requests other than order entry (which spends the
        account's order budget, `wire.spend_order`; cancels spend nothing): the
        key's, or the address's before logon."""
        decision = self.limiter.request(session.key_id, session.ip)
        if not decision.allowed:
            raise wire.RequestError("RATE_LIMITED", "over the rate limit",
                                    retry_after_ms=decision.retry_after_ms)  # fmt: skip

    # -- streams (the venue's walk calls these) --

    def command_end(self):
        """A command's answer is out: now its private updates."""
        for stream, channel, entry in self.deferred:
            self.send_private(stream, channel, entry)
        self.deferred.clear()

    def market_data(self, trades: dict[int, list], books: list):
        for instrument, events in trades.items():
            self.push_trades(instrument, events)
        for book in books:
            self.push_book(book)

    # -- private streams --

    def private(self, account: int, channel: str, item):
        """Number the update in the account's sequence and keep it for replay;
        subscribers get it after the answer to the command that caused it."""
        stream = self.private_streams[account]
        stream.seq += 1
        entry = (stream.seq, channel, item)
        stream.history.append(entry)
        if stream.subscribers[channel]:
            self.deferred.append((stream, channel, entry))

    def send_private(self, stream: PrivateStream, channel: str, entry):
        encoded = Encoded(Push(channel, entry[0], self.private_data(channel, entry[2])))
        for session in stream.subscribers[channel]:
            session.send_encoded(encoded, market_data=False)

    def private_data(self, channel: str, item):
        instruments = self.instruments
        if channel == "orders":
            return wire.order_out(instruments, item)
        if channel == "fills":
            return wire.fill_out(instruments, *item)
        if channel == "balances":
            return wire.balance_out(instruments, *item)
        return wire.position_out(instruments, *item)

    # -- market data --

    def book_message(self, book, snapshot: bool, changes=()):
        spec = book.spec

        def text(levels):
            return wire.levels_out(self.instruments, spec, levels)

        checksum = wire.book_checksum(text(book.best(BUY, wire.CHECKSUM_LEVELS)),
                                      text(book.best(SELL, wire.CHECKSUM_LEVELS)))  # fmt: skip
        if snapshot:
            data = {"type": "snapshot", "bids": text(book.best(BUY)),
                    "asks": text(book.best(SELL)), "checksum": checksum}  # fmt: skip
        else:
            data = {"type": "delta",
                    "bids": text([(p, q) for side, p, q in changes if side == BUY]),
                    "asks": text([(p, q) for side, p, q in changes if side == SELL]),
                    "checksum": checksum}  # fmt: skip
        return Encoded(Push(f"book.{spec.symbol}", book.seq, data))

    def push_book(self, book):
        """A batch moved this book: one delta to its subscribers, and the best
        bid and offer if they changed. A channel's seq counts what it
        published: with no subscribers there is nothing to send (a new one
        starts from a snapshot)."""
        index = book.spec.index
        subscribers = self.book_subscribers[index]
        changes = book.take_changes() if subscribers else None
        if changes:
            book.seq += 1
            encoded = self.book_message(book, False, changes)
            for session in subscribers:
                session.send_encoded(encoded, market_data=True)
        if self.bbo_subscribers[index]:
            self.push_bbo(book)

    def push_bbo(self, book):
        index = book.spec.index
        best = (book.best(BUY, 1), book.best(SELL, 1))
        if best == self.bbo_last[index]:
            return
        self.bbo_last[index] = best
        self.bbo_seq[index] += 1
        encoded = self.bbo_message(book)
        for session in self.bbo_subscribers[index]:
            session.send_encoded(encoded, market_data=True)

    def bbo_message(self, book) -> Encoded:
        spec = book.spec
        bid, ask = book.best(BUY, 1), book.best(SELL, 1)
        data = {"bid_price": spec.ticks_to_price(bid[0][0]) if bid else None,
                "bid_qty": spec.lots_to_qty(bid[0][1]) if bid else None,
                "ask_price": spec.ticks_to_price(ask[0][0]) if ask else None,
                "ask_qty": spec.lots_to_qty(ask[0][1]) if ask else None}  # fmt: skip
        return Encoded(Push(f"bbo.{spec.symbol}", self.bbo_seq[spec.index], data))

    def push_trades(self, instrument: int, trades: list):
        subscribers = self.trade_subscribers[instrument]
        if not subscribers:
            return
        spec = self.instruments.specs[instrument]
        first_seq = self.view.books[instrument].trade_seq - len(trades) + 1
        for i, e in enumerate(trades):
            data = {"trade_id": str(e[E_TRADE_ID]), "price": spec.ticks_to_price(e[E_PRICE]),
                    "qty": spec.lots_to_qty(e[E_QTY]), "ts_ns": e[E_TS],
                    "taker_side": "buy" if e[E_SIDE] == BUY else "sell"}  # fmt: skip
            encoded = Encoded(Push(f"trades.{spec.symbol}", first_seq + i, data))
            for session in subscribers:
                session.send_encoded(encoded, market_data=True)

    def resync(self, session: "WsSession"):
        """The session reads again after market data was held back: a gap
        notice per channel, then the current state (books: a fresh snapshot)."""
        for channel in sorted(session.stale):
            kind, _, symbol = channel.partition(".")
            book = self.view.books[self.instruments.by_symbol[symbol].index]
            seq = {"book": book.seq, "trades": book.trade_seq,
                   "bbo": self.bbo_seq[book.spec.index]}[kind]  # fmt: skip
            session.send(Push(channel, seq, {"type": "gap", "resume_seq": seq}))
            if kind == "book":
                session.send_encoded(self.book_message(book, True), market_data=False)
            elif kind == "bbo":
                session.send_encoded(self.bbo_message(book), market_data=False)
        session.stale.clear()

    def unsubscribe_all(self, session: "WsSession"):
        for subscribers in (*self.book_subscribers, *self.trade_subscribers,
                            *self.bbo_subscribers):  # fmt: skip
            subscribers.discard(session)
        if session.account:
            for subscribers in self.private_streams[session.account].subscribers.values():
                subscribers.discard(session)


class WsSession(WSListener):
    def __init__(self, gateway: WsGateway, codec: Codec):
        self.gateway = gateway
        self.codec = codec
        self.id = next_session_id()
        self.transport: WSTransport | None = None
        self.ip = ""
        self.counted = False
        self.account = 0
        self.key_id: str | None = None
        self.permissions: tuple[str, ...] = ()
        self.requests = 0
        self.pending: dict[int, tuple[Pending, int]] = {}
        self.cancel_on_disconnect = False
        self.stale: set[str] = set()  # market-data channels held back while it was slow
        self.fragments: bytearray | None = None
        self.fragment_kind = TEXT
        self.discarding = False  # the rest of a fragmented message already refused
        self.out: list[bytes] = []  # messages waiting for the end of the callback

    def on_ws_connected(self, transport: WSTransport):
        self.transport = transport
        tcp = transport.underlying_transport
        self.ip = peer_ip(tcp)
        if self.ip is None:
            transport.disconnect()
            return
        tcp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                KERNEL_SEND_BUFFER)  # fmt: skip
        try:
            self.gateway.guard.connect(self.ip)
        except AuthError as e:
            self.close_with(e.code, e.message)
            return
        self.counted = True
        self.gateway.sessions[self.id] = self
        self.gateway.venue.sessions[self.id] = self
        log.info("ws session open", extra={"session": self.id, "peer": self.ip})

    def on_ws_disconnected(self, transport: WSTransport):
        gateway = self.gateway
        if self.counted:
            gateway.guard.disconnect(self.ip)
            self.counted = False
        gateway.sessions.pop(self.id, None)
        gateway.venue.sessions.pop(self.id, None)
        gateway.unsubscribe_all(self)
        self.cancel_orders_if_asked()
        log.info("ws session closed", extra={"session": self.id, "account": self.account})

    def cancel_orders_if_asked(self):
        """Cancel-on-disconnect: a mass cancel of the account's open orders."""
        if not (self.cancel_on_disconnect and self.account):
            return
        self.cancel_on_disconnect = False
        self.gateway.venue.cancel_on_disconnect(self.account, self.id)

    def on_ws_frame(self, transport: WSTransport, frame):
        kind = frame.msg_type
        if kind == CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind == TEXT or kind == BINARY:
            if frame.fin and self.fragments is None:
                self.gateway.handle(self, kind, frame.get_payload_as_bytes())
            else:
                self.gather(kind, frame)
        elif kind == CONTINUATION:
            self.gather(kind, frame)
        # (pings are answered by picows; pongs need nothing)
        if frame.last_in_buffer:  # the whole read is handled: its commands go now
            self.gateway.flush()
            self.gateway.venue.kick()

    def gather(self, kind: WSMsgType, frame):
        """A fragmented message: gather it, within the size limit."""
        if kind != CONTINUATION:
            self.fragments, self.fragment_kind, self.discarding = bytearray(), kind, False
        elif self.discarding:  # answered once already (too large)
            self.discarding = not frame.fin
            return
        if self.fragments is None:
            self.error(None, "INVALID_REQUEST", "a continuation frame without a first frame")
            return
        self.fragments += frame.get_payload_as_memoryview()
        if len(self.fragments) > self.gateway.max_message:
            self.fragments, self.discarding = None, not frame.fin
            self.error(None, "MESSAGE_TOO_LARGE",
                       f"messages are at most {self.gateway.max_message} bytes")  # fmt: skip
            return
        if frame.fin:
            payload, self.fragments = bytes(self.fragments), None
            self.gateway.handle(self, self.fragment_kind, payload)

    def resume_writing(self):
        if self.stale:
            self.gateway.resync(self)
            self.gateway.flush()

    # -- writing --

    def send(self, message):
        self.send_frame(self.codec.encode(message))

    def send_frame(self, payload: bytes):
        """Queue one message. The gateway writes each session's queue with one
        system call when the callback that produced it ends (`WsGateway.flush`):
        a batch of answers costs one write, not one each."""
        if not self.out:
            if self.transport is None or self.transport.is_disconnected:
                return
            self.gateway.dirty.append(self)
        self.out.append(payload)

    def flush(self):
        out, self.out = self.out, []
        if not out or self.transport.is_disconnected:
            return
        tcp = self.transport.underlying_transport
        if tcp.get_write_buffer_size() > MAX_UNSENT_BYTES:
            log.warning("ws session not reading: disconnected", extra={"session": self.id})
            self.transport.disconnect(graceful=False)
            return
        opcode = self.codec.opcode
        parts = []  # header, payload, header... joined once: one copy of each payload
        for payload in out:
            parts += (frame_header(opcode, len(payload)), payload)
        tcp.write(b"".join(parts))

    def send_encoded(self, encoded: Encoded, market_data: bool):
        if market_data:
            channel = encoded.push.channel
            if channel in self.stale:
                return
            buffered = self.transport.underlying_transport.get_write_buffer_size()
            if buffered > MARKET_DATA_HIGH_BYTES:
                self.stale.add(channel)
                return
        self.send_frame(encoded.frame(self.codec))

    def reply(self, request_id, result):
        self.send({"id": request_id, "result": result})

    def error(self, request_id, code: str, message: str, details: dict | None = None):
        body = {"code": code, "message": message}
        if details:
            body.update(details)
        self.send({"id": request_id, "error": body})

    def close_with(self, code: str, message: str):
        self.send({"channel": "session", "data": {"event": "closed", "code": code,
                                                  "message": message}})  # fmt: skip
        self.flush()
        self.transport.send_close(WSCloseCode.POLICY_VIOLATION, code.encode())
        self.transport.disconnect()

    # -- answers --

    def answer(self, pending: Pending, out_ns: int):
        times = {"gateway_in_ns": pending.recv_ns, "engine_in_ns": pending.engine_in_ns,
                 "engine_out_ns": out_ns, "gateway_out_ns": time.time_ns()}  # fmt: skip
        if pending.method == "batch":
            results = [{"error": wire.error_of(code, result)} if code else result
                       for code, result in pending.results]  # fmt: skip
            self.send({"id": pending.context, "result": {"results": results,
                                                         "timestamps": times}})  # fmt: skip
            return
        ((code, result),) = pending.results
        if code:
            self.send({"id": pending.context, "error": {**wire.error_of(code, result),
                                                        "timestamps": times}})  # fmt: skip
        else:
            result["timestamps"] = times
            self.send({"id": pending.context, "result": result})


# -- methods: (handler, params type, permission needed; None: open to all) --


def pending_for(request: Request, size: int, recv_ns: int) -> Pending:
    """`order.place` waits as "place", `session.cancel_all_after` as "cancel_all_after"..."""
    return Pending(request.id, WAITS_AS[request.method], size, recv_ns)


def _logon(gateway: WsGateway, session: WsSession, request, p: LogonParams, recv_ns):
    if session.account:
        gateway.spend(session)
        raise wire.RequestError("INVALID_REQUEST", "this session is logged on already")
    payload = canonical(p.ts, p.nonce, "WS", PATH, b"")
    principal = gateway.authenticator.verify(p.key, p.ts, p.nonce, p.sig, payload, session.ip,
                                             None, p.window)  # fmt: skip
    session.account, session.key_id = principal.account, principal.key_id
    session.permissions = principal.permissions
    session.reply(request.id, {"account": principal.account, "key": principal.key_id,
                               "permissions": list(principal.permissions),
                               "epoch": gateway.epoch})  # fmt: skip


def _logout(gateway, session: WsSession, request, p, recv_ns):
    session.reply(request.id, {})
    session.flush()
    session.transport.send_close(WSCloseCode.OK, b"logged out")
    session.transport.disconnect()


def _ping(gateway: WsGateway, session: WsSession, request, p, recv_ns):
    gateway.spend(session)
    session.reply(request.id, {"time_ms": recv_ns // 1_000_000})


def _cancel_on_disconnect(gateway, session: WsSession, request, p: EnabledParams, recv_ns):
    gateway.spend(session)
    session.cancel_on_disconnect = p.enabled
    session.reply(request.id, {"enabled": p.enabled})


def _cancel_all_after(gateway: WsGateway, session: WsSession, request, p: TimeoutParams, recv_ns):
    if not 0 <= p.timeout_ms <= wire.MAX_CANCEL_AFTER_MS:
        raise wire.RequestError("INVALID_TIMEOUT", wire.MESSAGES["INVALID_TIMEOUT"])
    record = wire.cancel_all_after_record(p.timeout_ms, session.account, recv_ns)
    gateway.venue.enter_one(session, pending_for(request, 1, recv_ns), record)


def _place(gateway: WsGateway, session: WsSession, request, p: wire.PlaceParams, recv_ns):
    wire.spend_order(gateway.limiter, session.account)
    record = wire.place_record(gateway.instruments, p, session.account, recv_ns)
    gateway.venue.enter_one(session, pending_for(request, 1, recv_ns), record)


def _batch(gateway: WsGateway, session: WsSession, request, p: BatchParams, recv_ns):
    """Up to MAX_BATCH placements, one answer each, in order."""
    items = wire.batch_records(gateway.instruments, gateway.limiter, session.account, p.orders,
                               gateway.decoders[wire.PlaceParams], recv_ns)  # fmt: skip
    gateway.venue.enter(session, pending_for(request, len(items), recv_ns), items)


def _amend(gateway: WsGateway, session: WsSession, request, p: wire.AmendParams, recv_ns):
    wire.spend_order(gateway.limiter, session.account)
    order_id, coid = wire.order_id_of(p)
    instrument, _ = gateway.venue.amend_target(session, session.account, order_id, coid)
    record = wire.amend_record(gateway.instruments, p, instrument, session.account, recv_ns)
    gateway.venue.enter_one(session, pending_for(request, 1, recv_ns), record)


def _cancel(gateway: WsGateway, session: WsSession, request, p: wire.OrderRef, recv_ns):
    record = wire.cancel_record(p, session.account, recv_ns)
    gateway.venue.enter_one(session, pending_for(request, 1, recv_ns), record)


def _cancel_all(gateway: WsGateway, session: WsSession, request, p: wire.CancelAllParams, recv_ns):
    record = wire.mass_cancel_record(gateway.instruments, p, session.account, recv_ns)
    gateway.venue.enter_one(session, pending_for(request, 1, recv_ns), record)


def _status(gateway: WsGateway, session: WsSession, request, p: wire.OrderRef, recv_ns):
    gateway.spend(session)
    order_id, coid = wire.order_id_of(p)
    order = gateway.venue.order_status(session.account, order_id, coid.decode())
    session.reply(request.id, {"order": wire.order_out(gateway.instruments, order)})


def _open_orders(gateway: WsGateway, session: WsSession, request, p: OpenOrdersParams, recv_ns):
    gateway.spend(session)
    instrument = None if p.symbol is None else gateway.instruments.spec(p.symbol).index
    orders = [wire.order_out(gateway.instruments, o)
              for o in gateway.view.open.get(session.account, {}).values()
              if instrument is None or o.instrument == instrument]  # fmt: skip
    session.reply(request.id, {"orders": orders})


def _balances(gateway: WsGateway, session: WsSession, request, p, recv_ns):
    gateway.spend(session)
    held = gateway.view.balances.get(session.account, {})
    balances = [wire.balance_out(gateway.instruments, a, *held[a]) for a in sorted(held)]
    session.reply(request.id, {"balances": balances})


def _positions(gateway: WsGateway, session: WsSession, request, p, recv_ns):
    gateway.spend(session)
    held = gateway.view.positions.get(session.account, {})
    positions = [wire.position_out(gateway.instruments, i, *held[i]) for i in sorted(held)]
    session.reply(request.id, {"positions": positions})


def _channel(gateway: WsGateway, session: WsSession, name: str):
    """(kind, instrument index or None) of a channel name, or INVALID_CHANNEL."""
    kind, _, symbol = name.partition(".")
    if kind in PRIVATE_CHANNELS and not symbol:
        if not session.account:
            raise wire.RequestError("UNAUTHENTICATED", f"log on to subscribe to {name}")
        return kind, None
    if kind in PUBLIC_CHANNELS and symbol in gateway.instruments.by_symbol:
        return kind, gateway.instruments.by_symbol[symbol].index
    raise wire.RequestError("INVALID_CHANNEL", f"no channel {name!r}")


def _subscribe(gateway: WsGateway, session: WsSession, request, p: SubscribeParams, recv_ns):
    gateway.spend(session)
    channels = [(name, *_channel(gateway, session, name)) for name in p.channels]
    private = [name for name, kind, _ in channels if kind in PRIVATE_CHANNELS]
    stream = gateway.private_streams[session.account] if private else None
    replay = []
    if stream is not None and p.from_seq is not None:
        oldest = stream.history[0][0] if stream.history else stream.seq + 1
        if not oldest - 1 <= p.from_seq <= stream.seq:
            raise wire.RequestError("REPLAY_UNAVAILABLE", "from_seq is outside what the server "
                                    "keeps: resynchronise with orders.open and account.balances",
                                    oldest_seq=oldest, last_seq=stream.seq)  # fmt: skip
        wanted = set(private)
        replay = [entry for entry in stream.history if entry[0] > p.from_seq and entry[1] in wanted]
    result = {"channels": [name for name, _, _ in channels]}
    if stream is not None:
        result.update(epoch=gateway.epoch, seq=stream.seq)
    session.reply(request.id, result)
    for entry in replay:
        session.send(Push(entry[1], entry[0], gateway.private_data(entry[1], entry[2])))
    for name, kind, instrument in channels:
        if kind in PRIVATE_CHANNELS:
            stream.subscribers[kind].add(session)
        elif kind == "book":
            gateway.book_subscribers[instrument].add(session)
            session.stale.discard(name)  # (re)subscribing gives a fresh snapshot
            session.send_encoded(gateway.book_message(gateway.view.books[instrument], True),
                                 market_data=False)  # fmt: skip
        elif kind == "trades":
            gateway.trade_subscribers[instrument].add(session)
        else:
            book = gateway.view.books[instrument]
            gateway.bbo_subscribers[instrument].add(session)
            gateway.bbo_last[instrument] = (book.best(BUY, 1), book.best(SELL, 1))
            session.send_encoded(gateway.bbo_message(book), market_data=False)


def _unsubscribe(gateway: WsGateway, session: WsSession, request, p: SubscribeParams, recv_ns):
    gateway.spend(session)
    channels = [(name, *_channel(gateway, session, name)) for name in p.channels]
    for name, kind, instrument in channels:
        if kind in PRIVATE_CHANNELS:
            gateway.private_streams[session.account].subscribers[kind].discard(session)
        else:
            table = {"book": gateway.book_subscribers, "trades": gateway.trade_subscribers,
                     "bbo": gateway.bbo_subscribers}[kind]  # fmt: skip
            table[instrument].discard(session)
        session.stale.discard(name)
    session.reply(request.id, {"channels": [name for name, _, _ in channels]})


METHODS = {
    "session.logon": (_logon, LogonParams, None),
    "session.logout": (_logout, NoParams, None),
    "session.cancel_on_disconnect": (_cancel_on_disconnect, EnabledParams, "trade"),
    "session.cancel_all_after": (_cancel_all_after, TimeoutParams, "trade"),
    "order.place": (_place, wire.PlaceParams, "trade"),
    "order.batch": (_batch, BatchParams, "trade"),
    "order.amend": (_amend, wire.AmendParams, "trade"),
    "order.cancel": (_cancel, wire.OrderRef, "trade"),
    "order.cancel_all": (_cancel_all, wire.CancelAllParams, "trade"),
    "order.status": (_status, wire.OrderRef, "read"),
    "orders.open": (_open_orders, OpenOrdersParams, "read"),
    "account.balances": (_balances, NoParams, "read"),
    "account.positions": (_positions, NoParams, "read"),
    "subscribe": (_subscribe, SubscribeParams, None),
    "unsubscribe": (_unsubscribe, SubscribeParams, None),
    "ping": (_ping, NoParams, None),
}
WAITS_AS = {name: name.rpartition(".")[2] for name in METHODS}
# per encoding, a decoder for each params type (and a batch's placements), made once
PARAM_DECODERS = {kind: {t: codec.Decoder(t).decode
                         for t in {wire.PlaceParams, *(t for _, t, _ in METHODS.values())}}
                  for kind, codec in ((TEXT, msgspec.json), (BINARY, msgspec.msgpack))}  # fmt: skip
# order commands: every answer to one carries the venue's timestamps, a refusal's too
ORDER_METHODS = frozenset(("session.cancel_all_after", "order.place", "order.batch",
                           "order.amend", "order.cancel", "order.cancel_all"))  # fmt: skip


async def serve(gateway: WsGateway, host: str, port: int):
    return await ws_create_server(
        gateway.listener, host, port, max_frame_size=MAX_FRAME_BYTES,
        enable_auto_ping=True, auto_ping_idle_timeout=IDLE_PING_S,
        auto_ping_reply_timeout=PONG_TIMEOUT_S, websocket_handshake_timeout=5,
        logger_name="ws",
    )  # fmt: skip
