"""REST benchmark: order → ack over REST with an HMAC and an Ed25519 key,
beside the WebSocket figure of the same run; and public GET throughput with
wrk, beside a minimal uvicorn + Starlette app answering the same JSON.

Latency: one raw-socket client on the other core sends signed `POST
/v1/orders` requests (post-only, resting) open loop at a fixed rate over one
keep-alive connection; each is signed ahead for its planned send time, and
its round trip runs from that plan to the arrival of its answer (HDR
histogram). The WebSocket row is `bench.ws`'s order → ack, measured the same
way in the same run.

Throughput: wrk on the other core, 50 connections, against `GET
/v1/book/BTC-USDT?depth=10` of a venue holding a few levels, and against a
uvicorn + Starlette app (one worker, uvloop and httptools, on the venue's
core) answering the same bytes.
"""

import argparse
import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ws
from bench.placement import PR_SET_TIMERSLACK, drive
from bench.report import UNLIMITED, emit, latency_arguments, machine, output_arguments
from tests.server import ServerProcess, configured_venue

BOOK_PATH = "/v1/book/BTC-USDT?depth=10"


def http_complete(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The bodies of whole responses (Content-Length framed) in the buffer, and the rest."""
    bodies, at = [], 0
    while True:
        head_end = buffer.find(b"\r\n\r\n", at)
        if head_end < 0:
            break
        match = re.search(rb"Content-Length: (\d+)", buffer[at:head_end])
        end = head_end + 4 + int(match.group(1))
        if end > len(buffer):
            break
        bodies.append(buffer[head_end + 4 : end])
        at = end
    return bodies, buffer[at:]


def signed_request(credentials, method: str, target: str, body: bytes, ts: int,
                   nonce: str) -> bytes:  # fmt: skip
    """One raw HTTP/1.1 request, signed for its planned send time `ts` (ms)."""
    from flowgate_client import rest_headers

    headers = rest_headers(credentials, method, target, body, ts=ts, nonce=nonce)
    if body:
        headers |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body


def signed_orders(entry: dict, n: int, rate: int, start_ms: int) -> list[bytes]:
    """n order requests, each signed for its planned send time."""
    from flowgate_client import Credentials

    credentials = Credentials.from_entry(entry)
    return [signed_request(credentials, "POST", "/v1/orders",
                           json.dumps(ws.order_params(i), separators=(",", ":")).encode(),
                           start_ms + i * 1000 // rate, f"b{i}")
            for i in range(n)]  # fmt: skip


def rest_latency(server: ServerProcess, entry: dict, args) -> dict:
    total = args.warmup + args.orders
    requests = signed_orders(entry, total, args.rate, time.time_ns() // 1_000_000 + 1000)
    time.sleep(1.0)  # the first planned send
    drive(tcp(server.rest_port), requests[: args.warmup], args.rate, http_complete)
    return drive(tcp(server.rest_port), requests[args.warmup :], args.rate, http_complete)


def tcp(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ws_latency(server: ServerProcess, entry: dict, args) -> dict:
    frames = ws.orders(args.warmup + args.orders, first_id=10**6)
    drive(ws.logged_on(server.ws_port, entry), frames[: args.warmup], args.rate,
          ws.split_frames)  # fmt: skip
    return drive(ws.logged_on(server.ws_port, entry), frames[args.warmup :], args.rate,
                 ws.split_frames)  # fmt: skip


STARLETTE_APP = """
import os, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
os.sched_setaffinity(0, {int(sys.argv[1])})
body = open(sys.argv[2], "rb").read()
async def book(request):
    return Response(body, media_type="application/json")
app = Starlette(routes=[Route("/v1/book/{symbol}", book)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


def wrk(port: int, cpu: int, seconds: int) -> int:
    """Requests per second wrk measured (non-2xx answers make the run fail)."""
    result = subprocess.run(["taskset", "-c", str(cpu), "wrk", "-t1", "-c50", f"-d{seconds}s",
                             f"http://127.0.0.1:{port}{BOOK_PATH}"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    if "Non-2xx" in result.stdout:
        raise RuntimeError(f"wrk saw errors:\n{result.stdout}")
    return round(float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def throughput(server: ServerProcess, work: Path, server_cpu: int, client_cpu: int,
               seconds: int) -> dict:  # fmt: skip
    with tcp(server.rest_port) as sock:
        sock.sendall(f"GET {BOOK_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while not (bodies := http_complete(answer)[0]):
            answer += sock.recv(65536)
    body = bodies[0]
    (work / "book.json").write_bytes(body)
    venue = wrk(server.rest_port, client_cpu, seconds)
    port = free_port()
    app = subprocess.Popen([sys.executable, "-c", STARLETTE_APP, str(server_cpu),
                            str(work / "book.json"), str(port)])  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        baseline = wrk(port, client_cpu, seconds)
    finally:
        app.terminate()
        app.wait()
    return {"body_bytes": len(body), "flowgate_rps": venue, "starlette_rps": baseline,
            "ratio": round(venue / baseline, 2)}  # fmt: skip


def run(args) -> dict:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[-1], cpus[0]
    work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
    data = work / "venue"
    venue = configured_venue(data, UNLIMITED)
    entries = json.loads((data / "demo-credentials.json").read_text())

    def key(account: int, key_type: str) -> dict:
        return next(e for e in entries if e["account"] == account and e["type"] == key_type)

    server = ServerProcess(data, *venue, "--cpu", str(server_cpu), "--snapshot-every",
                           str(10**9))  # fmt: skip
    try:
        os.sched_setaffinity(0, {client_cpu})
        latency = {
            "rest_hmac": rest_latency(server, key(2, "hmac-sha256"), args),
            "rest_ed25519": rest_latency(server, key(3, "ed25519"), args),
            "websocket": ws_latency(server, key(4, "ed25519"), args),
        }
        os.sched_setaffinity(0, cpus)
        rps = throughput(server, work, server_cpu, client_cpu, args.seconds)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        os.sched_setaffinity(0, cpus)
    ws_p50 = latency["websocket"]["p50_us"]
    return {
        "conditions": {
            **machine(),
            "orders": args.orders,
            "warmup": args.warmup,
            "rate_per_s": args.rate,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
            "wrk_seconds": args.seconds,
        },  # fmt: skip
        "latency": latency,
        "hmac_p50_over_ws": round(latency["rest_hmac"]["p50_us"] / ws_p50, 2),
        "ed25519_p50_over_ws": round(latency["rest_ed25519"]["p50_us"] / ws_p50, 2),
        "throughput": rps,
    }


def report(result: dict) -> str:
    c, lat, tp = result["conditions"], result["latency"], result["throughput"]
    lines = [
        f"REST benchmark, {c['date']}: {c['cpu']}, {c['cores']} cores, Python {c['python']}; "
        f"{c['orders']:,} post-only orders open loop at {c['rate_per_s']:,}/s from CPU "
        f"{c['client_cpu']}, the venue on CPU {c['server_cpu']}.",
        "",
        "| order → ack | p50 µs | p99 µs | p99.9 µs | max µs | p50 / WebSocket |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, name, ratio in (("rest_hmac", "REST, HMAC key", result["hmac_p50_over_ws"]),
                             ("rest_ed25519", "REST, Ed25519 key", result["ed25519_p50_over_ws"]),
                             ("websocket", "WebSocket", 1.0)):  # fmt: skip
        r = lat[key]
        lines.append(f"| {name} | {r['p50_us']} | {r['p99_us']} | {r['p999_us']} | "
                     f"{r['max_us']} | {ratio} |")  # fmt: skip
    lines += [
        "",
        f"Public GET throughput, wrk (1 thread, 50 connections, {c['wrk_seconds']} s) on CPU "
        f"{c['client_cpu']}, `GET {BOOK_PATH}` ({tp['body_bytes']} bytes):",
        "",
        "| server | requests/s | ratio |",
        "|---|---:|---:|",
        f"| Flowgate | {tp['flowgate_rps']:,} | {tp['ratio']} |",
        f"| uvicorn + Starlette, same bytes | {tp['starlette_rps']:,} | 1.0 |",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.rest",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run")
    latency_arguments(parser, orders=10_000, warmup=1_000, rate=1_000)
    output_arguments(parser, "rest")
    args = parser.parse_args(argv)
    args.data_root.mkdir(parents=True, exist_ok=True)
    emit(run(args), args, report)


if __name__ == "__main__":
    main()
