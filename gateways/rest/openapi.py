"""The OpenAPI 3.1 description of the REST API, generated from the msgspec
Structs the gateway reads and writes, and its rendered reference page.

    python -m gateways.rest.openapi      # rewrite docs/openapi.json and docs/api.html

A test fails when the committed files and the generated ones differ.
"""

import html
import inspect
import json
import sys
from pathlib import Path

import msgspec

from gateways import wire
from gateways.rest import api

DOCS = Path(__file__).resolve().parents[2] / "docs"
VERSION = "1.0.0"


# -- the answers' shapes (the handlers build exactly these keys) --


class Error(msgspec.Struct):
    """A refusal: a stable code, a message, and details such as `retry_after_ms`,
    `server_time_ms`, `client_ts_ms` or `timestamps` where they apply."""

    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: Error


class Timestamps(msgspec.Struct):
    """The venue's clocks for one order request (ns since the epoch)."""

    gateway_in_ns: int
    engine_in_ns: int
    engine_out_ns: int
    gateway_out_ns: int


class OrderResult(msgspec.Struct, omit_defaults=True):
    """The order after matching, with its immediate fills; `retry` when it
    answers a repeated placement (same client_order_id, same parameters);
    `priority_kept` on an amend's: whether the order kept its place in the
    queue (a smaller quantity at the same price)."""

    order: wire.Order
    fills: list[wire.Fill]
    timestamps: Timestamps
    retry: bool = False
    priority_kept: bool | None = None


class CancelResult(msgspec.Struct):
    order: wire.Order
    timestamps: Timestamps


class BatchEntry(msgspec.Struct, omit_defaults=True):
    """One placement of a batch: its result, or its error."""

    order: wire.Order | None = None
    fills: list[wire.Fill] | None = None
    error: Error | None = None


class BatchResult(msgspec.Struct):
    results: list[BatchEntry]
    timestamps: Timestamps


class CancelOrdersResult(msgspec.Struct, omit_defaults=True):
    """With client_order_id, the order canceled (`order`); otherwise how many
    orders the mass cancel canceled (`canceled`)."""

    timestamps: Timestamps
    order: wire.Order | None = None
    canceled: int | None = None


class EnabledResult(msgspec.Struct):
    enabled: bool


class DeadlineResult(msgspec.Struct):
    """0 when disarmed."""

    deadline_ns: int
    timestamps: Timestamps


class Time(msgspec.Struct):
    time_ms: int
    time_ns: int


class Health(msgspec.Struct):
    status: str
    seq: int


class Instrument(msgspec.Struct):
    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    min_notional: str
    max_notional: str


class Instruments(msgspec.Struct):
    instruments: list[Instrument]


class Book(msgspec.Struct):
    """Levels best first as [price, total quantity]; `seq` is the last command
    the book reflects."""

    symbol: str
    seq: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class PublicTrade(msgspec.Struct):
    trade_id: str
    price: str
    qty: str
    taker_side: str
    ts_ns: int


class Trades(msgspec.Struct):
    """Newest first."""

    symbol: str
    trades: list[PublicTrade]


class OrderAnswer(msgspec.Struct):
    order: wire.Order


class Orders(msgspec.Struct):
    orders: list[wire.Order]


class FillsPage(msgspec.Struct):
    """Newest first; pass `next_cursor` as `cursor` for the next page (null: the last)."""

    fills: list[wire.Fill]
    next_cursor: str | None


class Balances(msgspec.Struct):
    balances: list[wire.Balance]


class Positions(msgspec.Struct):
    positions: list[wire.Position]


# -- the endpoints --

