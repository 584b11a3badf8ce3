"""The REST gateway as a client sees it: the real `flowgate serve` on a
loopback port, driven with the Python SDK (`flowgate_client.RestClient`) and
raw sockets."""

import json
import os
import signal
import socket
import threading
import time
from functools import partial

import msgspec
import pytest

from flowgate_client import Credentials, FlowgateError, RestClient, rest_headers
from gateways.auth.keys import KeyStore
from gateways.rest import api, openapi
from tests.server import ServerProcess, credentials

CLIENTS: list[RestClient] = []  # closed after each test


@pytest.fixture(autouse=True)
def close_clients():
    yield
    for opened in CLIENTS:
        opened.close()
    CLIENTS.clear()


def client(server: ServerProcess, account: int | None = None, key_type="hmac-sha256"):
    creds = None if account is None else credentials(server, account, key_type)
    CLIENTS.append(RestClient(f"http://127.0.0.1:{server.rest_port}", creds))
    return CLIENTS[-1]


def limit(side: str, price: str, qty: str, **fields) -> dict:
    return dict(symbol="BTC-USDT", side=side, type="limit", price=price, qty=qty, **fields)


def refused(call) -> FlowgateError:
    with pytest.raises(FlowgateError) as error:
        call()
    return error.value


def raw_exchange(port: int, data: bytes, answers: int, timeout: float = 10.0) -> list[bytes]:
    """Send bytes as they are; read `answers` HTTP responses (Content-Length framed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_responses(sock, answers)


def read_responses(sock: socket.socket, answers: int) -> list[bytes]:
    buffer, out = b"", []
    while len(out) < answers:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode()
            length = int(next(line.split(":")[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length")))  # fmt: skip
            if len(buffer) >= head_end + 4 + length:
                out.append(buffer[: head_end + 4 + length])
                buffer = buffer[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# -- public --


def test_public_endpoints(server):
    public = client(server)
    assert abs(public.time()["time_ms"] - time.time_ns() // 1_000_000) < 5_000
    assert public.request("GET", "/v1/health", signed=False)["status"] == "ok"
    (absolute,) = raw_exchange(
        server.rest_port, b"GET http://127.0.0.1/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1
    )  # the absolute form (RFC 9112)
    assert status_of(absolute) == 200 and body_of(absolute)["status"] == "ok"
    (fragment,) = raw_exchange(
        server.rest_port, b"GET /v1/trades/BTC-USDT?limit=5#top HTTP/1.1\r\nHost: x\r\n\r\n", 1
    )
    assert status_of(fragment) == 400 and body_of(fragment)["error"]["code"] == "INVALID_REQUEST"
    (btc, eth) = public.instruments()
    assert (btc.symbol, btc.tick_size, btc.lot_size, btc.min_notional) == (
        "BTC-USDT", "0.01", "0.0001", "1")  # fmt: skip
    trader = client(server, 2)
    trader.place(**limit("sell", "50000.5", "0.01"))
    trader.place(**limit("sell", "50001", "0.02"))
    client(server, 3).place(**limit("buy", "50000.5", "0.004"))
    book = public.book("BTC-USDT", depth=1)
    assert book.asks == [("50000.5", "0.006")] and book.bids == [] and book.seq == 3
    assert len(public.book("BTC-USDT").asks) == 2
    trader.place(**limit("sell", "50002", "0.03"))  # the same request sees the change
    again = public.book("BTC-USDT")
    assert len(again.asks) == 3 and again.seq == 4
    (trade,) = public.trades("BTC-USDT")
    assert (trade.price, trade.qty, trade.taker_side) == ("50000.5", "0.004", "buy")
    assert refused(lambda: public.book("DOGE-USDT")).status == 400
    assert refused(lambda: public.book("BTC-USDT", depth=0)).code == "INVALID_PARAMS"
    spec = public.request("GET", "/v1/openapi.json", signed=False)
    assert spec["openapi"] == "3.1.0" and "/v1/orders" in spec["paths"]
    (page,) = raw_exchange(server.rest_port, b"GET /docs HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert b"text/html" in page and b"POST /v1/orders" in page
    (metrics,) = raw_exchange(server.rest_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert status_of(metrics) == 200 and b"text/plain; version=0.0.4" in metrics
    assert b"\nflowgate_sequence 4\n" in metrics  # the four placements above


def conforms(rest: RestClient, handler, method: str, path: str, query=None, body=None):
    """Send a request raw; its answer has the shape the OpenAPI description documents."""
    answer = rest.request(method, path, query, body)
    msgspec.json.decode(json.dumps(answer), type=openapi.ENDPOINTS[handler][2])
    return answer


# -- orders --


@pytest.mark.parametrize("key_type", ["hmac-sha256", "ed25519"])
def test_an_order_life_with_fills_settlement_and_history(server, key_type):
    maker, taker = client(server, 2, key_type), client(server, 3, key_type)
    placed = maker.place(**limit("sell", "50000", "0.01", client_order_id="m-1"))
    assert placed.order.status == "new" and placed.fills == []
    times = placed.timestamps
    assert times.gateway_in_ns <= times.engine_in_ns <= times.engine_out_ns
    assert times.engine_out_ns <= times.gateway_out_ns
    headers = maker.last_headers
    assert int(headers["ratelimit-limit"]) >= int(headers["ratelimit-remaining"]) >= 0
    assert "ratelimit-reset" in headers
    order_id = placed.order.order_id

    took = conforms(taker, api.post_order, "POST", "/v1/orders", body=limit("buy", "50000",
                                                                             "0.004"))  # fmt: skip
    assert took["order"]["status"] == "filled" and took["fills"][0]["liquidity"] == "taker"
    again = maker.place(**limit("sell", "50000", "0.01", client_order_id="m-1"))
    assert again.retry and again.order.order_id == order_id
    assert refused(lambda: maker.place(**limit("sell", "50001", "0.01", client_order_id="m-1"))
                   ).status == 409  # fmt: skip

    amended = conforms(maker, api.patch_order, "PATCH", f"/v1/orders/{order_id}",
                       body={"qty": "0.008"})  # fmt: skip
    assert amended["order"]["leaves_qty"] == "0.004" and amended["priority_kept"] is True
    assert maker.amend(order_id, price="50001").priority_kept is False  # a new price: last
    assert maker.order(order_id).status == "partially_filled"
    assert [o.order_id for o in maker.open_orders("BTC-USDT")] == [order_id]
    canceled = conforms(maker, api.delete_orders, "DELETE", "/v1/orders",
                        {"client_order_id": "m-1"})  # fmt: skip
    assert canceled["order"]["status"] == "canceled"
    assert maker.order(order_id).status == "canceled"  # closed orders are found too
    assert refused(lambda: maker.cancel(order_id=order_id)).status == 404

    batch = maker.batch([limit("buy", "49000", "0.01"), limit("buy", "49000.001", "0.01"),
                         dict(limit("buy", "49000", "0.01"), symbol="NOPE")])  # fmt: skip
    assert [r.error.code if r.error else None for r in batch.results] == [
        None, "INVALID_PRICE", "UNKNOWN_INSTRUMENT"]  # fmt: skip
    two = [limit("buy", "48000", "0.01"), limit("buy", "1", "0.01")]  # the second refused
    conforms(maker, api.post_batch, "POST", "/v1/orders/batch", body={"orders": two})
    assert conforms(maker, api.delete_orders, "DELETE", "/v1/orders", {"side": "buy"})[
        "canceled"] == 2  # fmt: skip
    armed = maker.cancel_all_after(60_000)
    assert armed.deadline_ns > time.time_ns()
    assert maker.cancel_all_after(0).deadline_ns == 0

    conforms(taker, api.get_balances, "GET", "/v1/balances")
    conforms(taker, api.get_positions, "GET", "/v1/positions")
    conforms(taker, api.get_orders, "GET", "/v1/orders")
    balances = {b.asset: b for b in taker.balances()}
    assert balances["BTC"].total == "100.004" and balances["USDT"].locked == "0"
    (position,) = taker.positions()
    assert (position.net_qty, position.avg_entry_price) == ("0.004", "50000")


def test_cancel_on_disconnect_goes_with_the_connection_that_asked(server):
    trader, watcher = client(server, 2), client(server, 2)
    assert trader.cancel_on_disconnect() is True
    trader.place(**limit("buy", "49000", "0.01"))
    assert len(watcher.open_orders()) == 1
    trader.close()  # the connection ends: the account's open orders go with it
    deadline = time.monotonic() + 10
    while watcher.open_orders() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert watcher.open_orders() == []
    calm = client(server, 2)  # armed, then disarmed: a close cancels nothing
    calm.cancel_on_disconnect()
    assert calm.cancel_on_disconnect(False) is False
    calm.place(**limit("buy", "49000", "0.01"))
    calm.close()
    time.sleep(0.5)
    assert len(watcher.open_orders()) == 1


def test_a_closed_order_reads_the_same_after_a_restart(start):
    server = start()
    trader = client(server, 2)
    expire_ts = time.time_ns() // 1_000_000 + 3_600_000
    placed = trader.place(**limit("buy", "49000", "0.001", post_only=True, tif="gtd",
                                  expire_ts=expire_ts, client_order_id="closed-1"))  # fmt: skip
    trader.cancel(order_id=placed.order.order_id)
    trader.place(**limit("sell", "50000", "0.002"))
    client(server, 3).place(**limit("buy", "50000", "0.001"))
    trades = client(server).trades("BTC-USDT")
    assert len(trades) == 1
    before = trader.request("GET", f"/v1/orders/{placed.order.order_id}")["order"]
    assert (before["post_only"], before["leaves_qty"]) == (True, "0")
    assert (before["expire_ts"], before["cancel_reason"]) == (expire_ts, "user")
    assert server.stop() == 0
    again = ServerProcess(server.data_dir)
    try:
        # from the history now: the same answer
        reader = client(again, 2)
        assert reader.request("GET", f"/v1/orders/{placed.order.order_id}")["order"] == before
        assert client(again).trades("BTC-USDT") == trades  # the recent public trades too
    finally:
        assert again.stop() == 0


def test_fills_are_paginated_newest_first(server):
    maker, taker = client(server, 2), client(server, 3)
    for i in range(5):
        maker.place(**limit("sell", f"{50000 + i}", "0.001"))
    took = taker.request("POST", "/v1/orders", body=limit("buy", "50010", "0.005",
                                                          client_order_id="sweep-1"))  # fmt: skip
    deadline = time.monotonic() + 10
    while len(taker.fills().fills) < 5:  # the history is written in the background
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the history's fills are the answer's, client order id and all
    stored = taker.request("GET", "/v1/fills")["fills"]
    assert sorted(stored, key=lambda f: f["trade_id"]) == took["fills"]
    assert {f["client_order_id"] for f in stored} == {"sweep-1"}
    seen, cursor = [], None
    while True:
        query = {"symbol": "BTC-USDT", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = conforms(taker, api.get_fills, "GET", "/v1/fills", query)
        seen += [f["trade_id"] for f in page["fills"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in range(5, 0, -1)]
    assert refused(lambda: taker.fills(cursor="abc")).code == "INVALID_PARAMS"


# -- errors --


def test_every_error_has_its_status_and_code(server):
    trader = client(server, 2)
    cases = [
        (lambda: trader.place(**limit("buy", "50000.001", "0.01")), 400, "INVALID_PRICE"),
        (lambda: trader.place(**limit("buy", "50000", "-1")), 400, "INVALID_QUANTITY"),
        (lambda: trader.place(**dict(limit("buy", "50000", "0.01"), qty=1)), 400,
         "INVALID_PARAMS"),
        (lambda: trader.place(**limit("buy", "49000", "99")), None, None),  # rests: funded
        (lambda: trader.place(**limit("buy", "49000", "99")), None, None),  # 9.7M of 10M USDT
        (lambda: trader.place(**limit("buy", "49000", "99")), 400, "INSUFFICIENT_BALANCE"),
        (lambda: trader.cancel(order_id="777"), 404, "UNKNOWN_ORDER"),
        (lambda: trader.order("777"), 404, "UNKNOWN_ORDER"),
        # 0 names no order (not the newest without a client order id), nor do other digits
        (lambda: trader.order("0"), 404, "UNKNOWN_ORDER"),
        (lambda: trader.order("%C2%B2"), 404, "UNKNOWN_ORDER"),
        (lambda: trader.request("GET", "/v1/fills", {"cursor": str(1 << 63)}), 400,
         "INVALID_PARAMS"),
        (lambda: trader.request("GET", "/v1/book/BTC-USDT", {"depth": "\u00b2"}), 400,
         "INVALID_PARAMS"),
        (lambda: trader.place(**limit("buy", "49000", "0.01", tif="gtd", expire_ts=10**13)), 400,
         "INVALID_EXPIRE_TIME"),
        (lambda: trader.request("GET", "/v1/nope"), 404, "NOT_FOUND"),
        (lambda: trader.request("PUT", "/v1/orders"), 405, "METHOD_NOT_ALLOWED"),
        (lambda: trader.request("GET", "/v1/orders", {"status": "closed"}), 400,
         "INVALID_PARAMS"),
        (lambda: client(server).balances(), 401, "UNAUTHENTICATED"),
        (lambda: trader.cancel_all_after(-1), 400, "INVALID_TIMEOUT"),
        # a misspelt filter is refused, never read as no filter (a mass cancel of everything)
        (lambda: trader.request("DELETE", "/v1/orders", {"sym": "BTC-USDT"}), 400,
         "INVALID_PARAMS"),
        (lambda: trader.request("GET", "/v1/book/BTC-USDT", {"levels": "5"}), 400,
         "INVALID_PARAMS"),
    ]  # fmt: skip
    for call, status, code in cases:
        if status is None:
            call()
            continue
        error = refused(call)
        assert (error.status, error.code) == (status, code)
        if status == 405:
            assert trader.last_headers["allow"] == "POST, GET, DELETE, HEAD"
    # an order command refused carries the venue's timestamps, the engine's 0 if it never
    # saw it
    at_gateway = refused(lambda: trader.place(**limit("buy", "50000.001", "0.01")))
    times = at_gateway.details["timestamps"]
    assert times["engine_in_ns"] == 0 < times["gateway_in_ns"] <= times["gateway_out_ns"]
    by_core = refused(lambda: trader.place(**limit("buy", "49000", "99")))
    assert by_core.code == "INSUFFICIENT_BALANCE" and by_core.details["timestamps"]["engine_in_ns"]
    resting = trader.open_orders()[0].order_id
    for change, code in (({"price": "0"}, "INVALID_PRICE"), ({"qty": "0"}, "INVALID_QUANTITY")):
        assert refused(partial(trader.amend, resting, **change)).code == code  # 0: not "unchanged"
    assert trader.cancel_all() == 2


def test_signatures_are_checked_end_to_end(server):
    creds = credentials(server, 2, "hmac-sha256")
    port = server.rest_port
    body = json.dumps(limit("buy", "49000", "0.01")).encode()

    def post(headers: dict, payload: bytes = body, content_type="application/json") -> bytes:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                   f"Content-Length: {len(payload)}\r\n{lines}\r\n").encode() + payload  # fmt: skip
        (answer,) = raw_exchange(port, request, 1)
        return answer

    good = rest_headers(creds, "POST", "/v1/orders", body)
    assert status_of(post(good)) == 200
    # a nonce is any string, signed and sent as UTF-8; media types ignore case
    accented = rest_headers(creds, "POST", "/v1/orders", body, nonce="café")
    assert status_of(post(accented, content_type="Application/JSON")) == 200
    replayed = post(good)
    assert (status_of(replayed), body_of(replayed)["error"]["code"]) == (401, "REPLAYED")
    tampered = post(rest_headers(creds, "POST", "/v1/orders", body),
                    body.replace(b"0.01", b"0.02"))  # fmt: skip
    assert body_of(tampered)["error"]["code"] == "UNAUTHENTICATED"
    skewed = post(rest_headers(creds, "POST", "/v1/orders", body,
                               ts=time.time_ns() // 1_000_000 - 20_000))  # fmt: skip
    error = body_of(skewed)["error"]
    assert status_of(skewed) == 401 and error["code"] == "TIMESTAMP_OUT_OF_WINDOW"
    assert error["client_ts_ms"] < error["server_time_ms"]
    past = time.time_ns() // 1_000_000 - 20_000
    wide = post(rest_headers(creds, "POST", "/v1/orders", body, ts=past, window_ms=60_000))
    assert status_of(wide) == 200  # a wider window takes the same skew
    bad_window = post(rest_headers(creds, "POST", "/v1/orders", body, window_ms=60_001))
    assert body_of(bad_window)["error"]["code"] == "INVALID_WINDOW"
    not_a_window = post({**rest_headers(creds, "POST", "/v1/orders", body), "FG-WINDOW": "abc"})
    assert (status_of(not_a_window), body_of(not_a_window)["error"]["code"]) == (
        400, "INVALID_WINDOW")  # fmt: skip
    # an Ed25519 signature of the wrong length is a failed signature like any other
    ed25519 = credentials(server, 2, "ed25519")
    for garbled in ("AAAA", "!!", "A" * 88):
        headers = {**rest_headers(ed25519, "POST", "/v1/orders", body), "FG-SIGN": garbled}
        answer = post(headers)
        assert (status_of(answer), body_of(answer)["error"]["code"]) == (401, "UNAUTHENTICATED")
    # the query string is signed as sent
    reader = client(server, 2)
    assert reader.request("GET", "/v1/orders", {"symbol": "BTC-USDT"})["orders"]
    # a key without the trade permission reads but cannot trade
    store = KeyStore(server.data_dir)
    key, secret = store.create(4, "hmac-sha256", permissions=("read",))
    store.close()
    time.sleep(1.2)  # the server reloads keys twice a second
    read_only = RestClient(f"http://127.0.0.1:{port}",
                           Credentials(key.key_id, "hmac-sha256", secret))  # fmt: skip
    CLIENTS.append(read_only)
    assert read_only.balances()
    assert refused(lambda: read_only.place(**limit("buy", "49000", "0.01"))).status == 403
    assert int(read_only.last_headers["ratelimit-remaining"]) >= 0  # spent, and said so


def test_requests_over_budget_get_429_and_cancels_still_pass(start):
    server = start(sections={"limits": {"key_burst": 1000, "order_burst": 150}})
    trader = client(server, 2)
    statuses = []
    for _ in range(230):
        try:
            trader.place(**limit("buy", "46000", "0.001"))
            statuses.append(200)
        except FlowgateError as e:
            statuses.append(e.status)
            assert e.code == "RATE_LIMITED" and int(trader.last_headers["retry-after"]) >= 1
    # the account's order budget (150) runs out; it is cancel-only, not cut off
    assert set(statuses) == {200, 429} and 150 <= statuses.count(200) < 200
    assert trader.cancel_all() == statuses.count(200)
    assert int(trader.last_headers["ratelimit-remaining"]) > 0  # the key's budget
    assert server.stop() == 0


def test_an_order_the_engine_takes_after_its_signed_window_is_not_applied(start):
    server = start("--engine-process")
    trader = client(server, 2)
    trader.window_ms = 300
    engine = server.child_pid()
    outcome = {}

    def place():
        try:
            trader.place(**limit("buy", "46000", "0.001", client_order_id="late"))
        except FlowgateError as e:
            outcome["error"] = e

    os.kill(engine, signal.SIGSTOP)  # the engine stalls: the order waits in the ring
    try:
        placing = threading.Thread(target=place)
        placing.start()
        time.sleep(0.6)  # past the window
    finally:
        os.kill(engine, signal.SIGCONT)
    placing.join(30)
    error = outcome["error"]
    assert (error.status, error.code) == (503, "DEADLINE_EXCEEDED")
    assert error.details["deadline_ns"] < error.details["timestamps"]["engine_in_ns"]
    assert trader.request("GET", "/v1/orders")["orders"] == []  # nothing was placed


def test_a_request_over_the_keys_budget_still_says_what_is_left(start):
    server = start(sections={"limits": {"key_rate": 1, "key_burst": 3}})
    reader = client(server, 2)
    for _ in range(3):
        reader.balances()
    error = refused(reader.balances)
    assert (error.status, error.code) == (429, "RATE_LIMITED")
    headers = reader.last_headers  # like every signed answer, with Retry-After besides
    assert headers["ratelimit-limit"] == "3" and headers["ratelimit-remaining"] == "0"
    assert int(headers["ratelimit-reset"]) >= 1 and int(headers["retry-after"]) >= 1
    assert server.stop() == 0


# -- the protocol --


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server):
    creds = credentials(server, 2, "hmac-sha256")
    body = json.dumps(limit("buy", "49000", "0.01")).encode()
    signed = "".join(f"{k}: {v}\r\n" for k, v in rest_headers(creds, "POST", "/v1/orders",
                                                               body).items())  # fmt: skip
    pipeline = (b"GET /v1/time HTTP/1.1\r\nHost: x\r\n\r\n"
                + (f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n{signed}\r\n").encode() + body
                + b"GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                + b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(pipeline)
        answers = read_responses(sock, 4)
        assert [status_of(a) for a in answers] == [200, 200, 404, 200]
        assert "time_ms" in body_of(answers[0]) and "order" in body_of(answers[1])
        assert body_of(answers[3])["status"] == "ok"
        sock.sendall(b"GET /v1/time HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        (last,) = read_responses(sock, 1)
        assert status_of(last) == 200 and b"Connection: close" in last
        assert sock.recv(1) == b""  # and then it is closed


def test_head_answers_a_gets_headers_without_its_body(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(b"HEAD /v1/time HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /v1/time HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            data += sock.recv(65536)
    head, get = (b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:])
    assert status_of(head) == 200 and head.endswith(b"\r\n\r\n")  # no body...
    assert b"Content-Length: " in head  # ...but its length
    assert body_of(get)["time_ms"] > 0  # and the next answer is read as it should be


def test_a_client_that_expects_100_continue_gets_it(server):
    creds = credentials(server, 2, "hmac-sha256")
    body = json.dumps(limit("buy", "49000", "0.01")).encode()
    signed = "".join(f"{k}: {v}\r\n" for k, v in rest_headers(creds, "POST", "/v1/orders",
                                                               body).items())  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall((f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                      f"{signed}\r\n").encode())  # fmt: skip
        assert sock.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (answer,) = read_responses(sock, 1)
        assert status_of(answer) == 200 and body_of(answer)["order"]["status"] == "new"


def test_bad_http_gets_a_clear_status_and_a_closed_connection(start):
    server = start(sections={"limits": {"http_request_timeout_ms": 500,
                                        "max_connections_per_ip": 8}})  # fmt: skip
    port = server.rest_port
    cases = [
        (b"NONSENSE\r\n\r\n", 400, "INVALID_REQUEST"),
        (b"GET /v1/time HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431,
         "HEADERS_TOO_LARGE"),
        (b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413,
         "MESSAGE_TOO_LARGE"),
        # a header line that never ends is refused as it grows, not held until the timeout
        (b"GET /v1/time HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000, 431,
         "HEADERS_TOO_LARGE"),
    ]  # fmt: skip
    for data, status, code in cases:
        (answer,) = raw_exchange(port, data, 1)
        assert (status_of(answer), body_of(answer)["error"]["code"]) == (status, code)
        assert b"Connection: close" in answer
    creds = credentials(server, 2, "hmac-sha256")
    bodies = [
        ("/v1/orders", b"{not json", "application/json", "INVALID_REQUEST"),
        ("/v1/orders", b"{}", "text/plain", "UNSUPPORTED_MEDIA_TYPE"),
        ("/v1/orders", b"{}", "application/jsonx", "UNSUPPORTED_MEDIA_TYPE"),
        ("/v1/orders", b'{"symbol": "BTC-\xff"}', "application/json", "INVALID_REQUEST"),
        ("/v1/orders/batch", b'{"orders": [' + b"[" * 30_000 + b"]" * 30_000 + b"]}",
         "application/json", "INVALID_REQUEST"),  # too deep to decode
    ]  # fmt: skip
    for path, payload, content_type, code in bodies:
        headers = "".join(f"{k}: {v}\r\n" for k, v in rest_headers(creds, "POST", path,
                                                                    payload).items())  # fmt: skip
        (answer,) = raw_exchange(port, (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                        f"{content_type}\r\nContent-Length: {len(payload)}\r\n"
                                        f"{headers}\r\n").encode() + payload, 1)  # fmt: skip
        assert body_of(answer)["error"]["code"] == code, (path, payload[:40])
    # a chunked body of small chunks: its framing is no header, however the reads fall
    payload = json.dumps(limit("buy", "49000", "0.01", client_order_id="c" * 30)).encode()
    payload += b" " * (20_000 - len(payload))
    chunked = b"".join(b"1\r\n" + payload[i : i + 1] + b"\r\n" for i in range(len(payload)))
    headers = "".join(f"{k}: {v}\r\n" for k, v in rest_headers(creds, "POST", "/v1/orders",
                                                                payload).items())  # fmt: skip
    request = (
        (
            f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n{headers}\r\n"
        ).encode()
        + chunked
        + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for at in range(0, len(request), 8192):
            sock.sendall(request[at : at + 8192])
            time.sleep(0.001)
        (answer,) = read_responses(sock, 1)
    assert status_of(answer) == 200, answer
    # an upgrade (curl --http2 asks for h2c) is refused once, and nothing is done
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /v1/time HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                     b"Upgrade: h2c\r\n\r\n")  # fmt: skip
        everything = b""
        while chunk := sock.recv(65536):
            everything += chunk
    assert everything.count(b"HTTP/1.1 ") == 1 and status_of(everything) == 400
    # whitespace around a header's value is no part of it
    (answer,) = raw_exchange(port, b"POST /v1/time HTTP/1.1\r\nHost: x\r\nContent-Length: 2 \r\n"
                                   b"\r\n{}", 1)  # fmt: skip
    assert (status_of(answer), body_of(answer)["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")

    # a slow sender is timed out, and holds no one else up meanwhile
    slow = socket.create_connection(("127.0.0.1", port), timeout=10)
    slow.sendall(b"GET /v1/time HTTP/1.1\r\nHost: x\r\n")
    public = client(server)
    assert public.time()["time_ms"] > 0
    (answer,) = read_responses(slow, 1)
    assert status_of(answer) == 408 and slow.recv(1) == b""
    slow.close()

    # connections per address are capped
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(7)]
    (answer,) = raw_exchange(port, b"GET /v1/time HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert status_of(answer) == 429 and body_of(answer)["error"]["code"] == "TOO_MANY_CONNECTIONS"
    for sock in held:
        sock.close()
    public.close()
    time.sleep(0.2)
    assert client(server).time()["time_ms"] > 0
    assert server.stop() == 0
