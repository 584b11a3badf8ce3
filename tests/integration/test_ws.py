"""The WebSocket gateway as a client sees it: the real `flowgate serve` on a
loopback port, driven with the Python SDK (`flowgate_client.ws`) and raw sockets."""

import asyncio
import base64
import json
import os
import random
import signal
import socket
import struct
import time

import pytest

from engine import config as venue_config
from engine.runtime import recover
from flowgate_client import FlowgateError, ReplayUnavailable, WsClient, ws_logon_params
from gateways.auth.keys import KeyStore
from tests.server import ServerProcess, credentials

PLACEMENTS = pytest.mark.parametrize("placement", [(), ("--engine-process",)],
                                     ids=["one-thread", "engine-process"])  # fmt: skip


OPEN: list[WsClient] = []  # closed when the scenario ends


def run(coroutine, timeout: float = 60):
    async def bounded():
        try:
            return await asyncio.wait_for(coroutine, timeout)
        finally:
            for client in OPEN:
                await client.aclose()
            OPEN.clear()

    return asyncio.run(bounded())


async def connect(server: ServerProcess, account: int | None = None, key_type="ed25519",
                  **options) -> WsClient:  # fmt: skip
    creds = None if account is None else credentials(server, account, key_type)
    client = WsClient(server.ws_url, creds, **options)
    OPEN.append(client)
    await client.open()
    return client