SYMBOL = {"name": "symbol", "in": "path", "required": True, "schema": {"type": "string"}}
ORDER_ID = {"name": "order_id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}  # fmt: skip


def query(name: str, schema: dict, text: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


# handler -> (summary, parameters, answer, error statuses)
ENDPOINTS = {
    api.get_time: ("Server time", [], Time, []),
    api.get_health: ("Liveness", [], Health, []),
    api.get_instruments: ("Instruments: symbols, steps and limits", [], Instruments, []),
    api.get_book: (
        "L2 book snapshot",
        [
            SYMBOL,
            query(
                "depth",
                {"type": "integer", "minimum": 1, "maximum": api.MAX_DEPTH, "default": 50},
                "levels a side",
            ),
        ],
        Book,
        [400],
    ),  # fmt: skip
    api.get_trades: (
        "Recent public trades",
        [
            SYMBOL,
            query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": api.MAX_TRADES, "default": 100},
                "how many, newest first",
            ),
        ],
        Trades,
        [400],
    ),  # fmt: skip
    api.get_openapi: ("This description", [], None, []),
    api.get_docs: ("The rendered reference", [], None, []),
    api.get_metrics: ("Prometheus metrics, to clients on the venue's host", [], None, [403, 404]),
    api.post_order: ("Place an order", [], OrderResult, [400, 403, 409, 503]),
    api.post_batch: ("Place up to 20 orders, one result each", [], BatchResult, [400, 503]),
    api.get_orders: (
        "Open orders",
        [
            query("symbol", {"type": "string"}, "one instrument"),
            query("status", {"type": "string", "enum": ["open"], "default": "open"}, "open only"),
        ],
        Orders,
        [400],
    ),  # fmt: skip
    api.delete_orders: (
        "Cancel one order by client_order_id, or mass cancel",
        [
            query("client_order_id", {"type": "string"}, "cancel this order only"),
            query("symbol", {"type": "string"}, "mass cancel: one instrument"),
            query("side", {"type": "string", "enum": ["buy", "sell"]}, "mass cancel: one side"),
        ],
        CancelOrdersResult,
        [400, 404, 503],
    ),  # fmt: skip
    api.get_order: ("One order, open or closed", [ORDER_ID], OrderAnswer, [404]),
    api.patch_order: ("Amend price and/or quantity", [ORDER_ID], OrderResult, [400, 404, 503]),
    api.delete_order: ("Cancel an order", [ORDER_ID], CancelResult, [404, 503]),
    api.post_cancel_all_after: (
        "Dead man's switch: timeout_ms, 0 disarms",
        [],
        DeadlineResult,
        [400, 503],
    ),  # fmt: skip
    api.post_cancel_on_disconnect: (
        "Cancel-on-disconnect: when this connection ends, for any reason, the account's open "
        "orders are canceled (enabled false disarms)",
        [],
        EnabledResult,
        [400],
    ),  # fmt: skip
    api.get_fills: (
        "Executions, cursor-paginated",
        [
            query("symbol", {"type": "string"}, "one instrument"),
            query("cursor", {"type": "string"}, "next_cursor of the previous page"),
            query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                "page size",
            ),
        ],
        FillsPage,
        [400],
    ),  # fmt: skip
    api.get_balances: ("Balances per asset: total, available, locked", [], Balances, []),
    api.get_positions: ("Positions per instrument", [], Positions, []),
}

RATE_HEADERS = {
    "RateLimit-Limit": "the key's burst", "RateLimit-Remaining": "requests left now",
    "RateLimit-Reset": "seconds until the bucket is full again",
}  # fmt: skip
ERROR_TEXT = {400: "bad request (INVALID_*, a refused order: the core's code)",
              401: "UNAUTHENTICATED, TIMESTAMP_OUT_OF_WINDOW, REPLAYED",
              403: "FORBIDDEN, BANNED, KILL_SWITCH_ACTIVE", 404: "UNKNOWN_ORDER, NOT_FOUND",
              408: "REQUEST_TIMEOUT: the request did not arrive in time",
              409: "DUPLICATE_CLIENT_ORDER_ID",
              413: "MESSAGE_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE: send application/json",
              429: "RATE_LIMITED (Retry-After), TOO_MANY_CONNECTIONS",
              431: "HEADERS_TOO_LARGE",
              503: "OVERLOADED, DEADLINE_EXCEEDED: nothing was done; retry with the same "
                   "client_order_id"}  # fmt: skip


