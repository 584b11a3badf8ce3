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
import gc
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


def send_receive(sock: socket.socket, requests: list[bytes], rate: float, complete,
                 timeout_s: float = 10.0) -> tuple:  # fmt: skip
    """Open loop over a connected socket: request i is due at start + i / rate
    (perf_counter_ns), sent then even if the client fell behind, so a late send
    counts in its round trip. `complete(buffer)` returns (answers, rest); answers
    arrive in request order. Returns (planned, arrived, answers): per request the
    ns of its plan and of its answer's arrival, and the answers. The cyclic
    garbage collector is off meanwhile: its pauses are the client's, not the
    server's."""
    gc.disable()
    try:
        return _send_receive(sock, requests, rate, complete, timeout_s)
    finally:
        gc.enable()


def _send_receive(sock, requests, rate, complete, timeout_s) -> tuple:
    sock.setblocking(False)
    n = len(requests)
    interval = 1e9 / rate
    start = time.perf_counter_ns() + 1_000_000
    planned = start + (np.arange(n) * interval).astype(np.int64)
    arrived = np.zeros(n, dtype=np.int64)
    answers: list = []
    sent, pending, buffer = 0, b"", b""
    heard = time.perf_counter_ns()  # the last sign of life, for the timeout
    while len(answers) < n:
        now = time.perf_counter_ns()
        if sent < n and planned[sent] <= now:
            due = min(n, int((now - start) // interval) + 1)
            pending += b"".join(requests[sent:due])
            sent = due
        if pending:
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:
                pass
        wait_s = (planned[sent] - now) / 1e9 if sent < n else 1.0
        readable, _, _ = select.select([sock], [sock] if pending else [], [],
                                       min(max(wait_s, 0.0), 1.0))  # fmt: skip
        if readable:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"closed after {len(answers)} of {n} answers")
            found, buffer = complete(buffer + data)
            if found:
                heard = time.perf_counter_ns()
                arrived[len(answers) : len(answers) + len(found)] = heard
                answers.extend(found)
        elif time.perf_counter_ns() - heard > timeout_s * 1e9:
            raise TimeoutError(f"{len(answers)} of {n} answers, then {timeout_s} s of silence")
    return planned, arrived, answers


CURVE = (0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100)  # percentiles


def new_histogram() -> HdrHistogram:
    """Latencies in ns, 1 ns to a minute, 3 significant digits."""
    return HdrHistogram(1, 60 * 10**9, 3)


def histogram_of(latencies_ns) -> HdrHistogram:
    histogram = new_histogram()
    for value in latencies_ns.tolist():
        histogram.record_value(max(value, 1))
    return histogram


def at(histogram: HdrHistogram, p: float) -> float:
    """The p-th percentile of a histogram of ns, in µs."""
    return round(histogram.get_value_at_percentile(p) / 1000, 1)


def summary(histogram: HdrHistogram, offered: float, seconds: float) -> dict:
    """Percentiles (µs), rates and the percentile curve of a latency histogram."""
    count = histogram.get_total_count()
    return {
        "count": count,
        "offered_rate": round(offered),
        "achieved_rate": round(count / seconds) if seconds > 0 else 0,
        "mean_us": round(histogram.get_mean_value() / 1000, 1),
        "p50_us": at(histogram, 50), "p90_us": at(histogram, 90), "p99_us": at(histogram, 99),
        "p999_us": at(histogram, 99.9), "p9999_us": at(histogram, 99.99),
        "max_us": round(histogram.get_max_value() / 1000, 1),
        "curve": [[p, at(histogram, p)] for p in CURVE],
    }  # fmt: skip


def drive(sock: socket.socket, records: list[bytes], rate: int, complete) -> dict:
    """send_receive, then the socket closed and the round trips summed up."""
    planned, arrived, _ = send_receive(sock, records, rate, complete)
    sock.close()
    seconds = (arrived.max() - planned[0]) / 1e9
    return summary(histogram_of(arrived - planned), rate, seconds)


def events_complete(buffer: bytes) -> tuple[list, bytes]:
    """The last event of each finished command, and the rest."""
    whole = len(buffer) // EVENT_SIZE * EVENT_SIZE
    events = np.frombuffer(buffer[:whole], EVENT_DTYPE)
    return list(events[events["flags"] & EventFlag.FLAG_LAST != 0]), buffer[whole:]


def echo_complete(buffer: bytes) -> tuple[list, bytes]:
    whole = len(buffer) // EVENT_SIZE * EVENT_SIZE
    return [None] * (whole // EVENT_SIZE), buffer[whole:]


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


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, all threads) a process has used, from
    /proc: kernel ticks, so good to about 1% over a run of seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_echo(source: str, *args) -> tuple[subprocess.Popen, int]:
    """An echo server (`source`, run with `args`, prints its port), and its port."""
    process = subprocess.Popen([sys.executable, "-c", source, *map(str, args)],
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    return process, int(process.stdout.readline())


def stop_echo(process: subprocess.Popen):
    process.terminate()
    process.wait()
    process.stdout.close()


def floor_run(records, rate: int, cpu: int) -> dict:
    echo, port = start_echo(ECHO_SERVER, cpu)
    try:
        return drive(tcp_connect(port), records, rate, echo_complete)
    finally:
        stop_echo(echo)


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