class Recording(WsClient):
    """A client that also notes what arrives, in order: ("answer", id) or
    (channel, seq)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple] = []

    def _received(self, payload: bytes):
        message = self.codec.decode(payload)
        self.arrivals.append(("answer", message["id"]) if "id" in message
                             else (message["channel"], message.get("seq")))  # fmt: skip
        super()._received(payload)


def limit(side: str, price: str, qty: str, **fields) -> dict:
    return dict(symbol="BTC-USDT", side=side, type="limit", price=price, qty=qty, **fields)


# -- logon --


def test_logon_with_either_key_type_and_refusals_with_their_codes(server):
    async def scenario():
        for key_type in ("ed25519", "hmac-sha256"):
            client = await connect(server, 2, key_type)
            assert client.logon["account"] == 2
            assert set(client.logon["permissions"]) == {"read", "trade"}
            client.close()
        anonymous = await connect(server)
        with pytest.raises(FlowgateError) as refused:
            await anonymous.place(**limit("buy", "50000", "0.01"))
        assert refused.value.code == "UNAUTHENTICATED"
        creds = credentials(server, 2)
        params = ws_logon_params(creds)
        bad = dict(params, sig=base64.b64encode(b"\0" * 64).decode())
        with pytest.raises(FlowgateError) as refused:
            await anonymous.request("session.logon", bad)
        assert refused.value.code == "UNAUTHENTICATED"
        assert (await anonymous.request("session.logon", params))["account"] == 2
        replaying = await connect(server)
        with pytest.raises(FlowgateError) as refused:
            await replaying.request("session.logon", params)
        assert refused.value.code == "REPLAYED"
        skewed = ws_logon_params(creds, ts=time.time_ns() // 1_000_000 - 60_000)
        with pytest.raises(FlowgateError) as refused:
            await replaying.request("session.logon", skewed)
        assert refused.value.code == "TIMESTAMP_OUT_OF_WINDOW"
        assert refused.value.details["client_ts_ms"] == skewed["ts"]
        assert abs(refused.value.details["server_time_ms"] - skewed["ts"] - 60_000) < 5_000
        with pytest.raises(FlowgateError) as refused:
            await anonymous.request("session.logon", ws_logon_params(creds))
        assert refused.value.code == "INVALID_REQUEST"  # logged on already

    run(scenario())


# -- order entry --


@PLACEMENTS
def test_orders_between_accounts_fill_and_settle(start, placement):
    server = start(*placement)

    async def scenario():
        maker, taker = await connect(server, 2), await connect(server, 3, msgpack=True)
        rested = await maker.place(**limit("sell", "50000.5", "0.0100", client_order_id="m-1"))
        order = rested["order"]
        assert (order["status"], order["leaves_qty"], order["price"]) == ("new", "0.01", "50000.5")
        assert order["client_order_id"] == "m-1" and rested["fills"] == []
        times = rested["timestamps"]
        assert times["gateway_in_ns"] <= times["engine_in_ns"] <= times["engine_out_ns"]
        assert times["engine_out_ns"] <= times["gateway_out_ns"]

        took = await taker.place(**limit("buy", "50001", "0.004"))
        assert took["order"]["status"] == "filled"
        (fill,) = took["fills"]
        assert (fill["price"], fill["qty"], fill["liquidity"]) == ("50000.5", "0.004", "taker")
        assert fill["fee"] == "0.100001" and fill["fee_asset"] == "USDT"  # 5 bps of 200.002

        amended = await maker.amend(client_order_id="m-1", qty="0.008")
        assert amended["order"]["leaves_qty"] == "0.004" and amended["priority_kept"] is True
        moved = await maker.amend(client_order_id="m-1", qty="0.009")  # more: behind the rest
        assert moved["order"]["leaves_qty"] == "0.005" and moved["priority_kept"] is False
        canceled = await maker.cancel(order_id=order["order_id"])
        assert (canceled["order"]["status"], canceled["order"]["cancel_reason"]) == (
            "canceled", "user")  # fmt: skip

        balances = {b["asset"]: b for b in (await taker.request("account.balances"))["balances"]}
        assert balances["BTC"]["total"] == "100.004"
        assert balances["USDT"]["total"] == "9999799.897999"  # 10M - 200.002 - 0.100001 fee
        (position,) = (await taker.request("account.positions"))["positions"]
        assert (position["symbol"], position["net_qty"], position["avg_entry_price"]) == (
            "BTC-USDT", "0.004", "50000.5")  # fmt: skip

        batch = await maker.request("order.batch", {"orders": [
            limit("sell", "50010", "0.001"), limit("sell", "50010.001", "0.001"),
            limit("sell", "50020", "0.002", client_order_id="m-2"),
            dict(limit("buy", "1", "0.001"), symbol="NOPE-USDT"),
        ]})  # fmt: skip
        codes = [r.get("error", {}).get("code") for r in batch["results"]]
        assert codes == [None, "INVALID_PRICE", None, "UNKNOWN_INSTRUMENT"]
        open_orders = (await maker.request("orders.open", {"symbol": "BTC-USDT"}))["orders"]
        assert sorted(o["price"] for o in open_orders) == ["50010", "50020"]
        status = await maker.request("order.status", {"client_order_id": "m-2"})
        assert status["order"]["status"] == "new"
        assert (await maker.request("order.cancel_all", {"side": "sell"}))["canceled"] == 2
        assert (await maker.request("orders.open"))["orders"] == []
        closed = await maker.request("order.status", {"order_id": order["order_id"]})
        assert closed["order"]["status"] == "canceled"

    run(scenario())
    assert server.stop() == 0


@PLACEMENTS
def test_after_a_restart_the_book_open_orders_and_closed_orders_are_as_they_were(start, placement):
    server = start(*placement)

    async def before():
        client = await connect(server, 2)
        await client.subscribe(["book.BTC-USDT"])
        for i in range(6):
            await client.place(**limit("buy", f"{49000 + i}", "0.01", client_order_id=f"r{i}"))
        closed = await client.cancel(client_order_id="r0")
        opened = (await client.request("orders.open"))["orders"]
        return client.books["BTC-USDT"].bids, closed["order"]["order_id"], opened

    bids, closed_id, opened = run(before())
    assert server.stop() == 0
    again = ServerProcess(server.data_dir, *placement)

    async def after():
        client = await connect(again, 2)
        await client.subscribe(["book.BTC-USDT"])
        assert len(opened) == 5
        # every field, the time of each order's last change included
        assert (await client.request("orders.open"))["orders"] == opened
        closed = await client.request("order.status", {"order_id": closed_id})
        assert closed["order"]["status"] == "canceled"  # from the history
        by_coid = await client.request("order.status", {"client_order_id": "r0"})
        assert by_coid["order"]["order_id"] == str(closed_id)
        await client.request("ping")
        assert client.books["BTC-USDT"].bids == bids

    try:
        run(after())
    finally:
        assert again.stop() == 0


def test_a_reconnect_after_a_restart_replays_the_new_runs_private_updates(start):
    server = start()

    async def scenario():
        client = await connect(server, 2)
        await client.subscribe(["orders", "balances"])
        await client.place(**limit("buy", "49000", "0.01"))
        await client.place(**limit("buy", "49001", "0.01"))
        await client.request("ping")
        assert client.seqs["private"] == 4  # each placement: its order, then its balance
        assert server.stop() == 0
        again = ServerProcess(server.data_dir)
        try:
            other = await connect(again, 2)
            await other.place(**limit("buy", "48000", "0.01", client_order_id="while-away"))
            while not client.pushes.empty():
                client.pushes.get_nowait()
            client.url = again.ws_url
            await client.reconnect()
            await client.request("ping")
            replayed = []
            while not client.pushes.empty():
                replayed.append(client.pushes.get_nowait())
            # the new run numbers from 1: both updates of the order placed while away
            assert [(p["channel"], p["seq"]) for p in replayed] == [("orders", 1), ("balances", 2)]
            assert replayed[0]["data"]["client_order_id"] == "while-away"
        finally:
            for c in OPEN:
                await c.aclose()
            OPEN.clear()
            assert again.stop() == 0

    run(scenario())


def test_the_sdk_fails_fast_on_a_dropped_connection_and_reconnects_after_a_failed_try(start):
    server = start()

    async def scenario():
        client = await connect(server, 2)
        await client.subscribe(["orders"])
        waiting = asyncio.ensure_future(client.next_push(timeout=60))
        await asyncio.sleep(0.1)
        server.kill()
        with pytest.raises(ConnectionError):  # woken by the drop, not its timeout
            await waiting
        with pytest.raises(ConnectionError):  # not a wait for an answer that cannot come
            await client.place(**limit("buy", "49000", "0.01"), timeout=60)
        with pytest.raises(OSError):
            await client.reconnect()  # nobody listening
        again = ServerProcess(server.data_dir)
        try:
            client.url = again.ws_url
            await client.reconnect()  # waited on the failed try's connection before
            placed = await client.place(**limit("buy", "49000", "0.01"))
            push = await client.next_push()
            assert push["data"]["order_id"] == placed["order"]["order_id"]
        finally:
            await client.aclose()
            assert again.stop() == 0

    run(scenario())


def test_a_reconnect_too_late_to_replay_tells_the_caller_and_streams_from_now_on(start):
    server = start(sections={"limits": {"order_rate": 10**6, "order_burst": 10**6}})

    async def scenario():
        client = await connect(server, 4)
        await client.subscribe(["orders", "balances"])
        await client.aclose()
        other = await connect(server, 4)
        orders = [limit("buy", f"{49000 + i}", "0.0001") for i in range(20)]
        for _ in range(200):  # 20 orders placed and canceled: over 60 updates
            await other.request("order.batch", {"orders": orders})
            await other.request("order.cancel_all", {})
        seen = client.seqs["private"]
        with pytest.raises(ReplayUnavailable) as lost:
            await client.reconnect()
        assert lost.value.code == "REPLAY_UNAVAILABLE"
        assert lost.value.details["oldest_seq"] > seen + 1  # updates were lost between
        placed = await client.place(**limit("buy", "49000", "0.0001"))
        push = await client.next_push()
        while push["channel"] != "orders":
            push = await client.next_push()
        assert push["data"]["order_id"] == placed["order"]["order_id"]

    run(scenario())


def test_a_repeated_placement_is_answered_once_and_a_changed_one_refused(server):
    async def scenario():
        client = await connect(server, 2)
        first = await client.place(**limit("buy", "49000", "0.01", client_order_id="retry-1"))
        again = await client.place(**limit("buy", "49000", "0.01", client_order_id="retry-1"))
        assert again["retry"] is True
        assert again["order"]["order_id"] == first["order"]["order_id"]
        with pytest.raises(FlowgateError) as refused:
            await client.place(**limit("buy", "49001", "0.01", client_order_id="retry-1"))
        assert refused.value.code == "DUPLICATE_CLIENT_ORDER_ID"
        assert "timestamps" in refused.value.details
        assert len((await client.request("orders.open"))["orders"]) == 1

    run(scenario())


def test_a_repeated_placement_of_a_canceled_order_says_why_it_was_canceled(server):
    async def scenario():
        client = await connect(server, 2)
        params = limit("buy", "49000", "0.01", client_order_id="retry-canceled", tif="ioc")
        first = await client.place(**params)  # nothing to take: the rest is canceled
        assert first["order"]["cancel_reason"] == "unfilled"
        again = await client.place(**params)
        assert again["retry"] is True
        assert again["order"]["status"] == "canceled"
        assert again["order"]["cancel_reason"] == "unfilled"
        # the order as it is now: nothing left to fill, as of its last change
        assert again["order"] == first["order"]

    run(scenario())


def test_a_cancel_is_answered_about_its_own_order_when_a_timer_comes_due_first(start):
    """An expiry due as a command comes in runs first, in that command: the
    answer must still be about the order the command named, never the expired
    order (another account's here)."""
    server = start("--engine-process")
    engine = server.child_pid()

    async def scenario():
        other, client = await connect(server, 2), await connect(server, 3)
        soon = time.time_ns() // 1_000_000 + 300
        expiring = await other.place(**limit("buy", "49000", "0.01", tif="gtd", expire_ts=soon))
        mine = (await client.place(**limit("sell", "51000", "0.01")))["order"]
        # the engine sleeps through the expiry; woken, it takes the waiting cancel
        # before it looks at its timers
        os.kill(engine, signal.SIGSTOP)
        try:
            await asyncio.sleep(0.5)
            cancel = asyncio.ensure_future(client.cancel(order_id=mine["order_id"]))
            await asyncio.sleep(0.1)
        finally:
            os.kill(engine, signal.SIGCONT)
        answer = (await cancel)["order"]
        assert (answer["order_id"], answer["status"]) == (mine["order_id"], "canceled")
        ended = await other.request("order.status", {"order_id": expiring["order"]["order_id"]})
        assert ended["order"]["status"] == "expired"

    run(scenario())


def test_a_placement_the_engine_refuses_reaches_the_accounts_orders_stream_with_its_code(server):
    async def scenario():
        watcher = await connect(server, 2)
        await watcher.subscribe(["orders"])
        seller, buyer = await connect(server, 3), await connect(server, 2)
        await seller.place(**limit("sell", "50100", "0.01"))
        with pytest.raises(FlowgateError) as refused:
            await buyer.place(**limit("buy", "50100", "0.01", post_only=True,
                                      client_order_id="would-take"))  # fmt: skip
        assert refused.value.code == "POST_ONLY_WOULD_TAKE"
        push = (await watcher.next_push())["data"]
        assert (push["status"], push["reject_code"]) == ("rejected", "POST_ONLY_WOULD_TAKE")
        assert (push["order_id"], push["client_order_id"]) == ("0", "would-take")
        assert "cancel_reason" not in push
        # a duplicate's push would name the live order by its client order id: none
        await buyer.place(**limit("buy", "49000", "0.01", client_order_id="live"))
        assert (await watcher.next_push())["data"]["client_order_id"] == "live"
        with pytest.raises(FlowgateError):
            await buyer.place(**limit("buy", "49001", "0.01", client_order_id="live"))
        await buyer.request("order.cancel_all", {})
        assert (await watcher.next_push())["data"]["status"] == "canceled"  # next: the cancel
        await seller.request("order.cancel_all", {})

    run(scenario())


def test_bad_values_get_stable_codes_and_reach_no_engine(server):
    async def scenario():
        client = await connect(server, 2)
        cases = [
            (limit("buy", "50000", "-0.01"), "INVALID_QUANTITY"),
            (limit("buy", "50000", "0.00001"), "INVALID_QUANTITY"),  # finer than the lot
            (limit("buy", "50000", "1e-2"), "INVALID_QUANTITY"),
            (limit("buy", "50000.001", "0.01"), "INVALID_PRICE"),
            (limit("buy", " 50000", "0.01"), "INVALID_PRICE"),
            (dict(limit("buy", "50000", "0.01"), symbol="DOGE-USDT"), "UNKNOWN_INSTRUMENT"),
            (dict(limit("buy", "50000", "0.01"), qty=1), "INVALID_PARAMS"),  # not a string
            (dict(limit("buy", "50000", "0.01"), side="long"), "INVALID_PARAMS"),
            (dict(limit("buy", "50000", "0.01"), colour="red"), "INVALID_PARAMS"),
            (dict(symbol="BTC-USDT", side="buy", type="limit", qty="0.01"), "INVALID_PRICE"),
            (limit("buy", "50000", "0.01", client_order_id="bad id!"), "INVALID_CLIENT_ORDER_ID"),
            (limit("buy", "50000", "1000"), "QUANTITY_ABOVE_MAX"),
            (limit("buy", "90000", "0.01"), "PRICE_OUT_OF_BAND"),
        ]
        for params, code in cases:
            with pytest.raises(FlowgateError) as refused:
                await client.place(**params)
            assert refused.value.code == code, params
            times = refused.value.details["timestamps"]  # refused at the gateway or by the core
            assert times["gateway_in_ns"] <= times["gateway_out_ns"], params
        for method, params, code in [
            ("order.cancel", {"order_id": "12345"}, "UNKNOWN_ORDER"),
            ("order.cancel", {}, "INVALID_PARAMS"),
            ("order.amend", {"order_id": "12345", "qty": "0.01"}, "UNKNOWN_ORDER"),
            ("order.batch", {"orders": []}, "INVALID_PARAMS"),
            ("session.cancel_all_after", {"timeout_ms": -5}, "INVALID_TIMEOUT"),
            ("no.such.method", {}, "UNKNOWN_METHOD"),
            ("subscribe", {"channels": ["book.NOPE"]}, "INVALID_CHANNEL"),
        ]:
            with pytest.raises(FlowgateError) as refused:
                await client.request(method, params)
            assert refused.value.code == code, (method, params)
        assert (await client.request("orders.open"))["orders"] == []
        # in a batch each order stands alone, whatever is wrong with another
        for msgpack in (False, True):
            batcher = await connect(server, 3, msgpack=msgpack)
            answer = await batcher.request(
                "order.batch",
                {
                    "orders": [
                        dict(limit("buy", "49000", "0.01"), side="long"),
                        limit("buy", "49000", "0.01"),
                        "not an order",
                        limit("buy", "49000", "0.01", client_order_id="bad id!"),
                    ]
                },
            )
            results = answer["results"]
            assert [r.get("error", {}).get("code") for r in results] == [
                "INVALID_PARAMS",
                None,
                "INVALID_PARAMS",
                "INVALID_CLIENT_ORDER_ID",
            ]
            assert results[1]["order"]["status"] == "new"
        for _ in range(2):  # 2 x 99 x 49000 of the 10M USDT held
            await client.place(**limit("buy", "49000", "99"))
        with pytest.raises(FlowgateError) as refused:
            await client.place(**limit("buy", "49000", "99"))
        assert refused.value.code == "INSUFFICIENT_BALANCE"

    run(scenario())


def test_malformed_and_fuzzed_frames_get_errors_and_the_session_survives(server):
    async def scenario():
        client = await connect(server, 2)
        answers: list = []
        original = client._received

        def keep(payload):
            message = json.loads(payload)
            if "error" in message:
                answers.append(message["error"]["code"])
            original(payload)

        client._received = keep
        rng = random.Random(7)
        frames = [b"", b"{", b"[]", b"null", b'"x"', b'{"id":1}', b'{"method":5}',
                  b'{"id":1,"method":"order.place","params":[1,2]}', "ü".encode(), b"\xff\xfe",
                  json.dumps({"id": 1, "method": "x" * 5000}).encode(),
                  b'{"id":3,"method":"ping","params":' + b"[" * 50_000]  # fmt: skip
        frames += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
                   for _ in range(200)]  # fmt: skip
        for frame in frames:
            client.send_raw(frame)
        client.send_raw(b"x" * (70 * 1024))  # over the message size limit
        assert (await client.request("ping"))["time_ms"] > 0  # answered after all of those
        assert len(answers) == len(frames) + 1  # every frame got an error, in order
        assert set(answers) == {
            "INVALID_REQUEST",
            "INVALID_PARAMS",
            "MESSAGE_TOO_LARGE",
            "UNKNOWN_METHOD",
        }
        assert "MESSAGE_TOO_LARGE" in answers
        placed = await client.place(**limit("buy", "49000", "0.01"))
        assert placed["order"]["status"] == "new"

        # a message that is no request still gets its id back, if it has one
        for frame in (b'{"id":77,"params":{}}', b'{"id":"s","method":5}', b'{"id":9,"method":[]}'):
            client.send_raw(frame)
        with pytest.raises(FlowgateError) as refused:  # a method without params takes none
            await client.request("account.balances", {"symbol": "BTC-USDT"})
        assert refused.value.code == "INVALID_PARAMS" and "symbol" in refused.value.message
        assert answers[-4:] == ["INVALID_REQUEST"] * 3 + ["INVALID_PARAMS"]
        packed = await connect(server, 3, msgpack=True)  # no params in MessagePack: an empty map
        for method in ("ping", "orders.open", "account.positions"):
            assert await packed.request(method) is not None

        big = await connect(server, 3)
        big.send_raw(b"x" * (2 << 20))  # over the frame limit: the connection is closed
        await asyncio.wait_for(big.closed.wait(), 10)
        assert (await client.request("ping"))["time_ms"] > 0

    run(scenario())