def spec() -> dict:
    bodies = [wire.PlaceParams, api.BatchBody, api.AmendBody, api.TimeoutBody, api.EnabledBody]
    types = [Error, ErrorBody, *(e[2] for e in ENDPOINTS.values() if e[2] is not None), *bodies]
    _, schemas = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    for schema in schemas.values():  # msgspec releases differ on dedenting docstrings
        if "description" in schema:
            schema["description"] = inspect.cleandoc(schema["description"])
    paths: dict[str, dict] = {}
    for method, pattern, handler, permission, body_type in api.ROUTES:
        summary, parameters, answer, errors = ENDPOINTS[handler]
        names = iter(p["name"] for p in parameters if p["in"] == "path")
        path = "/" + "/".join(p if p is not None else "{" + next(names) + "}" for p in pattern)
        operation = {"operationId": handler.__name__, "summary": summary,
                     "parameters": parameters, "responses": {}}  # fmt: skip
        if body_type is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body_type.__name__}"}}}}  # fmt: skip
        ok: dict = {"description": "OK"}
        if answer is not None:
            ok["content"] = {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{answer.__name__}"}}}  # fmt: skip
        elif handler is api.get_docs:
            ok["content"] = {"text/html": {"schema": {"type": "string"}}}
        elif handler is api.get_metrics:
            ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
        else:
            ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        # what any request may meet (403: BANNED, an address that failed to sign too often)
        statuses = set(errors) | {400, 403, 408, 413, 429, 431}
        if body_type is not None:
            statuses.add(415)
        if permission is not None:
            operation["security"] = [{"key": [], "timestamp": [], "nonce": [], "signature": []}]
            operation["description"] = f"Needs a key with the `{permission}` permission."
            ok["headers"] = {name: {"description": text, "schema": {"type": "integer"}}
                             for name, text in RATE_HEADERS.items()}  # fmt: skip
            statuses |= {401, 403}
        operation["responses"]["200"] = ok
        for status in sorted(statuses):
            response = {"description": ERROR_TEXT[status], "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}  # fmt: skip
            if status == 429:
                response["headers"] = {"Retry-After": {
                    "description": "seconds", "schema": {"type": "integer"}}}  # fmt: skip
            operation["responses"][str(status)] = response
        paths.setdefault(path, {})[method.lower()] = operation
    header = {"type": "apiKey", "in": "header"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flowgate REST API",
            "version": VERSION,
            "description": (
                "Decimals are JSON strings; times are ms (requests) and ns (`*_ns`). Private "
                "requests are signed: FG-SIGN is the Ed25519 signature (or HMAC-SHA256) of "
                "`{FG-TS}\\n{FG-NONCE}\\n{METHOD}\\n{path?query}\\n{body}`, base64 "
                "(docs/signing.md). A 5xx or a lost connection leaves an order's outcome "
                "unknown: place it again with the same client_order_id, which is safe."
            ),
        },  # fmt: skip
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "key": {**header, "name": "FG-KEY", "description": "the API key's id"},
                "timestamp": {**header, "name": "FG-TS", "description": "ms since the epoch"},
                "nonce": {**header, "name": "FG-NONCE", "description": "unique per request"},
                "signature": {**header, "name": "FG-SIGN", "description": "base64 signature"},
            },
        },
    }


def render(document: dict) -> str:
    """A self-contained reference page (no scripts, nothing fetched)."""
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>Flowgate REST API</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
           "code,pre{background:#f4f4f4}h3{margin-top:2em}td,th{padding:.2em .6em;"
           "text-align:left;vertical-align:top}</style></head><body>",
           f"<h1>{html.escape(document['info']['title'])} {document['info']['version']}</h1>",
           f"<p>{html.escape(document['info']['description'])}</p>"]  # fmt: skip
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            out.append(f"<h3><code>{method.upper()} {html.escape(path)}</code></h3>")
            out.append(f"<p>{html.escape(op['summary'])}. {html.escape(op.get('description', ''))}"
                       "</p>")  # fmt: skip
            if op["parameters"]:
                out.append("<table><tr><th>parameter</th><th>in</th><th>about</th></tr>")
                for p in op["parameters"]:
                    about = html.escape(p.get("description", ""))
                    out.append(f"<tr><td><code>{p['name']}</code></td><td>{p['in']}</td>"
                               f"<td>{about}</td></tr>")  # fmt: skip
                out.append("</table>")
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                out.append(f"<p>Body: <a href='#{ref.rsplit('/', 1)[1]}'>{ref.rsplit('/', 1)[1]}"
                           "</a></p>")  # fmt: skip
            statuses = ", ".join(f"{s} {html.escape(r['description'])}"
                                 for s, r in op["responses"].items())  # fmt: skip
            out.append(f"<p>Answers: {statuses}</p>")
    out.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        text = html.escape(json.dumps(schema, indent=2))
        out.append(f"<h3 id='{name}'>{name}</h3><pre>{text}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def files() -> dict[Path, str]:
    document = spec()
    return {DOCS / "openapi.json": json.dumps(document, indent=2) + "\n",
            DOCS / "api.html": render(document)}  # fmt: skip


if __name__ == "__main__":
    for path, text in files().items():
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
