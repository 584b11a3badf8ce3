"""Placement benchmark: order round trips through the real server, with the
engine on the gateways' thread and in a process of its own, beside the
transport floor measured the same way in the same run.

One client thread sends post-only orders over the record port open loop, at a
fixed rate (each order has a planned send time; a late send counts its delay),
and stamps the arrival of each order's last event; the round trip is from
planned send to that arrival (HDR histogram). The floor is a uvloop TCP
server that answers each 128-byte record with one 232-byte record, driven by
the same client code.
"""

import argparse
import ctypes
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.report import emit, machine, output_arguments
from engine import messages as m
from engine.records import EVENT_DTYPE, command_record
from ext.core import COMMAND_SIZE, EVENT_SIZE, EventFlag
from tests.server import ServerProcess

PR_SET_TIMERSLACK = 29


def orders(n: int) -> list[bytes]:
    """Post-only bids and asks far from the touch: each is accepted and rests."""
    out = []
    for i in range(n):
        side = m.Side.BUY if i % 2 else m.Side.SELL
        price = 5_000_000 + (-1 if side == m.Side.BUY else 1) * (1000 + i % 500)
        out.append(command_record(m.PlaceOrder(
            account=2 + i % 3, instrument=0, side=side, type=m.OrderType.LIMIT, price=price,
            qty=1, post_only=True,
        )))  # fmt: skip
    return out


def tcp_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def drive(sock: socket.socket, records: list[bytes], rate: int, complete) -> dict:
    """Open-loop round trips over a connected socket, which it closes;
    `complete(buffer)` returns (finished count, rest)."""
    sock.setblocking(False)
    interval = 1e9 / rate
    planned = np.zeros(len(records), dtype=np.int64)
    arrived = np.zeros(len(records), dtype=np.int64)
    start = time.perf_counter_ns() + 1_000_000
    sent = done = 0
    buffer = b""
    while done < len(records):
        now = time.perf_counter_ns()
        while sent < len(records) and start + sent * interval <= now:
            planned[sent] = start + sent * interval
            sock.sendall(records[sent])
            sent += 1
        wait_s = max(0.0, (start + sent * interval - now) / 1e9) if sent < len(records) else 1.0
        if select.select([sock], [], [], min(wait_s, 1.0))[0]:
            buffer += sock.recv(1 << 20)
            finished, buffer = complete(buffer)
            arrived[done : done + finished] = time.perf_counter_ns()
            done += finished
    sock.close()
    histogram = HdrHistogram(1, 60 * 10**9, 3)
    for value in (arrived - planned).tolist():
        histogram.record_value(max(value, 1))
    return {
        "p50_us": round(histogram.get_value_at_percentile(50) / 1000, 1),
        "p99_us": round(histogram.get_value_at_percentile(99) / 1000, 1),
        "p999_us": round(histogram.get_value_at_percentile(99.9) / 1000, 1),
        "max_us": round(histogram.get_max_value() / 1000, 1),
    }


def events_complete(buffer: bytes) -> tuple[int, bytes]:
    whole = len(buffer) // EVENT_SIZE * EVENT_SIZE
    events = np.frombuffer(buffer[:whole], EVENT_DTYPE)
    finished = int(np.count_nonzero(events["flags"] & EventFlag.FLAG_LAST))
    return finished, buffer[whole:]


def echo_complete(buffer: bytes) -> tuple[int, bytes]:
    whole = len(buffer) // EVENT_SIZE * EVENT_SIZE
    return whole // EVENT_SIZE, buffer[whole:]


ECHO_SERVER = f"""
import asyncio, os, sys, uvloop
os.sched_setaffinity(0, {{int(sys.argv[1])}})
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t, self.b = t, b""
    def data_received(self, d):
        self.b += d
        n = len(self.b) // {COMMAND_SIZE}
        if n:
            self.b = self.b[n * {COMMAND_SIZE}:]
            self.t.write(bytes({EVENT_SIZE}) * n)
async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
uvloop.run(main())
"""


def floor_run(records, rate: int, cpu: int) -> dict:
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, str(cpu)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        port = int(echo.stdout.readline())
        return drive(tcp_connect(port), records, rate, echo_complete)
    finally:
        echo.terminate()
        echo.wait()
        echo.stdout.close()


def server_run(records, rate: int, work: Path, placement: tuple, cpu: int) -> dict:
    data = work / ("venue" + "-".join(placement))
    server = ServerProcess(data, "--cpu", str(cpu), "--snapshot-every", str(10**9), *placement)
    try:
        drive(tcp_connect(server.record_port), records[:1000], rate, events_complete)  # warm-up
        return drive(tcp_connect(server.record_port), records[1000:], rate, events_complete)
    finally:
        server.stop()


def run(args) -> dict:
    # wake from select() on time: the default 50 µs timer slack would delay planned sends
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[-1], cpus[0]
    os.sched_setaffinity(0, {client_cpu})
    records = orders(args.orders + 1000)
    work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
    results = {}
    try:
        results["floor"] = floor_run(records[1000:], args.rate, server_cpu)
        results["one_thread"] = server_run(records, args.rate, work, (), server_cpu)
        results["engine_process"] = server_run(records, args.rate, work, ("--engine-process",),
                                               server_cpu)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
        os.sched_setaffinity(0, cpus)
    return {
        "conditions": {**machine(), "orders": args.orders, "rate_per_s": args.rate,
                       "server_cpu": server_cpu, "client_cpu": client_cpu},  # fmt: skip
        **results,
        "one_thread_p50_over_floor": round(
            results["one_thread"]["p50_us"] / results["floor"]["p50_us"], 2),
        "engine_process_p50_over_floor": round(
            results["engine_process"]["p50_us"] / results["floor"]["p50_us"], 2),
    }  # fmt: skip


def report(result: dict) -> str:
    c = result["conditions"]
    lines = [
        f"Placement benchmark, {c['date']}: {c['cpu']}, {c['cores']} cores, Python "
        f"{c['python']}; {c['orders']:,} post-only orders over the record port, open loop at "
        f"{c['rate_per_s']:,}/s, one client on CPU {c['client_cpu']}, server (or engine) "
        f"on CPU {c['server_cpu']}.",
        "",
        "| round trip | p50 µs | p99 µs | p99.9 µs | max µs | p50 / floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "floor": "TCP echo floor (uvloop, same sizes)",
        "one_thread": "engine on the gateways' thread",
        "engine_process": "engine in its own process",
    }
    for key, name in names.items():
        r = result[key]
        ratio = "1.0" if key == "floor" else result[f"{key}_p50_over_floor"]
        lines.append(f"| {name} | {r['p50_us']} | {r['p99_us']} | {r['p999_us']} "
                     f"| {r['max_us']} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.placement",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=2_000, help="orders per second, open loop")
    parser.add_argument("--data-root", type=Path, default=Path("build"))
    output_arguments(parser, "placement")
    args = parser.parse_args(argv)
    args.data_root.mkdir(parents=True, exist_ok=True)
    emit(run(args), args, report)


if __name__ == "__main__":
    main()