# -- streams --


def test_acks_precede_fills_on_answers_and_private_streams(server):
    async def scenario():
        maker, taker = await connect(server, 2), await connect(server, 3)
        for client in (maker, taker):
            await client.subscribe(["orders", "fills"])
        await maker.place(**limit("sell", "50000", "0.01"))
        await taker.place(**limit("buy", "50000", "0.01"))
        seen = {maker: [], taker: []}
        for client, wanted in ((maker, 3), (taker, 3)):
            while len(seen[client]) < wanted:
                push = await client.next_push()
                seen[client].append((push["channel"], push["data"].get("status"), push["seq"]))
        # the maker: accepted, then the fill's order update and the fill
        assert [s[:2] for s in seen[maker]] == [("orders", "new"), ("orders", "filled"),
                                                ("fills", None)]  # fmt: skip
        assert [s[:2] for s in seen[taker]] == [("orders", "new"), ("orders", "filled"),
                                                ("fills", None)]  # fmt: skip
        for pushes in seen.values():
            seqs = [s[2] for s in pushes]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

        # a batch: its answer comes after its last order, and before any push of its orders
        batcher = Recording(server.ws_url, credentials(server, 4))
        OPEN.append(batcher)
        await batcher.open()
        await batcher.subscribe(["orders", "fills"])
        await maker.place(**limit("sell", "50000", "0.01"))
        batcher.arrivals.clear()
        answer = await batcher.request("order.batch", {"orders": [
            limit("buy", "50000", "0.004"), limit("buy", "49000", "0.001")]})  # fmt: skip
        assert [r["order"]["status"] for r in answer["results"]] == ["filled", "new"]
        await batcher.request("ping")
        kinds = [kind for kind, _ in batcher.arrivals]
        assert kinds[0] == "answer" and kinds.count("orders") == 3 and "fills" in kinds

    run(scenario())


