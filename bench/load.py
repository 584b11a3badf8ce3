"""Open-loop order flow through the real server on each protocol, and the
transport floors driven the same way; the final state checked after each run.

Each client holds one connection, logged on as an account of its own, and
sends a planned sequence of requests at a fixed rate: post-only placements
resting away from the touch and cancels of earlier ones by client order id,
in the proportions of the mix. Every request has a planned send time and its
round trip runs from that plan to its answer's arrival (`bench.placement`),
so a late send counts. The venue's four timestamps on each answer (gateway
receive, engine in, engine out, gateway send) split the round trip into
stages that add up to it. After the run, the orders the client saw open, the
holds they imply and balances no fill has touched must be what the venue
reports; then the client cancels what it left.

The floors answer every request with a reply of the venue's size (raw TCP:
the record port's sizes; WebSocket: a picows echo of the venue's answer).
"""

import json
import multiprocessing
import os
import random
import subprocess
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

import msgspec
import numpy as np
from hdrh.histogram import HdrHistogram

from bench import rest, ws
from bench.placement import ECHO_SERVER as TCP_ECHO_SERVER
from bench.placement import (
    at,
    echo_complete,
    histogram_of,
    new_histogram,
    send_receive,
    start_echo,
    summary,
    tcp_connect,
)
from engine import config as venue_config
from ext.core import COMMAND_SIZE
from ext.fix import FixReader
from ext.fix import encode as fix_encode
from gateways.fix.session import TIMESTAMP_TAGS
from tests.fix_client import TARGET, FixClient, now_timestamp

# The round trip in five stages, each from one stamp to the next (µs); they add up.
STAGES = {
    "to_gateway": "planned send → gateway receive",
    "gateway_in": "gateway receive → engine in",
    "engine": "engine in → engine out",
    "gateway_out": "engine out → gateway send",
    "to_client": "gateway send → client receive",
}
BACKLOG = 50  # placements a client keeps before it starts cancelling the oldest


class Op(NamedTuple):
    kind: str  # "place" or "cancel"
    ref: str  # the client order id placed, or canceled
    index: int  # the placement's parameters (ws.order_params)


def plan(n: int, mix: dict[str, int], tag: str, seed: int = 1) -> list[Op]:
    """n requests in the mix's proportions; each cancel names the oldest open placement."""
    rng = random.Random(seed)
    cancel_share = mix.get("cancel", 0) / sum(mix.values())
    placed: deque[str] = deque()
    ops = []
    for i in range(n):
        if len(placed) > BACKLOG and rng.random() < cancel_share:
            ops.append(Op("cancel", placed.popleft(), i))
        else:
            placed.append(f"{tag}-{i}")
            ops.append(Op("place", placed[-1], i))
    return ops


class Stamps(msgspec.Struct):
    gateway_in_ns: int
    engine_in_ns: int
    engine_out_ns: int
    gateway_out_ns: int


class _Order(msgspec.Struct):
    status: str


class _Error(msgspec.Struct):
    code: str
    timestamps: Stamps | None = None


class _Answer(msgspec.Struct):
    """A WebSocket answer's `result` or a REST answer's body."""

    order: _Order | None = None
    timestamps: Stamps | None = None


class _WsAnswer(msgspec.Struct):
    id: int | None = None
    result: _Answer | None = None
    error: _Error | None = None


class _RestAnswer(_Answer):
    error: _Error | None = None


class Outcome(NamedTuple):
    status: str  # the order's status, or "error:CODE"
    stamps: tuple | None  # gateway in, engine in, engine out, gateway out (ns)


def _outcome(answer: _Answer | None, error: _Error | None) -> Outcome:
    if error is not None:
        stamps = error.timestamps
        return Outcome(f"error:{error.code}", stamps and tuple(msgspec.structs.astuple(stamps)))
    stamps = answer.timestamps
    return Outcome(answer.order.status if answer.order else "?",
                   stamps and tuple(msgspec.structs.astuple(stamps)))  # fmt: skip


_ws_decoder = msgspec.json.Decoder(_WsAnswer)
_rest_decoder = msgspec.json.Decoder(_RestAnswer)


