"""The REST gateway: HTTP/1.1 on httptools, on the engine's loop (API.md's
REST table; docs/rest.md and docs/openapi.json for clients).

Each connection is a session of the venue: its order requests become command
records tagged with its id and answered from the venue's walk over the
events. Requests may be pipelined: answers go out in request order, each as
soon as it and those before it are ready. Every failure is an error body
`{"error": {"code", "message", ...}}` with its HTTP status; a request line or
header the parser refuses, a request that takes longer than
`http_request_timeout_ms` to arrive, headers over MAX_HEADER_BYTES or a body
over `max_message_bytes` get their status and the connection is closed.
"""

import asyncio
import collections
import logging
import time
from collections.abc import Callable

import httptools
import msgspec

from gateways import wire
from gateways.auth.errors import AuthError
from gateways.auth.verify import Authenticator, Principal
from gateways.rest import api
from gateways.rest.api import response
from gateways.sessions import next_session_id, peer_ip
from gateways.venue import Pending, Venue

log = logging.getLogger("flowgate.rest")

MAX_HEADER_BYTES = 16 << 10  # request line and headers together
IDLE_TIMEOUT_S = 60.0  # a keep-alive connection with nothing to do is closed
MAX_UNSENT_BYTES = 16 << 20  # a client that stops reading is disconnected past this
DEADLINE_OFFSET = 32  # CommandRecord.deadline_ns (engine.records.COMMAND_DTYPE)

# HTTP status of each error code; every other code of the core is a 400
STATUS = {
    **AuthError.STATUS,
    "INVALID_REQUEST": 400, "INVALID_PARAMS": 400, "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405, "REQUEST_TIMEOUT": 408, "UNSUPPORTED_MEDIA_TYPE": 415,
    "HEADERS_TOO_LARGE": 431, "UNKNOWN_ORDER": 404, "DUPLICATE_CLIENT_ORDER_ID": 409,
    "KILL_SWITCH_ACTIVE": 403, "OVERLOADED": 503, "DEADLINE_EXCEEDED": 503, "INTERNAL": 500,
}  # fmt: skip

ENCODE = msgspec.json.Encoder().encode


def status_of(code: str) -> int:
    return STATUS.get(code, 400)


ORDER_COMMANDS = ("POST", "PATCH", "DELETE")  # every endpoint they reach enters the engine


class Request:
    """One request as it arrives, then waiting for its answer."""

    __slots__ = ("method", "target", "headers", "body", "header_bytes", "keep_alive",
                 "recv_ns", "started", "answer", "rate")  # fmt: skip

    def __init__(self):
        self.method = ""
        self.target = bytearray()  # path and query string, as sent
        self.headers: dict[str, str] = {}  # lower-case names
        self.body = bytearray()
        self.header_bytes = 0
        self.keep_alive = True
        self.recv_ns = 0
        self.started = 0.0  # monotonic time of its first byte
        self.answer: bytes | None = None  # the whole response, once known
        self.rate: str = ""  # RateLimit-* header lines of an authenticated request


class RestGateway:
    def __init__(self, venue: Venue, authenticator: Authenticator,
                 metrics: Callable[[], str] | None = None):  # fmt: skip
        """`metrics`: the venue's metrics as Prometheus text, for GET /metrics
        (None: the engine runs in another process, which keeps them)."""
        self.venue = venue
        self.metrics = metrics
        self.instruments = venue.instruments
        self.authenticator = authenticator
        self.guard = authenticator.guard
        self.limiter = authenticator.limiter
        self.max_body = authenticator.limits.max_message_bytes
        # from a request's first byte to its last (slow senders hold no connection)
        self.request_timeout_s = authenticator.limits.http_request_timeout_ms / 1000
        self.connections: set[HttpConnection] = set()
        self.public_cache: dict[bytes, tuple[int, bytes]] = {}  # target -> (venue seq, body)
        authenticator.on_revoked.append(self.key_revoked)
        self.sweeper: asyncio.TimerHandle | None = None

    def sweep(self):
        """Once a second: time out requests arriving too slowly and idle
        connections (cheaper than a timer per request)."""
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_time(now)
        self.sweeper = asyncio.get_running_loop().call_later(1.0, self.sweep)

    def connection(self) -> "HttpConnection":
        return HttpConnection(self)

    def key_revoked(self, key_id: str):
        """REST has no sessions to close: a revoked key's next request fails."""

    def cancel_on_shutdown(self):
        """Before the engine stops: cancel-on-disconnect for every connection
        that asked for it, since each is about to be closed."""
        for connection in self.connections:
            connection.cancel_orders_if_asked()

    def close(self):
        if self.sweeper is not None:
            self.sweeper.cancel()
        for connection in list(self.connections):
            connection.close()


