"""What every benchmark shares: the conditions it states, and where and how
it writes its result (JSON in bench/results/, Markdown or JSON on stdout)."""

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ext import core

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """What every benchmark report states about where it ran."""
    import Cython
    import msgspec

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cython": Cython.__version__,
        "numpy": np.__version__,
        "msgspec": msgspec.__version__,
        "checked_build": core.CHECKED,
    }


def output_arguments(parser, name: str):
    parser.add_argument("--output", type=Path, default=RESULTS / f"{name}.json")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of Markdown")


def emit(result: dict, args, report) -> None:
    """Write the result to args.output and print it (Markdown unless --json)."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else report(result))


# The venue the end-to-end benchmarks run: no budget or cap of the demo's gets
# in the way of a measurement.
UNLIMITED = {
    "limits": {"order_rate": 10**7, "order_burst": 10**7, "key_rate": 10**6,
               "key_burst": 10**6, "ip_rate": 10**7, "ip_burst": 10**7,
               "max_connections_per_ip": 1000},
    "risk": {"max_open_orders_per_account": 10**6},
}  # fmt: skip


def latency_arguments(parser, orders: int, warmup: int, rate: int):
    """What every open-loop latency benchmark takes."""
    parser.add_argument("--orders", type=int, default=orders, help="per latency run")
    parser.add_argument("--warmup", type=int, default=warmup, help="orders before each run")
    parser.add_argument("--rate", type=int, default=rate, help="orders per second, open loop")
    parser.add_argument("--data-root", type=Path, default=Path("build"))