def test_an_amend_sent_right_behind_its_placement_amends_it(server):
    async def scenario():
        client = await connect(server, 2)
        placed, amended = await asyncio.gather(  # both sent before either is answered
            client.place(**limit("buy", "49000", "0.02", client_order_id="quick")),
            client.amend(client_order_id="quick", qty="0.01"))  # fmt: skip
        assert placed["order"]["qty"] == "0.02"
        assert (amended["order"]["order_id"], amended["order"]["qty"]) == (
            placed["order"]["order_id"], "0.01")  # fmt: skip

    run(scenario())


def test_an_answer_is_about_the_order_placed_not_one_self_trade_prevention_canceled(server):
    async def scenario():
        client = await connect(server, 2)
        resting = await client.place(**limit("sell", "50000", "0.01", client_order_id="ask"))
        placed = await client.place(**limit("buy", "50000", "0.02", client_order_id="bid",
                                            stp="cancel_oldest"))  # fmt: skip
        assert placed["order"]["client_order_id"] == "bid"
        assert placed["order"]["status"] == "new" and placed["fills"] == []
        gone = await client.request("order.status", {"client_order_id": "ask"})
        assert gone["order"]["order_id"] == resting["order"]["order_id"]
        assert gone["order"]["status"] == "canceled"

    run(scenario())