def ws_outcome(payload: bytes) -> Outcome:
    answer = _ws_decoder.decode(payload)
    return _outcome(answer.result, answer.error)


def rest_outcome(body: bytes) -> Outcome:
    answer = _rest_decoder.decode(body)
    return _outcome(answer, answer.error)


FIX_STATUS = {b"0": "new", b"4": "canceled", b"8": "rejected", b"C": "expired"}


def fix_outcome(message: dict) -> Outcome:
    if message[35] != b"8":
        return Outcome(f"error:{message.get(58, message[35]).decode()}", None)
    stamps = tuple(int(message[tag]) for tag in TIMESTAMP_TAGS) if 7901 in message else None
    return Outcome(FIX_STATUS.get(message.get(39), "?"), stamps)


@dataclass
class Link:
    """One client's connection: its socket, and what its requests need to know."""

    sock: object
    entry: dict | None = None
    session: FixClient | None = None


def ws_requests(ops: list[Op], link: Link, start_ns: int, rate: float) -> list[bytes]:
    out = []
    for k, op in enumerate(ops):
        if op.kind == "place":
            params = {**ws.order_params(op.index), "client_order_id": op.ref}
            message = {"id": k, "method": "order.place", "params": params}
        else:
            message = {"id": k, "method": "order.cancel", "params": {"client_order_id": op.ref}}
        out.append(ws.client_frame(json.dumps(message, separators=(",", ":")).encode()))
    return out


def rest_requests(ops: list[Op], link: Link, start_ns: int, rate: float) -> list[bytes]:
    """Each request signed for its planned send time."""
    from flowgate_client import Credentials

    credentials = Credentials.from_entry(link.entry)
    start_ms = start_ns // 1_000_000
    out = []
    for k, op in enumerate(ops):
        if op.kind == "place":
            params = {**ws.order_params(op.index), "client_order_id": op.ref}
            method, target = "POST", "/v1/orders"
            body = json.dumps(params, separators=(",", ":")).encode()
        else:
            method, target, body = "DELETE", f"/v1/orders?client_order_id={op.ref}", b""
        ts = start_ms + int(k * 1000 / rate)
        out.append(rest.signed_request(credentials, method, target, body, ts, f"{op.ref}{k}"))
    return out


FIX_ANSWERS = (b"8", b"9", b"3")  # ExecutionReport, OrderCancelReject, Reject


def fix_answers_complete():
    """A complete() for one FIX session: its answers (heartbeats skipped); the
    reader keeps what is not a whole message yet."""
    reader = FixReader()

    def complete(buffer: bytes) -> tuple[list[dict], bytes]:
        return [m for m in reader.feed(buffer) if isinstance(m, dict) and m[35] in FIX_ANSWERS], b""

    return complete


