"""The REST endpoints of API.md: routing, authentication, rate limits, and
one handler per endpoint. Handlers answer at once (`connection.respond`) or
enter commands whose answer the venue's walk delivers."""

import ipaddress
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qsl, unquote

import msgspec

from ext import decimal
from gateways import wire
from gateways.auth.errors import AuthError
from gateways.auth.verify import Principal, canonical

DOCS = Path(__file__).resolve().parents[2] / "docs"
MAX_DEPTH = 1000
MAX_TRADES = 1000
PUBLIC_CACHE = 256  # public answers remembered until the venue moves


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    orders: wire.BatchOrders


class AmendBody(msgspec.Struct, forbid_unknown_fields=True):
    price: str | None = None
    qty: str | None = None  # the new total quantity (filled + leaves)


class TimeoutBody(msgspec.Struct, forbid_unknown_fields=True):
    timeout_ms: int


class EnabledBody(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


def dispatch(gateway, connection, request):
    target = request.target.decode("latin-1")
    if "#" in target:  # (a client's fragment stays with the client: RFC 9112)
        raise wire.RequestError("INVALID_REQUEST", "a request target has no fragment (#)")
    path, _, query_text = target.partition("?")
    if not path.startswith("/"):  # the absolute form (RFC 9112): the path after the authority
        _, separator, rest = path.partition("://")
        path = "/" + rest.partition("/")[2] if separator else path
    method = "GET" if request.method == "HEAD" else request.method  # HEAD: GET, no body
    known = STATIC_ROUTES.get((method, path))  # the common case, at once
    if known is not None:
        segments, (handler, permission, body_type) = known
    else:
        segments = [part for part in path.split("/") if part]
        if "%" in path:
            segments = [unquote(part) for part in segments]
        handler, permission, body_type = route_of(method, segments)
    query = parse_query(query_text) if query_text else {}
    principal = None
    if permission is None:
        refused = gateway.limiter.spend_ip(connection.ip)
        if refused is not None:
            raise wire.RequestError("RATE_LIMITED", "this address is over its rate limit",
                                    retry_after_ms=refused.retry_after_ms)  # fmt: skip
    else:
        principal = authenticate(gateway, connection, request, permission)
    if query:
        unknown = query.keys() - QUERIES.get(handler, ())
        if unknown:  # (a misspelt filter must not widen what a request does)
            raise wire.RequestError("INVALID_PARAMS", f"no query parameter {min(unknown)!r} here")
    body = None
    if body_type is not None:
        media_type = request.headers.get("content-type", "").partition(";")[0]
        if media_type.strip().lower() != "application/json":  # parameters (charset) aside
            raise wire.RequestError("UNSUPPORTED_MEDIA_TYPE", "send JSON (application/json)")
        try:
            body = msgspec.json.decode(request.body, type=body_type)
        except msgspec.ValidationError as e:
            raise wire.RequestError("INVALID_PARAMS", str(e)) from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
            # (a string that is not UTF-8; arrays nested too deep to decode)
            raise wire.RequestError("INVALID_REQUEST", f"not JSON: {e}") from None
    handler(gateway, connection, request, principal, segments, query, body)


def route_of(method: str, segments: list[str]) -> tuple:
    """(handler, permission, body type) of a path's segments (percent-decoded)."""
    routes = ROUTES_BY_SHAPE.get((len(segments), segments[0] if segments else "",
                                  segments[1] if len(segments) > 1 else ""), ())  # fmt: skip
    allowed = []
    for route_method, pattern, handler, permission, body_type in routes:
        if all(p is None or p == s for p, s in zip(pattern, segments, strict=True)):
            if route_method == method:
                return handler, permission, body_type
            allowed.append(route_method)
    if allowed:
        if "GET" in allowed:
            allowed.append("HEAD")  # answered as GET is, without the body
        raise wire.RequestError("METHOD_NOT_ALLOWED", f"{method} is not allowed here",
                                allow=", ".join(allowed))  # fmt: skip
    raise wire.RequestError("NOT_FOUND", "no such endpoint")


def parse_query(text: str) -> dict[str, str]:
    """Query parameters, the last of each name."""
    if "%" in text or "+" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    return {name: value for name, _, value in (part.partition("=") for part in text.split("&")
                                               if part)}  # fmt: skip


STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}


