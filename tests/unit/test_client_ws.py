"""The SDK's stream bookkeeping without a server: it rebuilds books the way
the server's checksum sees them and asks for a fresh snapshot on a gap or a
mismatch."""

import json

from flowgate_client.ws import Book, WsClient
from gateways.wire import book_checksum


def push(client: WsClient, message: dict):
    client._received(json.dumps(message).encode())


def test_the_client_checksum_is_the_servers():
    book = Book()
    asks = [["50000.5", "0.1"]] + [[f"{50001 + i}", "2"] for i in range(12)]
    book.apply({"type": "snapshot", "bids": [["49999.5", "1"], ["49999", "0.25"]], "asks": asks})
    assert book.checksum() == book_checksum(book.levels("bids", 10), book.levels("asks", 10))
    book.apply({"type": "delta", "bids": [["49999.5", "0"], ["49998.25", "3"]], "asks": []})
    assert book.levels("bids") == [("49999", "0.25"), ("49998.25", "3")]


def test_a_gap_or_a_bad_checksum_asks_for_a_fresh_snapshot_once():
    client = WsClient("ws://unused")
    sent = []
    client.send_raw = sent.append
    channel = "book.BTC-USDT"
    snapshot = {"type": "snapshot", "bids": [["1", "1"]], "asks": [["2", "1"]]}
    snapshot["checksum"] = book_checksum([("1", "1")], [("2", "1")])
    push(client, {"channel": channel, "seq": 5, "data": snapshot})
    good = {"type": "delta", "bids": [["1", "3"]], "asks": [],
            "checksum": book_checksum([("1", "3")], [("2", "1")])}  # fmt: skip
    push(client, {"channel": channel, "seq": 6, "data": good})
    assert client.resyncs == 0 and client.books["BTC-USDT"].bids == {"1": "3"}

    push(client, {"channel": channel, "seq": 8, "data": good})  # 7 is missing
    assert client.resyncs == 1
    assert json.loads(sent[-1])["params"] == {"channels": [channel]}
    push(client, {"channel": channel, "seq": 9, "data": good})  # ignored until the snapshot
    assert client.resyncs == 1
    push(client, {"channel": channel, "seq": 9, "data": snapshot})
    bad = dict(good, checksum=good["checksum"] + 1)
    push(client, {"channel": channel, "seq": 10, "data": bad})
    assert client.resyncs == 2
