"""Blocking REST client of Flowgate (`/v1`, docs/rest.md), over one
keep-alive connection.

    client = RestClient("http://127.0.0.1:8080", credentials)
    placed = client.place(symbol="BTC-USDT", side="buy", type="limit",
                          price="50000.5", qty="0.01", client_order_id="bid-1")

Private requests are signed as API.md specifies (FG-KEY, FG-TS, FG-NONCE,
FG-SIGN). The methods answer typed results (`flowgate_client.types`);
`request` answers the decoded JSON. An error answer raises FlowgateError with
the HTTP `status`. A 5xx
or a lost connection leaves the outcome of an order unknown: place it again
with the same `client_order_id`, which is safe (the venue answers the
original order, with `retry` set).
"""

import http.client
import json
from urllib.parse import urlencode, urlsplit

import msgspec

from flowgate_client import types as t
from flowgate_client.signing import Credentials, rest_headers
from flowgate_client.ws import FlowgateError


class RestClient:
    def __init__(self, base_url: str, credentials: Credentials | None = None,
                 timeout: float = 10.0, window_ms: int | None = None):  # fmt: skip
        url = urlsplit(base_url)
        self.host, self.port = url.hostname, url.port or 80
        self.credentials = credentials
        self.timeout = timeout
        self.window_ms = window_ms
        self.connection: http.client.HTTPConnection | None = None
        self.last_headers: dict[str, str] = {}  # of the last answer (RateLimit-*, ...)

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method: str, path: str, query: dict | None = None, body=None,
                signed: bool = True):  # fmt: skip
        """One request; the decoded answer, or FlowgateError."""
        target = path + ("?" + urlencode(query) if query else "")
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if signed and self.credentials is not None:
            headers.update(rest_headers(self.credentials, method, target, raw,
                                        window_ms=self.window_ms))  # fmt: skip
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, self.timeout)
        try:
            self.connection.request(method, target, body=raw or None, headers=headers)
            answer = self.connection.getresponse()
            payload = answer.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.last_headers = {k.lower(): v for k, v in answer.getheaders()}
        if answer.getheader("connection", "").lower() == "close":
            self.close()
        decoded = json.loads(payload) if payload else None
        if answer.status >= 400:
            error = decoded.get("error", {}) if isinstance(decoded, dict) else {}
            raise FlowgateError(error, status=answer.status)
        return decoded

    def typed(self, kind, method: str, path: str, query: dict | None = None, body=None,
              signed: bool = True):  # fmt: skip
        return msgspec.convert(self.request(method, path, query, body, signed), kind)

    # -- public --

    def time(self) -> dict:
        return self.request("GET", "/v1/time", signed=False)

    def instruments(self) -> list[t.Instrument]:
        answer = self.request("GET", "/v1/instruments", signed=False)
        return msgspec.convert(answer["instruments"], list[t.Instrument])

    def book(self, symbol: str, depth: int | None = None) -> t.Book:
        query = None if depth is None else {"depth": depth}
        return self.typed(t.Book, "GET", f"/v1/book/{symbol}", query, signed=False)

    def trades(self, symbol: str, limit: int | None = None) -> list[t.Trade]:
        query = None if limit is None else {"limit": limit}
        answer = self.request("GET", f"/v1/trades/{symbol}", query, signed=False)
        return msgspec.convert(answer["trades"], list[t.Trade])

    # -- orders --

    def place(self, **params) -> t.OrderResult:
        return self.typed(t.OrderResult, "POST", "/v1/orders", body=params)

    def batch(self, orders: list[dict]) -> t.BatchResult:
        return self.typed(t.BatchResult, "POST", "/v1/orders/batch", body={"orders": orders})

    def amend(self, order_id: str, **params) -> t.OrderResult:
        return self.typed(t.OrderResult, "PATCH", f"/v1/orders/{order_id}", body=params)

    def cancel(self, order_id: str | None = None,
               client_order_id: str | None = None) -> t.OrderResult:  # fmt: skip
        if order_id is not None:
            return self.typed(t.OrderResult, "DELETE", f"/v1/orders/{order_id}")
        return self.typed(t.OrderResult, "DELETE", "/v1/orders",
                          {"client_order_id": client_order_id})  # fmt: skip

    def cancel_all(self, symbol: str | None = None, side: str | None = None) -> int:
        query = {k: v for k, v in (("symbol", symbol), ("side", side)) if v is not None}
        return self.request("DELETE", "/v1/orders", query or None)["canceled"]

    def cancel_all_after(self, timeout_ms: int) -> t.Deadline:
        return self.typed(t.Deadline, "POST", "/v1/cancel-all-after",
                          body={"timeout_ms": timeout_ms})  # fmt: skip

    def cancel_on_disconnect(self, enabled: bool = True) -> bool:
        """While this client's connection lasts: when it ends, for any reason,
        the account's open orders are canceled. The client keeps one
        connection; the venue closes one idle for 60 s."""
        return self.request("POST", "/v1/cancel-on-disconnect", body={"enabled": enabled})[
            "enabled"
        ]

    # -- account --

    def open_orders(self, symbol: str | None = None) -> list[t.Order]:
        query = None if symbol is None else {"symbol": symbol}
        return msgspec.convert(self.request("GET", "/v1/orders", query)["orders"], list[t.Order])

    def order(self, order_id: str) -> t.Order:
        return msgspec.convert(self.request("GET", f"/v1/orders/{order_id}")["order"], t.Order)

    def fills(self, symbol: str | None = None, cursor: str | None = None,
              limit: int | None = None) -> t.FillsPage:  # fmt: skip
        """One page, newest first; `next_cursor` None on the last."""
        query = {k: v for k, v in (("symbol", symbol), ("cursor", cursor), ("limit", limit))
                 if v is not None}  # fmt: skip
        return self.typed(t.FillsPage, "GET", "/v1/fills", query or None)

    def balances(self) -> list[t.Balance]:
        return msgspec.convert(self.request("GET", "/v1/balances")["balances"], list[t.Balance])

    def positions(self) -> list[t.Position]:
        answer = self.request("GET", "/v1/positions")["positions"]
        return msgspec.convert(answer, list[t.Position])