def response(status: int, body: bytes, keep_alive: bool, headers: str = "",
             content_type: str = "application/json") -> bytes:  # fmt: skip
    connection = "" if keep_alive else "Connection: close\r\n"
    head = (f"{STATUS_LINES[status]}Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{connection}{headers}\r\n")  # fmt: skip
    return head.encode() + body


def authenticate(gateway, connection, request, permission: str) -> Principal:
    headers = request.headers
    key = headers.get("fg-key")
    ts, nonce, sig = headers.get("fg-ts"), headers.get("fg-nonce"), headers.get("fg-sign")
    if not (key and ts and nonce and sig):
        raise wire.RequestError("UNAUTHENTICATED", "sign the request: FG-KEY, FG-TS, FG-NONCE "
                                "and FG-SIGN headers")  # fmt: skip
    window = headers.get("fg-window")
    if not wire.whole_number(ts):
        raise wire.RequestError("UNAUTHENTICATED", "FG-TS is whole milliseconds")
    if window is not None and not wire.whole_number(window):
        most = gateway.authenticator.limits.window_max_ms
        raise AuthError("INVALID_WINDOW", f"the window is 1..{most} ms, in whole milliseconds")
    nonce = nonce.encode("latin-1").decode("utf-8", "replace")  # signed as UTF-8, as sent
    payload = canonical(ts, nonce, request.method, request.target.decode("latin-1"),
                        bytes(request.body))  # fmt: skip
    try:
        principal = gateway.authenticator.verify(
            key, int(ts), nonce, sig, payload, connection.ip, permission,
            None if window is None else int(window), throttle=request.method != "DELETE",
        )  # fmt: skip
    except AuthError as e:
        if "reset_ms" in e.details:  # over the key's budget: still a signed answer
            request.rate = rate_headers(e.details["limit"], e.details["remaining"],
                                        e.details["reset_ms"])  # fmt: skip
        raise
    rate = principal.rate
    request.rate = rate_headers(rate.limit, rate.remaining, rate.reset_ms)
    return principal


def rate_headers(limit: int, remaining: int, reset_ms: int) -> str:
    """The RateLimit-* lines of a signed answer: the key's request budget."""
    return (f"RateLimit-Limit: {limit}\r\nRateLimit-Remaining: {remaining}\r\n"
            f"RateLimit-Reset: {-(-reset_ms // 1000)}\r\n")  # fmt: skip