def test_book_stream_rebuilds_the_engines_book_with_matching_checksums(start):
    server = start()

    async def scenario():
        watcher = await connect(server)
        await watcher.subscribe(["book.BTC-USDT", "trades.BTC-USDT", "bbo.BTC-USDT"])
        traders = [await connect(server, account) for account in (2, 3, 4)]
        rng = random.Random(3)
        live: list[tuple[WsClient, str]] = []
        for _ in range(300):
            trader = rng.choice(traders)
            if live and rng.random() < 0.3:
                owner, order_id = live.pop(rng.randrange(len(live)))
                try:
                    await owner.cancel(order_id=order_id)
                except FlowgateError as e:
                    assert e.code == "UNKNOWN_ORDER"  # filled meanwhile
                continue
            side = rng.choice(["buy", "sell"])
            price = f"{50000 + rng.randint(-20, 20) * 0.5:.1f}"
            placed = await trader.place(**limit(side, price, f"0.{rng.randint(1, 30):04d}"))
            if placed["order"]["status"] in ("new", "partially_filled"):
                live.append((trader, placed["order"]["order_id"]))
        await watcher.request("ping")
        fresh = await connect(server)
        await fresh.subscribe(["book.BTC-USDT"])
        await fresh.request("ping")
        assert watcher.resyncs == 0  # every delta in sequence, every checksum matched
        book = watcher.books["BTC-USDT"]
        assert (book.bids, book.asks) == (fresh.books["BTC-USDT"].bids,
                                          fresh.books["BTC-USDT"].asks)  # fmt: skip
        trades = []
        while not watcher.pushes.empty():
            push = watcher.pushes.get_nowait()
            if push["channel"] == "trades.BTC-USDT":
                trades.append(push["seq"])
        assert trades == list(range(1, len(trades) + 1)) and trades
        return book

    book = run(scenario())
    assert server.stop() == 0
    engine, _ = recover(venue_config.demo(), server.data_dir)
    spec = engine.instrument("BTC-USDT")
    for side, code in (("bids", 1), ("asks", 2)):
        want = [
            (spec.ticks_to_price(p), spec.lots_to_qty(q)) for p, q, _ in engine.core.book(0, code)
        ]
        assert book.levels(side) == want