def fix_requests(ops: list[Op], link: Link, start_ns: int, rate: float) -> list[bytes]:
    """NewOrderSingle and OrderCancelRequest (by OrigClOrdID), SendingTime to the second."""
    out, second, sending_time = [], None, ""
    sender, first_seq = link.session.sender, link.session.seq
    for k, op in enumerate(ops):
        planned_ms = start_ns // 1_000_000 + int(k * 1000 / rate)
        if planned_ms // 1000 != second:
            second = planned_ms // 1000
            sending_time = now_timestamp(planned_ms - time.time_ns() // 1_000_000)
        if op.kind == "place":
            p = ws.order_params(op.index)
            fields = [(11, op.ref), (55, p["symbol"]), (54, 1 if p["side"] == "buy" else 2),
                      (38, p["qty"]), (40, 2), (44, p["price"]), (59, 1), (18, "6")]  # fmt: skip
            out.append(fix_encode("D", sender, TARGET, first_seq + k, sending_time, fields))
        else:
            out.append(fix_encode("F", sender, TARGET, first_seq + k, sending_time,
                                  [(41, op.ref), (11, f"{op.ref}x")]))  # fmt: skip
    return out


def ws_connect(port: int, entry: dict) -> Link:
    return Link(ws.logged_on(port, entry), entry)


def rest_connect(port: int, entry: dict) -> Link:
    return Link(tcp_connect(port), entry)


def fix_connect(port: int, entry: dict) -> Link:
    from flowgate_client import Credentials

    session = FixClient(port, f"BENCH{entry['account']}", Credentials.from_entry(entry),
                        timeout=30)  # fmt: skip
    session.send("A", [(98, 0), (108, 30), (141, "Y")])
    session.expect("A")
    return Link(session.sock, entry, session)


def fix_close(link: Link, sent: int):
    """A Logout answered before the socket closes, so the next logon of the
    same identity finds no session alive."""
    session = link.session
    session.seq += sent
    session.send("5")
    while (message := session.receive(timeout=10)) is not None and message[35] != b"5":
        pass
    link.sock.close()


def echo_connect(port: int, entry: dict | None) -> Link:
    return Link(tcp_connect(port))


def ws_echo_connect(port: int, entry: dict | None) -> Link:
    return Link(ws.handshake(port))


def tcp_echo_requests(ops: list[Op], link: Link, start_ns: int, rate: float) -> list[bytes]:
    return [bytes(COMMAND_SIZE)] * len(ops)


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    connect: Callable  # (port, credential entry) -> Link
    requests: Callable  # (ops, link, planned start in wall ns, rate) -> encoded requests
    complete: Callable  # () -> complete(buffer) for one connection
    outcome: Callable | None = None  # answer -> Outcome; None: a floor
    key_type: str = "ed25519"
    close: Callable = field(default=lambda link, sent: link.sock.close())
    encode_s: float = 8e-6  # a request's encoding before the run (REST signs each: more)


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol("tcp_echo", "raw TCP echo (floor)", echo_connect, tcp_echo_requests,
                 lambda: echo_complete),
        Protocol("ws_echo", "picows echo (floor)", ws_echo_connect, ws_requests,
                 lambda: ws.split_frames),
        Protocol("ws", "WebSocket", ws_connect, ws_requests, lambda: ws.split_frames,
                 ws_outcome),
        Protocol("rest", "REST (HMAC key)", rest_connect, rest_requests,
                 lambda: rest.http_complete, rest_outcome, key_type="hmac-sha256",
                 encode_s=20e-6),
        Protocol("fix", "FIX 4.4", fix_connect, fix_requests, fix_answers_complete, fix_outcome,
                 close=fix_close),
    )
}  # fmt: skip
FLOORS = ("tcp_echo", "ws_echo")
VENUE = ("ws", "rest", "fix")


# -- the final state --


def expected_open(ops: list[Op], statuses: list[str]) -> dict[str, Op]:
    """The orders the client saw open at the end, by client order id."""
    open_orders = {}
    for op, status in zip(ops, statuses, strict=True):
        if op.kind == "place" and status == "new":
            open_orders[op.ref] = op
        elif op.kind == "cancel" and status == "canceled":
            open_orders.pop(op.ref, None)
    return open_orders