def int_param(query: dict, name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not wire.whole_number(text, high) or int(text) < low:
        raise wire.RequestError("INVALID_PARAMS", f"{name} is a whole number {low}..{high}")
    return int(text)


# -- public --


def get_time(gateway, connection, request, principal, segments, query, body):
    now = time.time_ns()
    connection.respond(request, 200, {"time_ms": now // 1_000_000, "time_ns": now})


def get_health(gateway, connection, request, principal, segments, query, body):
    connection.respond(request, 200, {"status": "ok", "seq": gateway.venue.seq})


def get_instruments(gateway, connection, request, principal, segments, query, body):
    instruments = gateway.instruments
    out = []
    for spec in instruments.specs:
        out.append({
            "symbol": spec.symbol, "base": instruments.asset_names[spec.base_asset],
            "quote": instruments.asset_names[spec.quote_asset],
            "tick_size": decimal.format(spec.tick_units, spec.price_scale),
            "lot_size": decimal.format(spec.lot_units, spec.qty_scale),
            "min_qty": spec.lots_to_qty(spec.min_qty), "max_qty": spec.lots_to_qty(spec.max_qty),
            "min_notional": spec.quote_to_text(spec.min_notional),
            "max_notional": spec.quote_to_text(spec.max_notional),
        })  # fmt: skip
    connection.respond(request, 200, {"instruments": out})


def get_book(gateway, connection, request, principal, segments, query, body):
    """Answered from a cache while nothing happened in the venue: books are
    read far more often than they change."""
    venue = gateway.venue
    key = bytes(request.target)
    cached = gateway.public_cache.get(key)
    if cached is None or cached[0] != venue.seq:
        spec = gateway.instruments.spec(segments[2])
        depth = int_param(query, "depth", 50, 1, MAX_DEPTH)
        book = venue.view.books[spec.index]
        body = msgspec.json.encode({
            "symbol": spec.symbol, "seq": venue.seq,
            "bids": wire.levels_out(gateway.instruments, spec, book.best(1, depth)),
            "asks": wire.levels_out(gateway.instruments, spec, book.best(2, depth)),
        })  # fmt: skip
        if len(gateway.public_cache) >= PUBLIC_CACHE:
            gateway.public_cache.clear()
        cached = gateway.public_cache[key] = (venue.seq, body)
    request.answer = response(200, cached[1], request.keep_alive)
    connection.write_ready()


def get_trades(gateway, connection, request, principal, segments, query, body):
    spec = gateway.instruments.spec(segments[2])
    limit = int_param(query, "limit", 100, 1, MAX_TRADES)
    recent = gateway.venue.recent_trades[spec.index]
    newest = list(recent)[-limit:][::-1]
    trades = [{"trade_id": str(trade_id), "price": spec.ticks_to_price(price),
               "qty": spec.lots_to_qty(qty), "taker_side": "buy" if side == 1 else "sell",
               "ts_ns": ts} for trade_id, price, qty, side, ts in newest]  # fmt: skip
    connection.respond(request, 200, {"symbol": spec.symbol, "trades": trades})


def get_openapi(gateway, connection, request, principal, segments, query, body):
    request.answer = response(200, (DOCS / "openapi.json").read_bytes(), request.keep_alive)
    connection.write_ready()


def get_docs(gateway, connection, request, principal, segments, query, body):
    request.answer = response(200, (DOCS / "api.html").read_bytes(), request.keep_alive,
                              content_type="text/html; charset=utf-8")  # fmt: skip
    connection.write_ready()


def get_metrics(gateway, connection, request, principal, segments, query, body):
    """Prometheus text, to clients on this host only (as on --metrics-port)."""
    if gateway.metrics is None:
        raise wire.RequestError("NOT_FOUND", "no metrics with the engine in its own process")
    if not ipaddress.ip_address(connection.ip).is_loopback:
        raise wire.RequestError("FORBIDDEN", "metrics are served to this host only")
    request.answer = response(200, gateway.metrics().encode(), request.keep_alive,
                              content_type="text/plain; version=0.0.4")  # fmt: skip
    connection.write_ready()


# -- read --


def get_orders(gateway, connection, request, principal, segments, query, body):
    status = query.get("status", "open")
    if status != "open":
        raise wire.RequestError("INVALID_PARAMS", "status=open lists open orders; closed ones "
                                "are at /v1/orders/{order_id}")  # fmt: skip
    symbol = query.get("symbol")
    instrument = None if symbol is None else gateway.instruments.spec(symbol).index
    orders = [wire.order_out(gateway.instruments, o)
              for o in gateway.venue.view.open.get(principal.account, {}).values()
              if instrument is None or o.instrument == instrument]  # fmt: skip
    connection.respond(request, 200, {"orders": orders})


def get_order(gateway, connection, request, principal, segments, query, body):
    order_id, _ = wire.order_id_of(wire.OrderRef(order_id=segments[2]))
    order = gateway.venue.order_status(principal.account, order_id, "")
    connection.respond(request, 200, {"order": wire.order_out(gateway.instruments, order)})


def get_fills(gateway, connection, request, principal, segments, query, body):
    history = gateway.venue.history
    if history is None:
        raise wire.RequestError("NOT_FOUND", "this venue keeps no history")
    symbol = query.get("symbol")
    spec = None if symbol is None else gateway.instruments.spec(symbol)
    cursor = query.get("cursor")
    if cursor is not None and not wire.whole_number(cursor):
        raise wire.RequestError("INVALID_PARAMS", "cursor is the next_cursor of a previous page")
    limit = int_param(query, "limit", 100, 1, 1000)
    page = history.fills(principal.account, None if spec is None else spec.index,
                         None if cursor is None else int(cursor), limit)  # fmt: skip
    instruments = gateway.instruments
    fills = []
    for row in page.rows:
        row_spec = instruments.specs[row["instrument"]]
        fills.append(wire.Fill(
            trade_id=str(row["trade_id"]), order_id=str(row["order_id"]),
            client_order_id=row["client_order_id"] or None,
            symbol=row_spec.symbol, side="buy" if row["side"] == 1 else "sell",
            price=row_spec.ticks_to_price(row["price"]), qty=row_spec.lots_to_qty(row["qty"]),
            fee=row_spec.quote_to_text(row["fee"]),
            fee_asset=instruments.asset_names[row_spec.quote_asset],
            liquidity="maker" if row["maker"] else "taker", ts_ns=row["ts_ns"],
        ))  # fmt: skip
    next_cursor = None if page.next_cursor is None else str(page.next_cursor)
    connection.respond(request, 200, {"fills": fills, "next_cursor": next_cursor})


def get_balances(gateway, connection, request, principal, segments, query, body):
    held = gateway.venue.view.balances.get(principal.account, {})
    balances = [wire.balance_out(gateway.instruments, a, *held[a]) for a in sorted(held)]
    connection.respond(request, 200, {"balances": balances})


def get_positions(gateway, connection, request, principal, segments, query, body):
    held = gateway.venue.view.positions.get(principal.account, {})
    positions = [wire.position_out(gateway.instruments, i, *held[i]) for i in sorted(held)]
    connection.respond(request, 200, {"positions": positions})


# -- trade --


def post_order(gateway, connection, request, principal, segments, query, body):
    wire.spend_order(gateway.limiter, principal.account)
    record = wire.place_record(gateway.instruments, body, principal.account, request.recv_ns)
    connection.enter(request, principal, "place", [record])


PLACEMENT = msgspec.json.Decoder(wire.PlaceParams).decode  # a batch's orders, one by one


def post_batch(gateway, connection, request, principal, segments, query, body):
    items = wire.batch_records(gateway.instruments, gateway.limiter, principal.account,
                               body.orders, PLACEMENT, request.recv_ns)  # fmt: skip
    connection.enter(request, principal, "batch", items)


def patch_order(gateway, connection, request, principal, segments, query, body):
    wire.spend_order(gateway.limiter, principal.account)
    params = wire.AmendParams(order_id=segments[2], price=body.price, qty=body.qty)
    order_id, _ = wire.order_id_of(params)
    instrument, _ = gateway.venue.amend_target(connection, principal.account, order_id, b"")
    record = wire.amend_record(gateway.instruments, params, instrument, principal.account,
                               request.recv_ns)  # fmt: skip
    connection.enter(request, principal, "amend", [record])


def delete_order(gateway, connection, request, principal, segments, query, body):
    record = wire.cancel_record(wire.OrderRef(order_id=segments[2]), principal.account,
                                request.recv_ns)  # fmt: skip
    connection.enter(request, principal, "cancel", [record])


def delete_orders(gateway, connection, request, principal, segments, query, body):
    """One order by ?client_order_id=, else a mass cancel (?symbol=, ?side=)."""
    if "client_order_id" in query:
        ref = wire.OrderRef(client_order_id=query["client_order_id"])
        record = wire.cancel_record(ref, principal.account, request.recv_ns)
        connection.enter(request, principal, "cancel", [record])
        return
    side = query.get("side")
    if side not in (None, "buy", "sell"):
        raise wire.RequestError("INVALID_PARAMS", "side is buy or sell")
    params = wire.CancelAllParams(symbol=query.get("symbol"), side=side)
    record = wire.mass_cancel_record(gateway.instruments, params, principal.account,
                                     request.recv_ns)  # fmt: skip
    connection.enter(request, principal, "cancel_all", [record])


def post_cancel_all_after(gateway, connection, request, principal, segments, query, body):
    if not 0 <= body.timeout_ms <= wire.MAX_CANCEL_AFTER_MS:
        raise wire.RequestError("INVALID_TIMEOUT", wire.MESSAGES["INVALID_TIMEOUT"])
    record = wire.cancel_all_after_record(body.timeout_ms, principal.account, request.recv_ns)
    connection.enter(request, principal, "cancel_all_after", [record])


def post_cancel_on_disconnect(gateway, connection, request, principal, segments, query, body):
    """While this connection lasts: when it ends, for any reason, the account's
    open orders are canceled (`enabled` false: no longer)."""
    connection.cancel_on_disconnect = principal.account if body.enabled else 0
    connection.respond(request, 200, {"enabled": body.enabled})


# (method, path pattern with None for a parameter, handler, permission, body type)
ROUTES = [
    ("GET", ("v1", "time"), get_time, None, None),
    ("GET", ("v1", "health"), get_health, None, None),
    ("GET", ("v1", "instruments"), get_instruments, None, None),
    ("GET", ("v1", "book", None), get_book, None, None),
    ("GET", ("v1", "trades", None), get_trades, None, None),
    ("GET", ("v1", "openapi.json"), get_openapi, None, None),
    ("GET", ("docs",), get_docs, None, None),
    ("GET", ("metrics",), get_metrics, None, None),
    ("POST", ("v1", "orders"), post_order, "trade", wire.PlaceParams),
    ("POST", ("v1", "orders", "batch"), post_batch, "trade", BatchBody),
    ("GET", ("v1", "orders"), get_orders, "read", None),
    ("DELETE", ("v1", "orders"), delete_orders, "trade", None),
    ("GET", ("v1", "orders", None), get_order, "read", None),
    ("PATCH", ("v1", "orders", None), patch_order, "trade", AmendBody),
    ("DELETE", ("v1", "orders", None), delete_order, "trade", None),
    ("POST", ("v1", "cancel-all-after"), post_cancel_all_after, "trade", TimeoutBody),
    ("POST", ("v1", "cancel-on-disconnect"), post_cancel_on_disconnect, "trade", EnabledBody),
    ("GET", ("v1", "fills"), get_fills, "read", None),
    ("GET", ("v1", "balances"), get_balances, "read", None),
    ("GET", ("v1", "positions"), get_positions, "read", None),
]

# the query parameters each endpoint reads; any other is refused
QUERIES = {
    get_book: {"depth"},
    get_trades: {"limit"},
    get_orders: {"symbol", "status"},
    delete_orders: {"client_order_id", "symbol", "side"},
    get_fills: {"symbol", "cursor", "limit"},
}

# routes by (segments, first segment, second segment): a parameter is never
# among the first two
ROUTES_BY_SHAPE: dict[tuple, list] = {}
for _route in ROUTES:
    _pattern = _route[1]
    _shape = (len(_pattern), _pattern[0], _pattern[1] if len(_pattern) > 1 else "")
    ROUTES_BY_SHAPE.setdefault(_shape, []).append(_route)
# paths without a parameter, as written: (method, path) -> (segments, route)
STATIC_ROUTES = {(method, "/" + "/".join(pattern)): (list(pattern), (handler, permission, body))
                 for method, pattern, handler, permission, body in ROUTES
                 if None not in pattern}  # fmt: skip