def test_private_updates_missed_while_away_are_replayed_in_sequence(server):
    async def scenario():
        maker = await connect(server, 2)
        await maker.subscribe(["orders", "fills", "balances", "positions"])
        await maker.place(**limit("sell", "50000", "0.01"))
        seen = [(await maker.next_push())["seq"] for _ in range(2)]
        maker.close()
        await maker.closed.wait()
        taker = await connect(server, 3)
        await taker.place(**limit("buy", "50000", "0.004"))  # fills the maker while away
        await taker.place(**limit("buy", "50000", "0.006"))
        await maker.reconnect()
        replayed = []
        while True:
            try:
                push = await maker.next_push(timeout=1.0)
            except TimeoutError:
                break
            replayed.append(push)
        seqs = [p["seq"] for p in replayed if p["seq"] > seen[-1]]
        assert seqs == list(range(seen[-1] + 1, seen[-1] + 1 + len(seqs)))
        statuses = [p["data"]["status"] for p in replayed if p["channel"] == "orders"]
        assert statuses[-2:] == ["partially_filled", "filled"]
        assert sum(p["channel"] == "fills" for p in replayed) == 2
        # the last balance and position updates are the account's state now
        latest = {p["data"].get("asset") or p["data"].get("symbol"): p["data"] for p in replayed
                  if p["channel"] in ("balances", "positions")}  # fmt: skip
        for balance in (await maker.request("account.balances"))["balances"]:
            if balance["asset"] in latest:
                assert latest[balance["asset"]] == balance
        (position,) = (await maker.request("account.positions"))["positions"]
        assert latest["BTC-USDT"] == position and position["net_qty"] == "-0.01"
        with pytest.raises(FlowgateError) as refused:
            await maker.request("subscribe", {"channels": ["orders"], "from_seq": 10**6})
        assert refused.value.code == "REPLAY_UNAVAILABLE"
        assert refused.value.details["last_seq"] == seqs[-1]

    run(scenario())


# -- sessions --


