"""Engine-stage benchmark: command ring → sequencer → journal → core → subscribers.

The mixed flow of the core benchmark goes through `EngineRuntime` as the
server runs it, for each journal durability mode:

* throughput: the ring kept full, batches of up to BATCH commands;
* latency, open loop: commands arrive on a fixed schedule (each has a planned
  arrival time, so a slow step delays the ones behind it and that delay is
  counted); each loop iteration queues what has arrived and runs one step;
  a command's latency is from its planned arrival to the publication of its
  events (HDR histogram);
* restart: how long a new runtime takes to recover the venue from its data
  directory (the newest snapshot plus the journal after it), and from the
  journal alone.

Each mode also runs with the engine in a process of its own (`--engine-process`)
on the pinned CPU, this process playing the gateways' side on another core:
latency then runs to the arrival of a command's last event on that side.

Beside them, the core alone on the same commands (`apply_batch`).
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.core import batch_run
from bench.flow import mixed_flow
from bench.report import emit, machine, output_arguments
from engine import history, placement
from engine.engine import Engine
from engine.engine_process import EngineProcess
from engine.journal import Durability
from engine.records import EVENT_DTYPE
from engine.runtime import EngineRuntime
from engine.server import ServeOptions
from ext.core import COMMAND_SIZE, EVENT_SIZE, EventFlag

BATCH = 1024  # frames per step, as the server runs it


def _runtime(config, data_dir: Path, durability: Durability, **options) -> EngineRuntime:
    options.setdefault("history", False)  # the engine stage alone, unless asked
    return EngineRuntime(config, data_dir, durability, command_slots=1 << 20,
                         batch=BATCH, **options)  # fmt: skip


def throughput_run(config, records, data_dir: Path, durability: Durability) -> tuple[float, str]:
    """Commands/s with the command ring kept full, and the final state hash."""
    runtime = _runtime(config, data_dir, durability, snapshot_every=10**12)
    raw = records.view(np.uint8)
    chunk = 64 * BATCH
    started = time.perf_counter_ns()
    for k in range(0, len(records), chunk):
        runtime.submit(raw[k * COMMAND_SIZE : (k + chunk) * COMMAND_SIZE])
        runtime.run_pending()
    elapsed = time.perf_counter_ns() - started
    state = runtime.engine.state_hash()
    runtime.close()
    return len(records) * 1e9 / elapsed, state


def latency_run(
    config, records, data_dir: Path, durability: Durability, rate: int, history: bool = False
) -> dict:
    """Open-loop latency (ns) from planned arrival to published events."""
    runtime = _runtime(config, data_dir, durability, snapshot_every=10**12, history=history)
    if history:
        time.sleep(1.0)  # let the history process start
    raw = records.view(np.uint8)
    n = len(records)
    interval_ns = 1e9 / rate
    latencies = np.zeros(n, dtype=np.int64)
    batch_sizes = []
    start = time.perf_counter_ns()
    sent = 0
    clock = time.perf_counter_ns
    while sent < n:
        now = clock()
        due = min(n, int((now - start) / interval_ns) + 1)
        if due > sent:
            runtime.submit(raw[sent * COMMAND_SIZE : due * COMMAND_SIZE])
            runtime.run_pending()
            done = clock()
            planned = start + np.arange(sent, due) * interval_ns
            latencies[sent:due] = done - planned
            batch_sizes.append(due - sent)
            sent = due
    runtime.close()
    return {**_percentiles(latencies, rate), "median_batch": int(statistics.median(batch_sizes))}


def _percentiles(latencies: np.ndarray, rate: int) -> dict:
    histogram = HdrHistogram(1, 60 * 10**9, 3)
    for value in latencies.tolist():
        histogram.record_value(max(value, 1))
    return {
        "rate_cmds_per_s": rate,
        "p50_ns": histogram.get_value_at_percentile(50),
        "p99_ns": histogram.get_value_at_percentile(99),
        "p999_ns": histogram.get_value_at_percentile(99.9),
        "max_ns": histogram.get_max_value(),
    }


def _engine_process(config, data_dir: Path, durability: Durability, cpu: int) -> EngineProcess:
    options = ServeOptions(data_dir=data_dir, durability=durability, command_slots=1 << 16,
                           snapshot_every=10**12, history=False)  # fmt: skip
    engine = EngineProcess(config, options, cpu)
    engine.wait_ready()
    return engine


def remote_run(config, records, data_dir: Path, durability: Durability, cpu: int,
               rate: int | None = None):  # fmt: skip
    """The same through an engine in its own process on `cpu`, this process being
    the gateways' side: commands/s with the ring kept full (rate None), or the
    open-loop latency (ns) from planned arrival to the arrival of a command's
    last event here."""
    engine = _engine_process(config, data_dir, durability, cpu)
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {placement.other_cpu(cpu)})  # the gateways' side, another core
    raw = records.view(np.uint8)
    n = len(records)
    arrived = np.zeros(n, dtype=np.int64)
    clock = time.perf_counter_ns
    interval_ns = 1e9 / rate if rate else 0.0
    sent = done = 0
    start = clock()
    while done < n:
        due = n if rate is None else min(n, int((clock() - start) / interval_ns) + 1)
        if due > sent:
            sent += engine.submit(raw[sent * COMMAND_SIZE : due * COMMAND_SIZE])
        batch = engine.take_events()
        if batch:
            events = np.frombuffer(batch, EVENT_DTYPE)
            last = events["seq"][(events["flags"] & EventFlag.FLAG_LAST) != 0] - 1
            arrived[last] = clock()
            done += len(last)
    elapsed = clock() - start
    engine.stop()
    os.sched_setaffinity(0, pinned)
    if rate is None:
        return n * 1e9 / elapsed
    return _percentiles(arrived - (start + np.arange(n) * interval_ns).astype(np.int64), rate)


def history_ingest_run(config, records, data_dir: Path) -> float:
    """Commands/s the history writer stores (their events, 4,096 per transaction)."""
    engine = Engine(config)
    raw = engine.apply_batch(records).tobytes()
    data_dir.mkdir(parents=True)
    db = history.connect(data_dir / history.FILE)
    started = time.perf_counter()
    step = 4096 * EVENT_SIZE
    for k in range(0, len(raw), step):
        history.store(db, raw[k : k + step])
    elapsed = time.perf_counter() - started
    db.close()
    return len(records) / elapsed


def restart_run(config, records, data_dir: Path) -> dict:
    """Seconds to recover after len(records) journaled commands: from a snapshot
    taken `tail` commands before the end plus the journal tail, and from the
    journal alone."""
    tail = len(records) // 20
    runtime = _runtime(config, data_dir, Durability.WRITE, snapshot_every=10**12)
    raw = records.view(np.uint8)
    head = len(records) - tail
    runtime.submit(raw[: head * COMMAND_SIZE])
    runtime.run_pending()
    runtime.take_snapshot()
    runtime.submit(raw[head * COMMAND_SIZE :])
    runtime.run_pending()
    state = runtime.engine.state_hash()
    runtime.abandon()  # a crash: no final snapshot

    started = time.perf_counter()
    recovered = _runtime(config, data_dir, Durability.WRITE)
    with_snapshot = time.perf_counter() - started
    assert recovered.engine.state_hash() == state, "recovery lost state"
    recovered.abandon()
    for path in data_dir.glob("snapshot-*.fgs"):
        path.unlink()
    started = time.perf_counter()
    replayed = _runtime(config, data_dir, Durability.WRITE)
    journal_only = time.perf_counter() - started
    assert replayed.engine.state_hash() == state, "replay lost state"
    replayed.abandon()
    return {
        "journaled_commands": len(records),
        "snapshot_behind_by": tail,
        "with_snapshot_s": round(with_snapshot, 3),
        "journal_only_s": round(journal_only, 3),
    }


def run(args) -> dict:
    engine_cpu = placement.last_cpu() if args.cpu is None else args.cpu
    if args.cpu is not None:
        placement.pin_loop_thread(args.cpu)
    config, records = mixed_flow(args.commands, args.depth, args.accounts, args.seed)
    work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
    modes = {}
    try:
        core_only, core_hash = batch_run(config, records)
        for durability in (Durability.NONE, Durability.WRITE, Durability.FSYNC):
            rates, hashes = [], set()
            for i in range(args.repeats):
                rate, state = throughput_run(config, records, work / f"{durability}-t{i}",
                                             durability)  # fmt: skip
                rates.append(rate)
                hashes.add(state)
            if hashes != {core_hash}:
                raise RuntimeError(f"{durability}: the runtime disagrees with the core")
            latency = latency_run(config, records[: args.latency_commands],
                                  work / f"{durability}-l", durability, args.rate)  # fmt: skip
            work_remote = work / f"{durability}-remote"
            remote_rate = remote_run(config, records, work_remote / "t", durability, engine_cpu)
            head = records[: args.latency_commands]
            remote_latency = remote_run(config, head, work_remote / "l", durability, engine_cpu,
                                        args.rate)  # fmt: skip
            modes[str(durability)] = {
                "cmds_per_s": round(statistics.median(rates)),
                "latency": latency,
                "engine_process": {"cmds_per_s": round(remote_rate), "latency": remote_latency},
            }
        with_history = latency_run(config, records[: args.latency_commands], work / "h",
                                   Durability.WRITE, args.history_rate, history=True)  # fmt: skip
        ingest = history_ingest_run(config, records[: args.latency_commands], work / "hi")
        restart = restart_run(config, records, work / "restart")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    none_p50 = modes["none"]["latency"]["p50_ns"]
    return {
        "conditions": {
            **machine(),
            "pinned_cpu": args.cpu,
            "placement": "in-process",
            "commands": args.commands,
            "latency_commands": args.latency_commands,
            "resting_orders": args.depth,
            "accounts": args.accounts,
            "batch_size": BATCH,
            "seed": args.seed,
            "repeats": args.repeats,
            "data_root": str(args.data_root),
        },  # fmt: skip
        "core_only_cmds_per_s": round(core_only),
        "modes": modes,
        "write_p50_over_none": round(modes["write"]["latency"]["p50_ns"] / none_p50, 3),
        "fsync_p50_over_none": round(modes["fsync"]["latency"]["p50_ns"] / none_p50, 3),
        "write_with_history_latency": with_history,
        "history_ingest_cmds_per_s": round(ingest),
        "restart": restart,
    }


def report(result: dict) -> str:
    c = result["conditions"]
    lines = [
        f"Engine benchmark, {c['date']}: {c['cpu']}, {c['cores']} cores, Linux {c['kernel']}, "
        f"Python {c['python']}, pinned to CPU {c['pinned_cpu']}, placement {c['placement']}, "
        f"journal on {c['data_root']}.",
        "",
        f"Mixed flow: {c['commands']:,} commands (throughput, median of {c['repeats']}), "
        f"first {c['latency_commands']:,} open loop at "
        f"{result['modes']['none']['latency']['rate_cmds_per_s']:,} commands/s (latency); "
        f"steps of up to {c['batch_size']} commands.",
        "",
        "| journal | commands/s | p50 µs | p99 µs | p99.9 µs | max µs | median batch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, r in result["modes"].items():
        for name, m in ((mode, r), (f"{mode}, engine process", r["engine_process"])):
            lat = m["latency"]
            lines.append(
                f"| {name} | {m['cmds_per_s']:,} | {lat['p50_ns'] / 1000:.1f} | "
                f"{lat['p99_ns'] / 1000:.1f} | {lat['p999_ns'] / 1000:.1f} | "
                f"{lat['max_ns'] / 1000:.1f} | {lat.get('median_batch', '')} |"
            )
    restart = result["restart"]
    hist = result["write_with_history_latency"]
    lines += [
        f"| write, history process on, {hist['rate_cmds_per_s']:,}/s "
        f"| | {hist['p50_ns'] / 1000:.1f} | "
        f"{hist['p99_ns'] / 1000:.1f} | {hist['p999_ns'] / 1000:.1f} | "
        f"{hist['max_ns'] / 1000:.1f} | {hist['median_batch']} |",
        f"| core alone (`apply_batch`) | {result['core_only_cmds_per_s']:,} | | | | | |",
        "",
        f"p50 over `none`: write {result['write_p50_over_none']}x, "
        f"fsync {result['fsync_p50_over_none']}x. The history process stores "
        f"{result['history_ingest_cmds_per_s']:,} commands/s of this flow; above that it "
        "falls behind (bounded backlog, completed from the journal at the next start).",
        "",
        f"Restart after {restart['journaled_commands']:,} journaled commands: "
        f"{restart['with_snapshot_s']} s from a snapshot {restart['snapshot_behind_by']:,} "
        f"commands behind plus the journal tail; {restart['journal_only_s']} s from the "
        "journal alone.",
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--latency-commands", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=100_000, help="open-loop commands/s")
    parser.add_argument("--history-rate", type=int, default=20_000,
                        help="open-loop commands/s with the history process on")  # fmt: skip
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=None, help="pin the benchmark to this CPU")
    parser.add_argument("--data-root", type=Path, default=Path("build"),
                        help="where the journals are written (a real disk, not tmpfs)")  # fmt: skip
    output_arguments(parser, "engine")
    return parser


def main(argv=None):
    args = parser().parse_args(argv)
    args.data_root.mkdir(parents=True, exist_ok=True)
    emit(run(args), args, report)


if __name__ == "__main__":
    main()
