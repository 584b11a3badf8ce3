"""Async WebSocket client of Flowgate (`/v1/ws`, docs/websocket.md).

    client = await WsClient.connect("ws://127.0.0.1:8081/v1/ws", credentials)
    placed = await client.request("order.place", {"symbol": "BTC-USDT", ...})
    await client.subscribe(["book.BTC-USDT", "orders", "fills"])
    push = await client.next_push()

The client keeps what a market maker needs to trust its streams: every book
it subscribes to (`books[symbol]`), rebuilt from the snapshot and deltas and
checked against each delta's checksum; the last sequence of each stream. A
gap, a gap notice or a checksum mismatch makes it ask for a fresh snapshot by
itself. `reconnect()` opens a new connection, logs on again and resubscribes,
replaying the private updates missed meanwhile (`from_seq`).
"""

import asyncio
import zlib

import msgspec
from picows import WSListener, WSMsgType, ws_connect

from flowgate_client.signing import Credentials, ws_logon_params

PRIVATE = ("orders", "fills", "balances", "positions")
CHECKSUM_LEVELS = 10
MAX_FRAME_BYTES = 1 << 30  # an answer holds every fill of its order: a sweep can be megabytes


class FlowgateError(Exception):
    """An error answer: a stable `code`, a `message`, its details, and over
    REST the HTTP `status`."""

    def __init__(self, error: dict, status: int | None = None):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = error.get("message")
        self.details = error
        self.status = status


class ReplayUnavailable(FlowgateError):
    """`reconnect()` (or `subscribe(resume=True)`) could not replay the private
    updates missed: the server no longer keeps them. The channels are
    subscribed again from now on; rebuild the account's state from
    `orders.open`, `account.balances` and `account.positions`."""


class Book:
    """One L2 book as the stream built it: {price string: qty string} per side."""

    def __init__(self):
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = 0
        self.awaiting_snapshot = True

    def apply(self, data: dict):
        if data["type"] == "snapshot":
            self.bids = dict(map(tuple, data["bids"]))
            self.asks = dict(map(tuple, data["asks"]))
            return
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for price, qty in levels:
                if _is_zero(qty):
                    side.pop(price, None)
                else:
                    side[price] = qty

    def levels(self, side: str, depth: int | None = None) -> list[tuple[str, str]]:
        book = self.bids if side == "bids" else self.asks
        prices = sorted(book, key=_decimal_key, reverse=side == "bids")[:depth]
        return [(p, book[p]) for p in prices]

    def checksum(self) -> int:
        bids, asks = self.levels("bids", CHECKSUM_LEVELS), self.levels("asks", CHECKSUM_LEVELS)
        parts = []
        for i in range(CHECKSUM_LEVELS):
            if i < len(bids):
                parts += bids[i]
            if i < len(asks):
                parts += asks[i]
        return zlib.crc32(":".join(parts).encode())


def _is_zero(text: str) -> bool:
    return not text.strip("0.")


def _decimal_key(text: str) -> tuple[int, str]:
    whole, _, fraction = text.partition(".")
    return int(whole), fraction.ljust(18, "0")