class HttpConnection(asyncio.Protocol):
    def __init__(self, gateway: RestGateway):
        self.gateway = gateway
        self.id = next_session_id()
        self.requests = 0  # commands sent, numbered in their tags
        self.pending: dict[int, tuple[Pending, int]] = {}
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.counted = False
        self.current: Request | None = None
        self.queue: collections.deque[Request] = collections.deque()  # answers in order
        self.active_at = time.monotonic()  # the last request's first byte, or the start
        self.closing = False
        self.refusal: tuple[str, str] | None = None  # why a callback stopped the parser
        # bytes fed since the parser last finished a request's headers or body,
        # bodies aside: the parser holds a header line until it ends, so its
        # callbacks cannot count one (a body is bounded in on_body)
        self.unfinished = 0
        self.in_body = False
        self.cancel_on_disconnect = 0  # the account whose orders go with the connection

    # -- connection --

    def connection_made(self, transport):
        self.transport = transport
        self.ip = peer_ip(transport)
        if self.ip is None:
            transport.close()
            return
        try:
            self.gateway.guard.connect(self.ip)
        except AuthError as e:
            transport.write(error_response(e.code, e.message, e.details, keep_alive=False))
            transport.close()
            return
        self.counted = True
        self.gateway.connections.add(self)
        self.gateway.venue.sessions[self.id] = self
        if self.gateway.sweeper is None:
            self.gateway.sweep()

    def connection_lost(self, exc):
        if self.counted:
            self.gateway.guard.disconnect(self.ip)
            self.counted = False
        self.gateway.connections.discard(self)
        self.gateway.venue.sessions.pop(self.id, None)
        self.cancel_orders_if_asked()

    def cancel_orders_if_asked(self):
        if self.cancel_on_disconnect:
            account, self.cancel_on_disconnect = self.cancel_on_disconnect, 0
            self.gateway.venue.cancel_on_disconnect(account, self.id)

    def close(self):
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def check_time(self, now: float):
        request = self.current
        if request is not None:
            if now - request.started > self.gateway.request_timeout_s:
                self.refuse("REQUEST_TIMEOUT", "the request took too long to arrive")
        elif not self.queue and now - self.active_at > IDLE_TIMEOUT_S:
            self.close()

    def data_received(self, data: bytes):
        if self.closing:
            return
        if not self.in_body:
            self.unfinished += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.refuse("INVALID_REQUEST", "no protocol upgrades here (WebSocket: its own port)")
        except httptools.HttpParserError as e:
            if self.refusal is not None:  # raised by a callback below
                self.refuse(*self.refusal)
            else:
                self.refuse("INVALID_REQUEST", f"malformed HTTP: {e}")
        # (one read may also hold the body that follows the headers)
        if self.unfinished > MAX_HEADER_BYTES + self.gateway.max_body and not self.closing:
            self.refuse("HEADERS_TOO_LARGE", f"headers over {MAX_HEADER_BYTES} bytes")
        self.gateway.venue.kick()

    def refuse(self, code: str, message: str):
        """A request that cannot be read: answer it after those before it, then close."""
        request = self.current or Request()
        self.current = None
        request.keep_alive = False
        if request not in self.queue:
            self.queue.append(request)
        request.answer = error_response(code, message, {}, keep_alive=False)
        self.closing = True
        self.write_ready()

    # -- httptools callbacks --

    def on_message_begin(self):
        self.current = Request()
        self.current.recv_ns = time.time_ns()
        self.current.started = time.monotonic()

    def on_url(self, url: bytes):
        self.current.target += url
        self.current.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes):
        request = self.current
        request.headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        request.header_bytes += len(name) + len(value)

    def stop(self, code: str, message: str):
        """From a parser callback: refuse the request being read (the parser
        stops with an error, which data_received turns into this answer)."""
        self.refusal = (code, message)
        raise httptools.HttpParserError(message)

    def on_headers_complete(self):
        self.unfinished = 0
        self.in_body = True
        request = self.current
        # (checked once they are all in: while they arrive, what data_received
        # has fed the parser bounds them)
        if request.header_bytes > MAX_HEADER_BYTES:
            self.stop("HEADERS_TOO_LARGE", f"headers over {MAX_HEADER_BYTES} bytes")
        request.method = self.parser.get_method().decode()
        length = request.headers.get("content-length", "0").strip()  # trailing spaces are legal
        if not wire.whole_number(length, self.gateway.max_body):
            self.stop("MESSAGE_TOO_LARGE", f"bodies are at most {self.gateway.max_body} bytes")
        if request.headers.get("expect", "").lower() == "100-continue" and not self.queue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits a second otherwise

    def on_body(self, body: bytes):
        self.current.body += body
        if len(self.current.body) > self.gateway.max_body:
            self.stop("MESSAGE_TOO_LARGE", f"bodies are at most {self.gateway.max_body} bytes")

    def on_message_complete(self):
        self.unfinished = 0
        self.in_body = False
        if self.parser.should_upgrade():  # refused once the parser stops (data_received)
            return
        request, self.current = self.current, None
        request.keep_alive = self.parser.should_keep_alive()
        self.queue.append(request)
        self.active_at = request.started
        try:
            api.dispatch(self.gateway, self, request)
        except (wire.RequestError, AuthError) as e:
            details = e.details
            if request.method in ORDER_COMMANDS:  # a refused order command's timestamps too
                details = {**details, "timestamps": wire.refusal_times(request.recv_ns)}
            request.answer = error_response(e.code, e.message, details, request.keep_alive,
                                            request.rate)  # fmt: skip
            self.write_ready()
        except Exception:
            log.exception("request failed", extra={"session": self.id})
            request.answer = error_response("INTERNAL", "the request failed inside the gateway",
                                            {}, request.keep_alive)  # fmt: skip
            self.write_ready()

    # -- answers --

    def respond(self, request: Request, status: int, body, headers: str = ""):
        request.answer = response(status, ENCODE(body), request.keep_alive,
                                  request.rate + headers)  # fmt: skip
        self.write_ready()

    def write_ready(self):
        """Write every answer that is ready and has none unready before it."""
        out = []
        while self.queue and self.queue[0].answer is not None:
            request = self.queue.popleft()
            answer = request.answer
            if request.method == "HEAD":  # the headers a GET would have, without its body
                answer = answer[: answer.index(b"\r\n\r\n") + 4]
            out.append(answer)
            if not request.keep_alive:
                self.closing = True
                self.queue.clear()
                break
        if out and self.transport is not None and not self.transport.is_closing():
            if self.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
                self.transport.abort()
                return
            self.transport.write(b"".join(out))
        if self.closing and not self.queue and self.transport is not None:
            self.transport.close()

    def enter(self, request: Request, principal: Principal, kind: str, items: list):
        """Order commands of one request, stamped with the signature's deadline."""
        for item in items:
            if not isinstance(item, wire.RequestError):
                wire.TAG.pack_into(item, DEADLINE_OFFSET, principal.deadline_ns)
        pending = Pending(request, kind, len(items), request.recv_ns)
        if kind == "batch":
            self.gateway.venue.enter(self, pending, items)
        else:
            (record,) = items
            self.gateway.venue.enter_one(self, pending, record)

    def answer(self, pending: Pending, out_ns: int):
        request: Request = pending.context
        times = {"gateway_in_ns": pending.recv_ns, "engine_in_ns": pending.engine_in_ns,
                 "engine_out_ns": out_ns, "gateway_out_ns": time.time_ns()}  # fmt: skip
        if pending.method == "batch":
            results = [{"error": wire.error_of(code, result)} if code else result
                       for code, result in pending.results]  # fmt: skip
            self.respond(request, 200, {"results": results, "timestamps": times})
            return
        ((code, result),) = pending.results
        if code:
            self.respond(request, status_of(code), {"error": {**wire.error_of(code, result),
                                                              "timestamps": times}})  # fmt: skip
        else:
            result["timestamps"] = times
            self.respond(request, 200, result)


def error_body(code: str, message: str, details: dict) -> dict:
    return {"code": code, "message": message, **details}


def error_response(code: str, message: str, details: dict, keep_alive: bool,
                   headers: str = "") -> bytes:  # fmt: skip
    """An error answer: a 429 says when to retry (whole seconds), a 405 what is allowed."""
    details = dict(details)
    if "retry_after_ms" in details:
        headers += f"Retry-After: {-(-details['retry_after_ms'] // 1000)}\r\n"
    if "allow" in details:
        headers += f"Allow: {details.pop('allow')}\r\n"
    body = ENCODE({"error": error_body(code, message, details)})
    return response(status_of(code), body, keep_alive, headers)


async def serve(gateway: RestGateway, host: str, port: int):
    loop = asyncio.get_running_loop()
    return await loop.create_server(gateway.connection, host, port)
