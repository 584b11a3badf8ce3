"""Authentication benchmark: what verifying one signed request costs, per key
type, through the whole check (window, key, signature, replay cache, rate
limit, permission), and what one rate-limiter decision costs.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import emit, machine, output_arguments
from engine.config import LimitsConfig
from gateways.auth.keys import KeyStore
from gateways.auth.limits import RateLimiter
from gateways.auth.verify import Authenticator, canonical, sign

BODY = b'{"symbol":"BTC-USDT","side":"buy","type":"limit","price":"50000.5","qty":"0.001"}'


def verify_run(key_type: str, n: int, data_dir: Path) -> float:
    """Microseconds per verified request (median of 5 passes)."""
    store = KeyStore(data_dir)
    key, secret = store.create(1, key_type)
    limits = LimitsConfig(key_rate=10**9, key_burst=10**9)  # measure the checks, not refusals
    now_ms = time.time_ns() // 1_000_000
    requests = []
    for i in range(n):
        payload = canonical(now_ms, f"n{i}", "POST", "/v1/orders", BODY)
        requests.append((f"n{i}", sign(key_type, secret, payload), payload))
    passes = []
    for _ in range(5):
        auth = Authenticator(store, limits, wall_clock=lambda: now_ms * 1_000_000)
        started = time.perf_counter_ns()
        for nonce, signature, payload in requests:
            auth.verify(key.key_id, now_ms, nonce, signature, payload, "127.0.0.1", "trade")
        passes.append((time.perf_counter_ns() - started) / n / 1000)
    store.close()
    return round(statistics.median(passes), 2)


def limiter_run(n: int) -> float:
    """Nanoseconds per rate-limiter decision over 1,000 keys."""
    limiter = RateLimiter(LimitsConfig())
    keys = [f"k{i}" for i in range(1000)]
    started = time.perf_counter_ns()
    for i in range(n):
        limiter.request(keys[i % 1000], "127.0.0.1")
    return round((time.perf_counter_ns() - started) / n)


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as work:
        return {
            "conditions": {**machine(), "requests": args.requests},
            "ed25519_verify_us": verify_run("ed25519", args.requests, Path(work) / "e"),
            "hmac_verify_us": verify_run("hmac-sha256", args.requests, Path(work) / "h"),
            "limiter_check_ns": limiter_run(args.requests * 10),
        }


def report(result: dict) -> str:
    c = result["conditions"]
    return "\n".join([
        f"Authentication benchmark, {c['date']}: {c['cpu']}, Python {c['python']}; "
        f"{c['requests']:,} signed requests per pass, median of 5 passes.",
        "",
        "| check | cost |",
        "|---|---:|",
        f"| verify a request, Ed25519 key | {result['ed25519_verify_us']} µs |",
        f"| verify a request, HMAC-SHA256 key | {result['hmac_verify_us']} µs |",
        f"| one rate-limiter decision | {result['limiter_check_ns']} ns |",
    ])  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.auth",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--requests", type=int, default=20_000)
    output_arguments(parser, "auth")
    args = parser.parse_args(argv)
    emit(run(args), args, report)


if __name__ == "__main__":
    main()
