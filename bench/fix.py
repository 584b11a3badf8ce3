"""FIX benchmark: NewOrderSingle → ExecutionReport round trips through the
real server, open loop, beside the WebSocket order → ack of the same run.

One FIX session (logged on with its Ed25519 key) on the other core sends
pre-encoded NewOrderSingle messages (post-only, resting) at a fixed rate;
each round trip runs from the order's planned send time to the arrival of
its ExecutionReport (HDR histogram), after a warm-up. The WebSocket row is
`bench.ws`'s order → ack, measured the same way in the same run.
"""

import argparse
import ctypes
import json
import os
import shutil
import tempfile
from pathlib import Path

from bench import ws
from bench.placement import PR_SET_TIMERSLACK, drive
from bench.report import UNLIMITED, emit, latency_arguments, machine, output_arguments
from ext.fix import FixReader, encode
from tests.fix_client import FixClient, now_timestamp
from tests.server import ServerProcess, configured_venue, credentials


def new_orders(sender: str, first_seq: int, n: int) -> list[bytes]:
    sending_time = now_timestamp()
    out = []
    for i in range(n):
        p = ws.order_params(i)
        side = 1 if p["side"] == "buy" else 2
        fields = [(11, f"b{first_seq + i}"), (55, p["symbol"]), (54, side), (38, p["qty"]),
                  (40, 2), (44, p["price"]), (59, 1), (18, "6")]  # fmt: skip
        out.append(encode("D", sender, "FLOWGATE", first_seq + i, sending_time, fields))
    return out


ANSWERS = (b"8", b"9", b"3")  # ExecutionReport, OrderCancelReject, Reject


def reports_complete():
    """A complete() for one session: its answers (heartbeats skipped); the
    reader keeps what is not a whole message yet."""
    reader = FixReader()

    def complete(buffer: bytes) -> tuple[list[dict], bytes]:
        return [m for m in reader.feed(buffer) if isinstance(m, dict) and m[35] in ANSWERS], b""

    return complete


def fix_latency(server: ServerProcess, args) -> dict:
    session = FixClient(server.fix_port, "BENCH", credentials(server, 2), timeout=30)
    session.send("A", [(98, 0), (108, 30), (141, "Y")])
    session.expect("A")
    orders = new_orders("BENCH", session.seq, args.warmup + args.orders)
    sock = session.sock
    drive(_Borrowed(sock), orders[: args.warmup], args.rate, reports_complete())
    result = drive(_Borrowed(sock), orders[args.warmup :], args.rate, reports_complete())
    sock.close()
    return result


class _Borrowed:
    """One socket lent to drive() for several runs: its close() is ignored."""

    def __init__(self, sock):
        self.sock = sock

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def close(self):
        pass


def run(args) -> dict:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[-1], cpus[0]
    work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
    data = work / "venue"
    venue = configured_venue(data, UNLIMITED)
    entries = json.loads((data / "demo-credentials.json").read_text())
    ws_key = next(e for e in entries if e["account"] == 3 and e["type"] == "ed25519")
    server = ServerProcess(data, *venue, "--cpu", str(server_cpu), "--snapshot-every",
                           str(10**9))  # fmt: skip
    try:
        os.sched_setaffinity(0, {client_cpu})
        latency = {"fix": fix_latency(server, args)}
        frames = ws.orders(args.warmup + args.orders)
        drive(ws.logged_on(server.ws_port, ws_key), frames[: args.warmup], args.rate,
              ws.split_frames)  # fmt: skip
        session = ws.logged_on(server.ws_port, ws_key)
        latency["websocket"] = drive(session, frames[args.warmup :], args.rate,
                                     ws.split_frames)  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        os.sched_setaffinity(0, cpus)
    return {
        "conditions": {
            **machine(),
            "orders": args.orders,
            "warmup": args.warmup,
            "rate_per_s": args.rate,
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
        },  # fmt: skip
        "latency": latency,
        "fix_p50_over_ws": round(latency["fix"]["p50_us"] / latency["websocket"]["p50_us"], 2),
    }


def report(result: dict) -> str:
    c, lat = result["conditions"], result["latency"]
    lines = [
        f"FIX benchmark, {c['date']}: {c['cpu']}, {c['cores']} cores, Python {c['python']}; "
        f"{c['orders']:,} post-only orders open loop at {c['rate_per_s']:,}/s from CPU "
        f"{c['client_cpu']}, the venue on CPU {c['server_cpu']}.",
        "",
        "| order → ack | p50 µs | p99 µs | p99.9 µs | max µs | p50 / WebSocket |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = (
        ("fix", "FIX NewOrderSingle → ExecutionReport", result["fix_p50_over_ws"]),
        ("websocket", "WebSocket", 1.0),
    )
    for key, name, ratio in rows:
        r = lat[key]
        lines.append(f"| {name} | {r['p50_us']} | {r['p99_us']} | {r['p999_us']} | "
                     f"{r['max_us']} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.fix",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    latency_arguments(parser, orders=10_000, warmup=1_000, rate=1_000)
    output_arguments(parser, "fix")
    args = parser.parse_args(argv)
    args.data_root.mkdir(parents=True, exist_ok=True)
    emit(run(args), args, report)


if __name__ == "__main__":
    main()