def test_cancel_on_disconnect_and_the_dead_mans_switch(server):
    async def scenario():
        watcher = await connect(server, 2)
        await watcher.subscribe(["orders"])
        leaving = await connect(server, 2)
        assert (await leaving.request("session.cancel_on_disconnect", {"enabled": True}))[
            "enabled"]  # fmt: skip
        for price in ("49000", "49001"):
            await leaving.place(**limit("buy", price, "0.01"))
        leaving.transport.underlying_transport.abort()  # abrupt: no close handshake
        canceled = []
        while len(canceled) < 2:
            push = await watcher.next_push()
            if push["data"]["status"] == "canceled":
                canceled.append(push["data"]["cancel_reason"])
        assert canceled == ["mass", "mass"]

        armed = await watcher.request("session.cancel_all_after", {"timeout_ms": 300})
        assert armed["deadline_ns"] > time.time_ns()
        await watcher.place(**limit("buy", "49002", "0.01"))
        started = time.monotonic()
        while True:
            push = await watcher.next_push()
            if push["data"]["status"] == "canceled":
                break
        assert push["data"]["cancel_reason"] == "cancel_all_after"
        assert time.monotonic() - started < 5
        disarmed = await watcher.request("session.cancel_all_after", {"timeout_ms": 0})
        assert disarmed["deadline_ns"] == 0

    run(scenario())


def test_orders_over_budget_are_refused_but_cancels_still_pass(server):
    async def scenario():
        client = await connect(server, 2)
        placed, refused = [], []
        orders = [client.place(**limit("buy", "46000", "0.001")) for _ in range(230)]
        for outcome in await asyncio.gather(*orders, return_exceptions=True):
            (refused if isinstance(outcome, FlowgateError) else placed).append(outcome)
        assert {e.code for e in refused} == {"RATE_LIMITED"}
        assert all(e.details["retry_after_ms"] > 0 for e in refused)
        assert 200 <= len(placed) < 230  # the burst, and what refilled meanwhile
        canceled = await client.request("order.cancel_all", {})
        assert canceled["canceled"] == len(placed)

    run(scenario())


def test_requests_other_than_orders_and_cancels_spend_the_keys_budget(start):
    venue = start(sections={"limits": {"key_rate": 1, "key_burst": 10}})  # no refill here

    async def scenario():
        client = await connect(venue, 2)
        requests = [("unsubscribe", {"channels": ["trades.BTC-USDT"]}),
                    ("session.cancel_on_disconnect", {"enabled": False}),
                    ("session.logon", ws_logon_params(credentials(venue, 2)))]  # fmt: skip
        codes = []
        for method, params in requests * 5:
            try:
                await client.request(method, params)
                codes.append("ok")
            except FlowgateError as e:
                codes.append(e.code)
        assert codes.count("RATE_LIMITED") >= 4  # 15 requests, a burst of 10 (logon took one)
        # cancels and the dead man's switch spend nothing: they pass over the budget
        assert await client.request("session.cancel_all_after", {"timeout_ms": 0})
        assert (await client.request("order.cancel_all", {}))["canceled"] == 0

    run(scenario())


def test_a_batch_over_the_budget_places_what_the_budget_holds_in_order(start):
    venue = start(sections={"limits": {"order_rate": 1, "order_burst": 20}})  # no refill here

    async def scenario():
        client = await connect(venue, 2)

        async def batch(n: int) -> list:
            orders = [limit("buy", "46000", "0.001") for _ in range(n)]
            answer = await client.request("order.batch", {"orders": orders})
            refused = [r["error"] for r in answer["results"] if "error" in r]
            assert all(e["retry_after_ms"] > 0 for e in refused)  # each says when to retry
            return [r.get("error", {}).get("code") for r in answer["results"]]

        assert await batch(15) == [None] * 15  # within the budget: spent at once
        assert await batch(10) == [None] * 5 + ["RATE_LIMITED"] * 5  # order by order
        assert await batch(3) == ["RATE_LIMITED"] * 3
        assert (await client.request("order.cancel_all", {}))["canceled"] == 20

    run(scenario())
    assert venue.stop() == 0


def test_a_batch_the_full_command_ring_cuts_short_is_answered_overloaded_for_the_rest(start):
    venue = start("--command-ring-slots", "4")

    async def scenario():
        client = await connect(venue, 2)

        async def batch(n: int) -> list:
            orders = [limit("buy", "46000", "0.001", client_order_id=f"b{n}-{i}")
                      for i in range(n)]  # fmt: skip
            answer = await client.request("order.batch", {"orders": orders})
            return [r["order"]["client_order_id"] if "order" in r else r["error"]["code"]
                    for r in answer["results"]]  # fmt: skip

        # the ring takes the first four, in order; nothing of the rest was entered
        assert await batch(10) == [f"b10-{i}" for i in range(4)] + ["OVERLOADED"] * 6
        assert await batch(3) == ["b3-0", "b3-1", "b3-2"]  # the next request starts afresh
        assert (await client.request("order.cancel_all", {}))["canceled"] == 7

    run(scenario())
    assert venue.stop() == 0