class _Listener(WSListener):
    def __init__(self, client: "WsClient"):
        self.client = client

    def on_ws_frame(self, transport, frame):
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.client._received(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            self.client.close_reason = frame.get_close_message()
            transport.disconnect()

    def on_ws_disconnected(self, transport):
        self.client._disconnected()


class WsClient:
    def __init__(self, url: str, credentials: Credentials | None = None, msgpack: bool = False):
        self.url = url
        self.credentials = credentials
        self.msgpack = msgpack
        self.codec = msgspec.msgpack if msgpack else msgspec.json
        self.transport = None
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future] = {}
        self.pushes: asyncio.Queue = asyncio.Queue()
        self.books: dict[str, Book] = {}
        self.seqs: dict[str, int] = {}  # public channel -> last seq; "private" -> account seq
        self.epoch: int | None = None
        self.channels: list[str] = []
        self.resyncs = 0  # fresh snapshots asked for after a gap or a bad checksum
        self.close_reason: bytes | None = None
        self.closed = asyncio.Event()
        self.logon: dict | None = None

    @classmethod
    async def connect(cls, url: str, credentials: Credentials | None = None,
                      msgpack: bool = False) -> "WsClient":  # fmt: skip
        """Open a connection; log on when credentials are given."""
        client = cls(url, credentials, msgpack)
        await client.open()
        return client

    async def open(self):
        url = self.url + ("?encoding=msgpack" if self.msgpack else "")
        self.closed.clear()
        try:
            self.transport, _ = await ws_connect(lambda: _Listener(self), url,
                                                 enable_auto_ping=False,
                                                 max_frame_size=MAX_FRAME_BYTES)  # fmt: skip
        except BaseException:
            self.closed.set()  # no connection to wait for: reconnect() may try again
            raise
        if self.credentials is not None:
            self.logon = await self.request("session.logon", ws_logon_params(self.credentials))

    async def reconnect(self):
        """A new connection after a drop: log on again, resubscribe, and replay
        the private updates missed since the last one received (ReplayUnavailable
        when the server no longer has them)."""
        self.close()
        await self.closed.wait()
        await self.open()
        channels, self.channels = self.channels, []
        if channels:
            await self.subscribe(channels, resume=True)

    def close(self):
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.disconnect()

    async def aclose(self, timeout: float = 5.0):
        """Close and wait until the connection is gone."""
        self.close()
        if self.transport is not None:
            await asyncio.wait_for(self.transport.wait_disconnected(), timeout)

    # -- requests --

    async def request(self, method: str, params: dict | None = None, timeout: float = 10.0):
        """Send one request and return its result; raise FlowgateError on an error."""
        self.next_id += 1
        request_id = self.next_id
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        message = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send_raw(self.codec.encode(message))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(request_id, None)

    def send_raw(self, payload: bytes):
        """Any bytes as one frame (tests of malformed input use it)."""
        if self.transport is None or self.transport.is_disconnected:
            raise ConnectionError("not connected: reconnect() first")
        kind = WSMsgType.BINARY if self.msgpack else WSMsgType.TEXT
        self.transport.send(kind, payload)

    async def place(self, **params) -> dict:
        return await self.request("order.place", params)

    async def cancel(self, **ref) -> dict:
        return await self.request("order.cancel", ref)

    async def amend(self, **params) -> dict:
        return await self.request("order.amend", params)

    async def subscribe(self, channels: list[str], resume: bool = False) -> dict:
        """Subscribe; with resume, private channels replay from the last seq seen."""
        params: dict = {"channels": channels}
        private = any(c in PRIVATE for c in channels)
        if resume and private and "private" in self.seqs:
            # the logon tells a new run of the server (its sequences start
            # afresh): then every update of the new run is missed
            same_run = self.logon is None or self.logon.get("epoch") == self.epoch
            params["from_seq"] = self.seqs["private"] if same_run else 0
        lost = None
        try:
            result = await self.request("subscribe", params)
        except FlowgateError as e:
            if e.code != "REPLAY_UNAVAILABLE":
                raise
            lost = e.details  # too far behind: from now on, and the caller told
            self.seqs.pop("private", None)
            result = await self.request("subscribe", {"channels": channels})
        if private:
            if result.get("epoch") != self.epoch:
                self.seqs.pop("private", None)
            self.epoch = result.get("epoch")
            self.seqs.setdefault("private", result["seq"])
        self.channels += [c for c in channels if c not in self.channels]
        if lost is not None:
            raise ReplayUnavailable(lost)
        return result

    async def next_push(self, timeout: float = 10.0) -> dict:
        """The next push; ConnectionError once the connection has dropped and
        the pushes that came before are taken; TimeoutError after timeout s."""
        if self.pushes.empty() and self.closed.is_set():
            raise ConnectionError("the connection closed")
        getting = asyncio.ensure_future(self.pushes.get())
        closing = asyncio.ensure_future(self.closed.wait())
        try:
            await asyncio.wait((getting, closing), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            closing.cancel()
            getting.cancel()  # (no effect once it has its push)
        if getting.done() and not getting.cancelled():
            return getting.result()
        if self.closed.is_set():
            raise ConnectionError("the connection closed")
        raise TimeoutError(f"no push within {timeout} s")

    # -- incoming --

    def _received(self, payload: bytes):
        message = self.codec.decode(payload)
        if "id" in message and ("result" in message or "error" in message):
            future = self.waiting.get(message["id"])
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(FlowgateError(message["error"]))
                else:
                    future.set_result(message["result"])
            return
        channel = message.get("channel", "")
        if channel in PRIVATE:
            self.seqs["private"] = message["seq"]
        elif channel.startswith("book."):
            self._book_push(channel, message)
        elif "seq" in message:
            self.seqs[channel] = message["seq"]
        self.pushes.put_nowait(message)

    def _book_push(self, channel: str, message: dict):
        data = message["data"]
        book = self.books.setdefault(channel[5:], Book())
        if data["type"] == "gap":
            book.awaiting_snapshot = True  # the server follows it with a fresh snapshot
            return
        if data["type"] == "delta":
            if book.awaiting_snapshot:
                return
            if message["seq"] != book.seq + 1:
                self._resync(channel, book)
                return
        book.apply(data)
        book.seq = message["seq"]
        book.awaiting_snapshot = False
        if book.checksum() != data["checksum"]:
            self._resync(channel, book)

    def _resync(self, channel: str, book: Book):
        """A fresh snapshot: subscribing again to a book sends one."""
        book.awaiting_snapshot = True
        self.resyncs += 1
        self.next_id += 1
        self.send_raw(self.codec.encode({"id": self.next_id, "method": "subscribe",
                                         "params": {"channels": [channel]}}))  # fmt: skip

    def _disconnected(self):
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("the connection closed"))
        self.closed.set()
