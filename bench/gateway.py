"""Gateway benchmark: the WebSocket gateway's CPU per order, without sockets.

The real venue (engine on the gateways' thread, journal, history off) is
built in this process, and a WebSocket session's messages are handed to the
gateway as picows would hand them: each request is decoded, checked and
turned into a command record; after each window of requests the engine takes
them (sequencer, journal write, core) and the walk over their events keeps
the view, answers the requests and encodes the answers, which a stand-in for
the connection counts instead of sending. What is left out is the network:
the system calls and picows' framing. The time per order is the CPU the
venue spends on it, which no latency benchmark shows apart from the
transport, and which bounds the orders per second one core can take.

Post-only orders away from the touch (each rests), as `order.place` requests
and as `order.batch` requests of `--batch`, in rounds that alternate the two;
each round is a fresh session of its own account on the same venue, so the
book grows round by round as under a throughput run. The first round of each
kind warms up the caches and is not counted; the report gives the median and
the spread of the other rounds.
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import uvloop

from bench.report import UNLIMITED, emit, machine, output_arguments
from bench.ws import order_params
from engine import config as venue_config
from engine import server
from gateways.ws import server as ws
from tests.server import configured_venue


class _Sent:
    """Where a session's answers go instead of a socket: kept, to be checked
    after the round."""

    def __init__(self):
        self.writes: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes):
        self.writes.append(data)


class _Connection:
    is_disconnected = False

    def __init__(self):
        self.underlying_transport = _Sent()


def requests(n: int, per_request: int) -> list[bytes]:
    """n orders as `order.place` requests, or `order.batch` requests of
    per_request orders, JSON-encoded as a client sends them."""
    if per_request == 1:
        return [orjson.dumps({"id": i, "method": "order.place", "params": order_params(i)})
                for i in range(n)]  # fmt: skip
    return [orjson.dumps({"id": start, "method": "order.batch", "params": {
        "orders": [order_params(i) for i in range(start, min(n, start + per_request))]}})
        for start in range(0, n, per_request)]  # fmt: skip


def session_round(gateway: ws.WsGateway, account: int, payloads: list[bytes], window: int,
                  orders: int) -> float:  # fmt: skip
    """One logged-on session sends its requests, `window` of them per read;
    returns µs per order."""
    session = ws.WsSession(gateway, ws.JSON)
    session.transport = _Connection()
    session.account, session.permissions = account, ("trade", "read")
    gateway.sessions[session.id] = gateway.venue.sessions[session.id] = session
    started = time.perf_counter()
    for start in range(0, len(payloads), window):
        for payload in payloads[start : start + window]:
            gateway.handle(session, ws.TEXT, payload)
        gateway.flush()  # as at the end of a read: the answers so far, then the engine
        gateway.venue.kick()
    elapsed = time.perf_counter() - started
    del gateway.sessions[session.id], gateway.venue.sessions[session.id]
    answers = b"".join(session.transport.underlying_transport.writes)
    placed = answers.count(b'"status":"new"')  # each order rests: its answer says so
    if placed != orders or b'"error"' in answers or session.pending:
        raise RuntimeError(f"{placed} of the round's {orders} orders were placed")
    return elapsed / orders * 1e6


async def measure(args, data: Path) -> dict:
    accounts = 2 + 2 * args.rounds
    venue_args = configured_venue(data, UNLIMITED, accounts=accounts)
    config = venue_config.load(Path(venue_args[1]))
    options = server.ServeOptions(data_dir=data, ws_port=0, snapshot_every=10**9,
                                  history=False)  # fmt: skip
    pipeline, gateways = await server.build_pipeline(config, options, args.cpu)
    gateway = next(g for name, g, _ in gateways if name == "ws_port")
    server.settle_gc()  # as the server does
    sizes = {"place": 1, "batch": args.batch}  # orders per request
    kinds = {sizes[k]: requests(args.orders, sizes[k]) for k in sizes if k in args.kinds}
    us = {per: [] for per in kinds}
    account = 2
    try:
        for _ in range(args.rounds):
            for per, payloads in kinds.items():
                window = max(1, args.window // per)
                us[per].append(session_round(gateway, account, payloads, window, args.orders))
                account += 1
    finally:
        for _, _, served in gateways:
            if served is not None:  # (the WebSocket port, never connected to)
                served.close()
        pipeline.runtime.abandon()
    rows = []
    for per, rounds in us.items():
        counted = rounds[1:]
        rows.append({"orders_per_request": per, "orders_per_round": args.orders,
                     "rounds_us_per_order": [round(u, 2) for u in rounds],
                     "us_per_order": round(statistics.median(counted), 2),
                     "min_us": round(min(counted), 2), "max_us": round(max(counted), 2),
                     "orders_per_cpu_second": round(1e6 / statistics.median(counted))})  # fmt: skip
    return {"conditions": {**machine(), "cpu_pinned": args.cpu, "window": args.window,
                           "rounds": args.rounds, "journal": "write", "history": False},
            "gateway": rows}  # fmt: skip


def report(result: dict) -> str:
    c = result["conditions"]
    lines = [
        f"Gateway benchmark (no sockets), {c['date']}: {c['cpu']}, Python {c['python']}, "
        f"pinned to CPU {c['cpu_pinned']}; {c['window']} orders per read, {c['rounds']} rounds "
        "of each kind (the first not counted).",
        "",
        "| requests | orders per round | µs per order (median) | min | max "
        "| orders per CPU second |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["gateway"]:
        kind = ("`order.place`" if row["orders_per_request"] == 1
                else f"`order.batch` of {row['orders_per_request']}")  # fmt: skip
        lines.append(
            f"| {kind} | {row['orders_per_round']:,} | {row['us_per_order']} | "
            f"{row['min_us']} | {row['max_us']} | {row['orders_per_cpu_second']:,} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gateway",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--orders", type=int, default=20_000, help="per round")
    parser.add_argument("--rounds", type=int, default=5, help="of each kind; the first warms up")
    parser.add_argument("--batch", type=int, default=20, help="orders per order.batch request")
    parser.add_argument("--window", type=int, default=256, help="orders handed over per read")
    parser.add_argument(
        "--kinds",
        default="place,batch",
        help="which requests: place, batch or both (comma-separated)",
    )
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                        help="pin to this CPU (default: the last)")  # fmt: skip
    parser.add_argument("--data-root", type=Path, default=Path("build"))
    output_arguments(parser, "gateway")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is not counted)")
    args.kinds = set(args.kinds.split(","))
    if not args.kinds or not args.kinds <= {"place", "batch"} or args.batch < 2:
        parser.error("--kinds takes place and/or batch; --batch is 2 or more")
    os.sched_setaffinity(0, {args.cpu})
    args.data_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
    try:
        result = uvloop.run(measure(args, work / "venue"))  # the server's loop
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(result, args, report)


if __name__ == "__main__":
    main()