def test_a_revoked_key_closes_its_live_session(server):
    async def scenario():
        client = await connect(server, 4)
        await client.subscribe(["orders"])
        KeyStore(server.data_dir).revoke(client.logon["key"])
        push = await client.next_push(timeout=5)
        assert push["channel"] == "session" and push["data"]["code"] == "UNAUTHENTICATED"
        await asyncio.wait_for(client.closed.wait(), 5)
        with pytest.raises(FlowgateError) as refused:
            await connect(server, 4)
        assert refused.value.code == "UNAUTHENTICATED"

    run(scenario())


def test_connections_per_address_are_capped(server):
    async def scenario():
        clients = [await connect(server) for _ in range(50)]
        over = await connect(server)
        push = await over.next_push(timeout=5)
        assert push["data"]["code"] == "TOO_MANY_CONNECTIONS"
        await asyncio.wait_for(over.closed.wait(), 5)
        clients.pop().close()
        await asyncio.sleep(0.2)
        again = await connect(server)
        assert (await again.request("ping"))["time_ms"] > 0

    run(scenario())


# -- slow consumers --


def _handshake(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills quickly
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(b"0123456789abcdef").decode()
    sock.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response
    return sock


def _send_text(sock: socket.socket, text: bytes):
    mask = b"\x01\x02\x03\x04"
    header = bytes([0x81, 0x80 | len(text)]) if len(text) < 126 else (
        bytes([0x81, 0xFE]) + struct.pack(">H", len(text)))  # fmt: skip
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (masked with a zero key, which leaves the payload as it is)."""
    size = len(payload)
    length = (bytes([0x80 | size]) if size < 126 else bytes([0xFE]) + struct.pack(">H", size)
              if size < 1 << 16 else bytes([0xFF]) + struct.pack(">Q", size))  # fmt: skip
    return bytes([(0x80 if fin else 0) | opcode]) + length + bytes(4) + payload


def test_a_fragmented_message_over_the_limit_gets_one_error_and_the_session_goes_on(server):
    sock = _handshake(server.ws_port)
    sock.sendall(_frame(1, b'{"id":1,' + b" " * 40_000, fin=False)
                 + _frame(0, b" " * 40_000, fin=False)  # over 64 KiB from here on
                 + _frame(0, b" " * 40_000, fin=False) + _frame(0, b'"method":"ping"}')
                 + _frame(1, b'{"id":2,"method":"ping"}'))  # fmt: skip
    answers = _frames(sock, bytearray())
    first, second = next(answers), next(answers)
    assert first["error"]["code"] == "MESSAGE_TOO_LARGE"
    assert second["id"] == 2 and "result" in second  # nothing between them
    sock.close()


def _frames(sock: socket.socket, buffer: bytearray):
    while True:
        while len(buffer) >= 2:
            size, offset = buffer[1] & 0x7F, 2
            if len(buffer) < {126: 4, 127: 10}.get(size, 2):
                break
            if size == 126:
                size, offset = struct.unpack(">H", buffer[2:4])[0], 4
            elif size == 127:
                size, offset = struct.unpack(">Q", buffer[2:10])[0], 10
            if len(buffer) < offset + size:
                break
            opcode, payload = buffer[0] & 0x0F, bytes(buffer[offset : offset + size])
            del buffer[: offset + size]
            if opcode == 1:  # text; the server's pings need no answer here
                yield json.loads(payload)
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        buffer += chunk


def test_a_consumer_that_stops_reading_gets_a_gap_notice_and_holds_no_one_back(start):
    limits = {"order_rate": 10**5, "order_burst": 10**5, "key_rate": 10**4, "key_burst": 10**4}
    server = start(sections={"limits": limits})
    slow = _handshake(server.ws_port)
    _send_text(slow, b'{"id":1,"method":"subscribe","params":{"channels":["book.BTC-USDT"]}}')

    async def flood():
        a, b = await connect(server, 2), await connect(server, 3)
        answered = 0
        deadline = time.monotonic() + 40
        for round_ in range(2000):
            if time.monotonic() > deadline:
                break
            prices = [f"{45000 + (round_ * 20 + i) % 4000}" for i in range(20)]
            batch = [limit("buy", p, "0.001") for p in prices]
            result = await a.request("order.batch", {"orders": batch})
            answered += len(result["results"])
            await a.request("order.cancel_all", {})
            await b.request("ping")
        return answered, round_

    answered, rounds = run(flood(), timeout=90)
    slow.settimeout(10)
    assert answered == 20 * (rounds + 1)  # the fast clients were answered throughout
    seen_gap = False
    for message in _frames(slow, bytearray()):
        if message.get("channel") != "book.BTC-USDT":
            continue
        if message["data"]["type"] == "gap":
            seen_gap = True
        elif seen_gap and message["data"]["type"] == "snapshot":
            assert message["data"]["bids"] == []  # the book as it is now: all canceled
            break
    assert seen_gap
    slow.close()
    assert server.stop() == 0