def holds(open_orders: dict[str, Op]) -> dict[str, Decimal]:
    """What those orders lock (docs/core.md): a sell its quantity of the base
    asset, a buy its notional plus the worst-case (taker) fee of the quote."""
    config = venue_config.demo()
    quote_scale = 10 ** next(a.decimals for a in config.assets if a.name == "USDT")
    taker_bps = next(t.taker_bps for t in config.fee_tiers if t.name == "default")
    base = quote = Decimal(0)
    for op in open_orders.values():
        p = ws.order_params(op.index)
        if p["side"] == "sell":
            base += Decimal(p["qty"])
        else:
            notional = int(Decimal(p["price"]) * Decimal(p["qty"]) * quote_scale)
            quote += Decimal(notional + notional * taker_bps // 10000) / quote_scale
    return {"BTC": base, "USDT": quote}


def check_state(client, open_orders: dict[str, Op], totals: dict[str, Decimal]) -> list[str]:
    """What differs between the client's view and the venue's (empty: nothing)."""
    problems = []
    venue_open = {o.client_order_id for o in client.open_orders()}
    if venue_open != set(open_orders):
        seen = set(open_orders)
        problems.append(f"open orders: {len(venue_open - seen)} only at the venue, "
                        f"{len(seen - venue_open)} only in the client's view")  # fmt: skip
    locked = holds(open_orders)
    for balance in client.balances():
        if Decimal(balance.total) != totals[balance.asset]:
            problems.append(f"{balance.asset} total {balance.total}, was {totals[balance.asset]}")
        if Decimal(balance.locked) != locked.get(balance.asset, 0):
            problems.append(f"{balance.asset} locked {balance.locked}, the client's orders hold "
                            f"{locked.get(balance.asset, 0)}")  # fmt: skip
    return problems


# -- one client --


@dataclass
class Job:
    """What one client process runs."""

    protocol: str
    port: int
    entry: dict | None
    rest_port: int | None  # the final-state check's way in (venue protocols)
    warmup: int  # requests before the measured ones
    count: int
    rate: float
    start_ns: int  # wall clock of the first planned send (later if not ready by then)
    cpu: int | None
    mix: dict
    tag: str


def _encoded(latencies_ns) -> bytes:
    return histogram_of(latencies_ns).encode()


def client_run(job: Job) -> dict:
    """One client's run: its histograms (encoded), its sums, and the check."""
    from flowgate_client import Credentials, RestClient

    if job.cpu is not None:
        os.sched_setaffinity(0, {job.cpu})
    protocol = PROTOCOLS[job.protocol]
    ops = plan(job.warmup + job.count, job.mix, job.tag)
    link = protocol.connect(job.port, job.entry)
    account = None
    if protocol.outcome is not None:
        account = RestClient(f"http://127.0.0.1:{job.rest_port}",
                             Credentials.from_entry(job.entry))  # fmt: skip
        totals = {b.asset: Decimal(b.total) for b in account.balances()}
    requests = protocol.requests(ops, link, job.start_ns, job.rate)
    wait_ns = job.start_ns - time.time_ns()
    if wait_ns > 0:
        time.sleep(wait_ns / 1e9)
    offset = time.time_ns() - time.perf_counter_ns()  # wall minus perf, before and after
    planned, arrived, answers = send_receive(link.sock, requests, job.rate, protocol.complete())
    offset_after = time.time_ns() - time.perf_counter_ns()
    m = job.warmup
    result = {
        "count": job.count,
        "first_ns": int(planned[m] + offset),
        "last_ns": int(arrived[m:].max() + offset_after),
        "roundtrip": _encoded(arrived[m:] - planned[m:]),
    }
    if protocol.outcome is not None:
        outcomes = [protocol.outcome(a) for a in answers]
        statuses = [o.status for o in outcomes]
        expected = ["new" if op.kind == "place" else "canceled" for op in ops]
        result["answers"] = dict(Counter(statuses))
        result["errors"] = sum(s != e for s, e in zip(statuses, expected, strict=True))
        result.update(_stages(planned[m:], arrived[m:], outcomes[m:], offset, offset_after))
        result["problems"] = check_state(account, expected_open(ops, statuses), totals)
        account.cancel_all()
        account.close()
    protocol.close(link, len(requests))
    return result


def _stages(planned, arrived, outcomes, offset, offset_after) -> dict:
    """Per-stage histograms and sums from the answers that carry the venue's stamps."""
    rows = [(i, o.stamps) for i, o in enumerate(outcomes) if o.stamps]
    if not rows:
        return {"stage_count": 0}
    index = np.array([i for i, _ in rows])
    stamps = np.array([s for _, s in rows], dtype=np.int64)
    span = max(1, int(arrived.max() - planned[0]))
    # the two clocks drift apart a little over a run: interpolate the offset
    drift = (offset_after - offset) / span

    def wall(t):
        return t + offset + ((t - planned[0]) * drift).astype(np.int64)

    marks = np.column_stack([wall(planned[index]), stamps, wall(arrived[index])])
    parts = np.diff(marks, axis=1)
    return {
        "stage_count": len(rows),
        "stage_sums_ns": {name: int(parts[:, k].sum()) for k, name in enumerate(STAGES)},
        "stages": {name: _encoded(parts[:, k]) for k, name in enumerate(STAGES)},
    }


# -- a run of several clients --


def run(protocol: str, port: int, rest_port: int | None, entries: list[dict], rate: float,
        seconds: float, warmup_s: float, mix: dict, cpu: int | None, tag: str) -> dict:  # fmt: skip
    """`len(entries)` clients (processes when more than one) sharing the rate
    open loop, their results merged: the summary, the stages and the check."""
    clients = len(entries)
    per_client = rate / clients
    count, warmup = max(1, round(per_client * seconds)), round(per_client * warmup_s)
    # time to connect and encode (REST signs each request) before the first send
    lead_s = 0.5 + (count + warmup) * PROTOCOLS[protocol].encode_s
    start = time.time_ns() + int(lead_s * 1e9)
    jobs = [Job(protocol, port, entry, rest_port, warmup, count, per_client,
                start + int(i * 1e9 / rate), cpu, mix, f"{tag}c{i}")
            for i, entry in enumerate(entries)]  # fmt: skip
    if clients == 1:
        affinity = os.sched_getaffinity(0)
        try:
            results = [client_run(jobs[0])]
        finally:
            os.sched_setaffinity(0, affinity)
    else:
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            results = pool.map(client_run, jobs)
    return merge(results, rate)


def _decoded(encoded: list[bytes]) -> HdrHistogram:
    total = new_histogram()
    for e in encoded:
        total.add(HdrHistogram.decode(e))
    return total


def merge(results: list[dict], rate: float) -> dict:
    seconds = (max(r["last_ns"] for r in results) - min(r["first_ns"] for r in results)) / 1e9
    out = summary(_decoded([r["roundtrip"] for r in results]), rate, seconds)
    out["clients"] = len(results)
    if "answers" not in results[0]:
        return out
    answers = Counter()
    for r in results:
        answers.update(r["answers"])
    out["answers"] = dict(answers)
    out["errors"] = sum(r["errors"] for r in results)
    out["check"] = [p for r in results for p in r["problems"]] or "ok"
    stamped = sum(r["stage_count"] for r in results)
    if stamped:
        out["stages"] = {}
        for name in STAGES:
            histogram = _decoded([r["stages"][name] for r in results])
            total_ns = sum(r["stage_sums_ns"][name] for r in results)
            out["stages"][name] = {
                "mean_us": round(total_ns / stamped / 1000, 1),
                "p50_us": at(histogram, 50),
                "p99_us": at(histogram, 99),
            }
    return out


# -- the floors' servers --


def start_floor(name: str, cpu: int, reply_size: int) -> tuple[subprocess.Popen, int]:
    """An echo server pinned to `cpu`, and its port."""
    if name == "tcp_echo":
        return start_echo(TCP_ECHO_SERVER, cpu)
    return start_echo(ws.ECHO_SERVER, cpu, reply_size)


# -- the engine's own stage histograms --


def scrape(port: int) -> dict[str, dict]:
    """flowgate_stage_seconds from /metrics: per stage, cumulative buckets, sum and count."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    stages: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.startswith("flowgate_stage_seconds"):
            continue
        name, value = line.rsplit(" ", 1)
        labels = dict(part.split("=") for part in name[name.index("{") + 1 : -1].split(","))
        stage = stages.setdefault(labels["stage"].strip('"'), {"buckets": {}})
        if "_bucket" in name:
            stage["buckets"][labels["le"].strip('"')] = int(value)
        else:
            stage["sum" if "_sum" in name else "count"] = float(value)
    return stages


def engine_stages(before: dict, after: dict) -> dict:
    """Each engine stage over one run: steps timed, mean, and the bucket bounds
    that hold the median and the 99th percentile."""
    out = {}
    for stage, end in after.items():
        start = before.get(stage, {"buckets": {}, "sum": 0.0, "count": 0})
        steps = int(end["count"] - start["count"])
        if steps <= 0:
            continue
        buckets = [(le, n - start["buckets"].get(le, 0)) for le, n in end["buckets"].items()]

        def bound(p, buckets=buckets, steps=steps):
            le = next(le for le, n in buckets if n >= p * steps)
            return "+Inf" if le == "+Inf" else round(float(le) * 1e6, 1)

        mean_us = (end["sum"] - start["sum"]) / steps * 1e6
        out[stage] = {"steps": steps, "mean_us": round(mean_us, 2), "p50_le_us": bound(0.5),
                      "p99_le_us": bound(0.99)}  # fmt: skip
    return out
