"""WebSocket benchmark: order → ack round trips through the real server's
`/v1/ws`, beside a picows echo floor measured the same way in the same run,
with the client on the server's core and on the other core; then sustained
order throughput from several clients at once.

Latency: one raw-socket client, logged on, sends pre-encoded `order.place`
frames (post-only, resting away from the touch) open loop at a fixed rate;
each has a planned send time and its round trip runs from that plan to the
arrival of its answer (HDR histogram), so a late send counts. The floor is a
picows server on the same core answering each frame with a frame the size of
the venue's answer, driven by the same code.

Throughput: several client processes on the other core, each logged on as
its own account, keep a window of orders in flight until each has its
answers; the rate is all orders over the wall time of the whole run.
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path

from bench.placement import PR_SET_TIMERSLACK, drive, start_echo, stop_echo
from bench.report import UNLIMITED, emit, latency_arguments, machine, output_arguments
from tests.server import ServerProcess, configured_venue

PATH = "/v1/ws"


def client_frame(payload: bytes) -> bytes:
    """A masked text frame (a zero mask key is legal and leaves the payload as is)."""
    size = len(payload)
    if size < 126:
        header = bytes([0x81, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([0x81, 0x80 | 126]) + struct.pack(">H", size)
    else:
        header = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", size)
    return header + b"\0\0\0\0" + payload


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Whole data frames' payloads, and the rest (pings and pongs are skipped)."""
    payloads, at = [], 0
    while len(buffer) - at >= 2:
        size, offset = buffer[at + 1] & 0x7F, 2
        if size == 126:
            if len(buffer) - at < 4:
                break
            size, offset = struct.unpack_from(">H", buffer, at + 2)[0], 4
        elif size == 127:
            if len(buffer) - at < 10:
                break
            size, offset = struct.unpack_from(">Q", buffer, at + 2)[0], 10
        if len(buffer) - at < offset + size:
            break
        if buffer[at] & 0x0F in (1, 2):
            payloads.append(buffer[at + offset : at + offset + size])
        at += offset + size
    return payloads, buffer[at:]


def handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall((f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: Zmxvd2dhdGUtYmVuY2gtMQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())  # fmt: skip
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("no WebSocket upgrade")
        response += chunk
    if b" 101 " not in response.split(b"\r\n", 1)[0]:
        raise ConnectionError(response.decode(errors="replace"))
    return sock


def request(sock: socket.socket, message: dict) -> dict:
    """One request, blocking, for the set-up (logon)."""
    sock.sendall(client_frame(json.dumps(message).encode()))
    buffer = b""
    while True:
        buffer += sock.recv(1 << 16)
        payloads, buffer = split_frames(buffer)
        if payloads:
            return json.loads(payloads[0])


def logged_on(port: int, entry: dict) -> socket.socket:
    from flowgate_client import Credentials, ws_logon_params

    sock = handshake(port)
    answer = request(sock, {"id": 0, "method": "session.logon",
                            "params": ws_logon_params(Credentials.from_entry(entry))})  # fmt: skip
    if "error" in answer:
        raise RuntimeError(f"logon refused: {answer['error']}")
    return sock


def order_params(i: int) -> dict:
    """Post-only bids and asks away from the touch, queued on 500 levels a
    side: each is accepted and rests."""
    side = "buy" if i % 2 else "sell"
    ticks = 100_000 + (i // 2) % 500 * 10  # 1,000.00 to 1,049.90 away from 50,000
    price = 5_000_000 - ticks if side == "buy" else 5_000_000 + ticks
    return {"symbol": "BTC-USDT", "side": side, "type": "limit", "qty": "0.0001",
            "price": f"{price // 100}.{price % 100:02d}", "post_only": True}  # fmt: skip


def orders(n: int, first_id: int = 1, per_request: int = 1) -> list[bytes]:
    """n orders as `order.place` requests, or `order.batch` requests of
    per_request orders each."""
    out = []
    for start in range(0, n, per_request):
        if per_request == 1:
            message = {"id": first_id + start, "method": "order.place",
                       "params": order_params(start)}  # fmt: skip
        else:
            batch = [order_params(i) for i in range(start, min(n, start + per_request))]
            message = {"id": first_id + start, "method": "order.batch",
                       "params": {"orders": batch}}  # fmt: skip
        out.append(client_frame(json.dumps(message, separators=(",", ":")).encode()))
    return out


ECHO_SERVER = """
import os, sys, uvloop
from picows import WSListener, WSMsgType, ws_create_server
os.sched_setaffinity(0, {int(sys.argv[1])})
reply = b"x" * int(sys.argv[2])
class Echo(WSListener):
    def on_ws_frame(self, transport, frame):
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(WSMsgType.TEXT, reply)
async def main():
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
uvloop.run(main())
"""


def floor_run(frames: list[bytes], warmup: int, rate: int, server_cpu: int,
              reply_size: int) -> dict:  # fmt: skip
    echo, port = start_echo(ECHO_SERVER, server_cpu, reply_size)
    try:
        drive(handshake(port), frames[:warmup], rate, split_frames)
        return drive(handshake(port), frames[warmup:], rate, split_frames)
    finally:
        stop_echo(echo)


def answer_size(port: int, entry: dict, frame: bytes | None = None) -> int:
    """The size of the venue's answer to one placement (the floor answers alike),
    by default `orders`' first."""
    sock = logged_on(port, entry)
    sock.sendall(frame or orders(1, first_id=10**9)[0])
    buffer = b""
    while True:
        buffer += sock.recv(1 << 16)
        payloads, buffer = split_frames(buffer)
        if payloads:
            sock.close()
            return len(payloads[0])


def latency(args, server: ServerProcess, credentials: list[dict], server_cpu: int,
            client_cpu: int) -> dict:  # fmt: skip
    """Order → ack and the floor, with the client on each core in turn."""
    reply = answer_size(server.ws_port, credentials[0])
    warmup = args.warmup
    frames = orders(args.orders + warmup)
    results = {"answer_bytes": reply}
    for name, cpu in (("one_core", server_cpu), ("across_cores", client_cpu)):
        os.sched_setaffinity(0, {cpu})
        entry = credentials[1 if name == "one_core" else 2]
        drive(logged_on(server.ws_port, entry), frames[:warmup], args.rate, split_frames)
        venue = drive(logged_on(server.ws_port, entry), frames[warmup:], args.rate,
                      split_frames)  # fmt: skip
        floor = floor_run(frames, warmup, args.rate, server_cpu, reply)
        results[name] = {
            "order_ack": venue, "echo_floor": floor,
            "p50_over_floor": round(venue["p50_us"] / floor["p50_us"], 2),
            "p99_over_floor": round(venue["p99_us"] / floor["p99_us"], 2),
        }  # fmt: skip
    return results


def blast(port: int, entry: dict, n: int, per_request: int, window: int, start_at: float,
          cpu: int, out):  # fmt: skip
    """One throughput client: n orders, at most `window` of them unanswered."""
    os.sched_setaffinity(0, {cpu})
    sock = logged_on(port, entry)
    frames = orders(n, per_request=per_request)
    window = max(1, window // per_request)  # in requests
    while time.time() < start_at:
        time.sleep(0.0005)
    started = time.perf_counter()
    sent = answered = errors = 0
    buffer = b""
    while answered < len(frames):
        if sent < len(frames) and sent - answered < window:
            burst = min(window - (sent - answered), len(frames) - sent, 64)
            sock.sendall(b"".join(frames[sent : sent + burst]))
            sent += burst
        buffer += sock.recv(1 << 20)
        payloads, buffer = split_frames(buffer)
        answered += len(payloads)
        errors += sum(p.count(b'"error"') for p in payloads)
    out.put((started, time.perf_counter(), errors))
    sock.close()


def throughput(args, server: ServerProcess, credentials: list[dict], client_cpu: int,
               per_request: int, first_client: int) -> dict:  # fmt: skip
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 1.5  # every client logged on and waiting
    clients = [context.Process(target=blast, args=(
        server.ws_port, credentials[first_client + i], args.throughput_orders, per_request,
        args.window, start_at, client_cpu, out)) for i in range(args.clients)]  # fmt: skip
    for client in clients:
        client.start()
    runs = [out.get(timeout=300) for _ in clients]
    for client in clients:
        client.join()
    seconds = max(end for _, end, _ in runs) - min(start for start, _, _ in runs)
    total = args.clients * args.throughput_orders
    return {"clients": args.clients, "orders": total, "orders_per_request": per_request,
            "window": args.window, "seconds": round(seconds, 3),
            "orders_per_s": round(total / seconds),
            "errors": sum(e for _, _, e in runs)}  # fmt: skip


def run(args) -> dict:
    # wake from select() on time: the default 50 µs timer slack would delay planned sends
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[-1], cpus[0]
    work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
    accounts = 3 + 2 * args.clients + 1  # latency runs, then each throughput run its own
    data = work / "venue"
    venue = configured_venue(data, UNLIMITED, accounts=accounts)
    credentials = [e for e in json.loads((data / "demo-credentials.json").read_text())
                   if e["type"] == "ed25519" and e["account"] > 1]  # fmt: skip
    server = ServerProcess(data, *venue, "--cpu", str(server_cpu), "--snapshot-every",
                           str(10**9))  # fmt: skip
    try:
        results = {"latency": latency(args, server, credentials, server_cpu, client_cpu)}
        os.sched_setaffinity(0, cpus)
        results["throughput"] = [
            throughput(args, server, credentials, client_cpu, per_request, 3 + i * args.clients)
            for i, per_request in enumerate((1, args.batch))
        ]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        os.sched_setaffinity(0, cpus)
    return {
        "conditions": {
            **machine(),
            "orders": args.orders,
            "rate_per_s": args.rate,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
            "durability": "write",
        },  # fmt: skip
        **results,
    }


def report(result: dict) -> str:
    c, lat = result["conditions"], result["latency"]
    lines = [
        f"WebSocket benchmark, {c['date']}: {c['cpu']}, {c['cores']} cores, Python "
        f"{c['python']}; {c['orders']:,} post-only `order.place` requests open loop at "
        f"{c['rate_per_s']:,}/s (answers of {lat['answer_bytes']} bytes); the venue on CPU "
        f"{c['server_cpu']}, journal durability `{c['durability']}`.",
        "",
        "| client | round trip | p50 µs | p99 µs | p99.9 µs | max µs | p50 / floor | p99 / floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, where in (("one_core", "on the venue's core"), ("across_cores", "other core")):
        r = lat[key]
        for name, row, ratios in (("order → ack", r["order_ack"], True),
                                  ("picows echo floor", r["echo_floor"], False)):  # fmt: skip
            p50 = r["p50_over_floor"] if ratios else "1.0"
            p99 = r["p99_over_floor"] if ratios else "1.0"
            lines.append(f"| {where} | {name} | {row['p50_us']} | {row['p99_us']} | "
                         f"{row['p999_us']} | {row['max_us']} | {p50} | {p99} |")  # fmt: skip
    lines += ["", f"Throughput, clients on CPU {c['client_cpu']}:", "",
              "| clients | orders per request | orders | in flight per client | orders/s "
              "| error answers |",
              "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for tp in result["throughput"]:
        lines.append(f"| {tp['clients']} | {tp['orders_per_request']} | {tp['orders']:,} | "
                     f"{tp['window']} | {tp['orders_per_s']:,} | {tp['errors']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.ws",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="throughput clients")
    parser.add_argument("--throughput-orders", type=int, default=50_000, help="per client")
    parser.add_argument("--window", type=int, default=256, help="orders in flight per client")
    parser.add_argument("--batch", type=int, default=20, help="orders per order.batch request")
    latency_arguments(parser, orders=20_000, warmup=2_000, rate=2_000)
    output_arguments(parser, "ws")
    args = parser.parse_args(argv)
    args.data_root.mkdir(parents=True, exist_ok=True)
    emit(run(args), args, report)


if __name__ == "__main__":
    main()
