"""Core benchmark: the mixed flow through the batch path and one Python call per
command, per-command latency percentiles, Python allocations, the pure-Python
reference, and nanobook / liquibook on the operations they support.

    python -m bench.core [--commands N] [--cpu K] [--json]

Writes bench/results/core.json and prints a Markdown report. Every run checks
its own results: the batch and per-call paths must end in the same state hash,
equal to the reference's on the prefix the reference runs.
"""

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np
from hdrh.histogram import HdrHistogram

from bench import competitors
from bench.flow import mixed_flow
from bench.report import emit, machine, output_arguments
from engine import config as venue_config
from engine.engine import Engine, state_hash
from engine.records import COMMAND_DTYPE, decode_command
from ext import core

CMD = core.CommandType
BATCH = 1024  # commands per apply_batch call, as the runtime drains its ring
LIMIT = int(core.OrderType.TYPE_LIMIT)
GTC, IOC = int(core.TimeInForce.TIF_GTC), int(core.TimeInForce.TIF_IOC)


def _timed_ns(loop) -> int:
    """Wall time of loop() in ns, with the cyclic garbage collector off."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        loop()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def batch_run(config, records) -> tuple[float, str]:
    """Commands/s through apply_batch in ring-sized batches, and the final state hash."""
    engine = Engine(config)
    raw = records.view(np.uint8)
    width = records.dtype.itemsize * BATCH
    batches = [raw[k : k + width] for k in range(0, len(raw), width)]
    apply, clear = engine.core.apply_batch, engine.core.clear_events

    def loop():
        for batch in batches:
            apply(batch)
            clear()  # the runtime hands each batch's events on, then reuses the buffer

    return len(records) * 1e9 / _timed_ns(loop), engine.state_hash()


def per_call_run(config, records) -> tuple[float, str]:
    """Commands/s with one Python call per command, and the final state hash."""
    engine = Engine(config)
    c = engine.core
    place, cancel, amend = c.place, c.cancel, c.amend
    calls = []
    fields = ["ts_ns", "order_id", "price", "qty", "account", "instrument", "type", "side",
              "order_type", "tif"]  # fmt: skip
    for row in zip(*(records[f].tolist() for f in fields), strict=True):
        ts, order_id, price, qty, account, instrument, kind, side, otype, tif = row
        if kind == CMD.CMD_PLACE:
            calls.append((place, (ts, account, instrument, side, otype, tif, price, qty)))
        elif kind == CMD.CMD_CANCEL:
            calls.append((cancel, (ts, account, order_id)))
        elif kind == CMD.CMD_AMEND:
            calls.append((amend, (ts, account, order_id, price, qty)))
        else:
            raise ValueError("the mixed flow only places, cancels and amends")

    def loop():
        for method, args in calls:
            method(*args)

    return len(records) * 1e9 / _timed_ns(loop), engine.state_hash()


def reference_run(config, records) -> tuple[float, str, str]:
    """Commands/s of the pure-Python reference, its state hash, and the core's on the
    same commands."""
    from tests.reference.model import ReferenceEngine

    reference = ReferenceEngine(config)
    commands = [(decode_command(r), int(r["ts_ns"])) for r in records]
    start = time.perf_counter_ns()
    for command, ts in commands:
        reference.apply(command, ts)
    elapsed = time.perf_counter_ns() - start
    engine = Engine(config)
    engine.apply_batch(records)
    return len(records) * 1e9 / elapsed, state_hash(reference.state_ints()), engine.state_hash()


def latency_run(config, records) -> dict:
    """Per-command apply time on the batch path, from an HDR histogram (ns)."""
    engine = Engine(config)
    raw = records.view(np.uint8)
    elapsed = np.zeros(len(records), dtype=np.int64)
    size = records.dtype.itemsize
    for k in range(0, len(records), BATCH):
        engine.core.apply_batch_timed(raw[k * size : (k + BATCH) * size], elapsed[k : k + BATCH])
        engine.core.clear_events()
    histogram = HdrHistogram(1, 10**9, 3)
    for value in elapsed.tolist():
        histogram.record_value(max(value, 1))
    return {
        "p50_ns": histogram.get_value_at_percentile(50),
        "p90_ns": histogram.get_value_at_percentile(90),
        "p99_ns": histogram.get_value_at_percentile(99),
        "p999_ns": histogram.get_value_at_percentile(99.9),
        "max_ns": histogram.get_max_value(),
        "clock_overhead_ns": _clock_overhead_ns(),
    }


def _clock_overhead_ns() -> int:
    """What the timing itself adds per command: an empty batch of TICK commands."""
    engine = Engine(venue_config.demo(accounts=1))
    ticks = np.zeros(100_000, dtype=COMMAND_DTYPE)
    ticks["type"] = CMD.CMD_TICK
    elapsed = np.zeros(len(ticks), dtype=np.int64)
    engine.core.apply_batch_timed(ticks.view(np.uint8), elapsed)
    return int(np.median(elapsed))


def allocation_run(config, records) -> dict:
    """Python memory traced while the batch path runs, after a warm-up batch.

    The batch loop runs without the GIL, so it cannot create Python objects; this
    shows it: the traced peak does not grow with the number of commands.
    """
    engine = Engine(config)
    raw = records.view(np.uint8)
    size = records.dtype.itemsize
    warm, rest = raw[: BATCH * size], raw[BATCH * size :]
    engine.core.apply_batch(warm)
    engine.core.clear_events()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    engine.core.apply_batch(rest)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine.core.clear_events()
    return {
        "commands": len(records) - BATCH,
        "traced_bytes_retained": after - before,
        "traced_peak_growth_bytes": peak - before,
    }


class FlowgateAdapter:
    """The competitor streams through MatchingCore's one-call-per-command API.

    Buys come from account 1 and sells from account 2, so self-trade prevention
    never fires; fees are zero like the other books'.
    """

    name = "flowgate"
    version = "this tree"

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reset()

    def reset(self):
        self.core = core.MatchingCore(2, 2, 1, self.capacity, 0, self.capacity)
        mid = competitors.MID_PRICE
        self.core.configure_instrument(0, 0, 1, 1, 1, 1, 10**6, 0, 10**18, 10 * mid, mid, 0)
        for account in (1, 2):
            self.core.configure_account(account, 0, 0)
            self.core.credit(account, 0, 10**17)
            self.core.credit(account, 1, 10**17)

    def _side(self, side):
        return core.Side.SIDE_BUY if side == competitors.BUY else core.Side.SIDE_SELL

    def place(self, side, price, qty):
        s = self._side(side)
        self.core.place(0, s, 0, s, LIMIT, GTC, price, qty)
        return self.core.next_order_id - 1

    def prepare(self, action, ops, handles):
        # per operation only what varies, as the other adapters do; buys come
        # from account 1 and sells from account 2, so the side names the account
        if action == competitors.CANCEL:
            return [(int(self._side(side)), handles[ref]) for _, _, ref, side, _, _ in ops]
        return [(int(self._side(side)), price, qty) for _, _, _, side, price, qty in ops]

    def execute(self, action, args):
        ts = 1  # one timestamp for the stream, as the sequencer stamps a drained batch
        if action == competitors.CANCEL:
            cancel = self.core.cancel
            for account, order_id in args:
                cancel(ts, account, order_id)
            return
        place = self.core.place
        tif = GTC if action == competitors.LIMIT else IOC
        for side, price, qty in args:
            place(ts, side, 0, side, LIMIT, tif, price, qty)

    def resting(self):
        levels = self.core.book(0, core.Side.SIDE_BUY) + self.core.book(0, core.Side.SIDE_SELL)
        return sum(len(ids) for _, _, ids in levels), sum(total for _, total, _ in levels)

    def trade_count(self):
        return self.core.next_trade_id - 1


def compare_books(streams: dict, capacity: int, repeats: int) -> dict:
    """Each other book's ops/s beside ours on each stream: the median of `repeats`
    replays (after one warm-up replay each), the books taking turns replay by
    replay, so a slow spell of the machine falls on all of them alike."""
    ours = FlowgateAdapter(capacity)
    others = [competitors.NanobookAdapter(), competitors.LiquibookAdapter()]
    rates = {}
    for op, stream in streams.items():
        for repeat in range(repeats):
            for book in (ours, *others):
                rate = competitors.run_stream(book, stream, warmup=repeat == 0)
                rates.setdefault((book.name, op), []).append(rate)
    out = {}
    for book in others:
        out[book.name] = {"version": book.version}
        for op in streams:
            them = statistics.median(rates[book.name, op])
            us = statistics.median(rates[ours.name, op])
            out[book.name][op] = {
                "them_ops_per_s": round(them),
                "flowgate_ops_per_s": round(us),
                "ratio": round(us / them, 2),
            }
    return out


def competitor_run(n_ops: int, depth: int, deep_ops: int, seed: int, repeats: int) -> dict:
    """The other books on the mixed flow's book (cancels and takers in rounds of
    `depth` resting orders), then cancels and takers on a deep book of `deep_ops`."""
    streams = competitors.operation_streams(n_ops, depth, seed, book_orders=depth)
    out = compare_books(streams, n_ops + depth + 16, repeats)
    deep = competitors.operation_streams(deep_ops, 0, seed)
    del deep["insert"]  # inserting does not depend on the book's depth
    out["deep_book"] = compare_books(deep, deep_ops + 16, repeats)
    return out


def conditions(args) -> dict:
    return {
        **machine(),
        "pinned_cpu": args.cpu,
        "commands": args.commands,
        "resting_orders": args.depth,
        "accounts": args.accounts,
        "batch_size": BATCH,
        "reference_commands": args.reference_commands,
        "competitor_ops": args.competitor_ops,
        "deep_book_orders": args.deep_ops,
        "seed": args.seed,
        "repeats": args.repeats,
    }


def run(args) -> dict:
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    config, records = mixed_flow(args.commands, args.depth, args.accounts, args.seed)
    batch = [batch_run(config, records) for _ in range(args.repeats)]
    per_call = [per_call_run(config, records) for _ in range(args.repeats)]
    hashes = {h for _, h in batch + per_call}
    if len(hashes) != 1:
        raise RuntimeError(f"batch and per-call runs disagree on the final state: {hashes}")
    prefix = records[: args.reference_commands]
    reference_rate, reference_hash, core_hash = reference_run(config, prefix)
    if reference_hash != core_hash:
        raise RuntimeError("the core and the reference disagree on the mixed flow")
    result = {
        "conditions": conditions(args),
        "batch_cmds_per_s": round(statistics.median(r for r, _ in batch)),
        "per_call_cmds_per_s": round(statistics.median(r for r, _ in per_call)),
        "reference_cmds_per_s": round(reference_rate),
        "state_hash": hashes.pop(),
        "latency": latency_run(config, records),
        "python_allocations": allocation_run(config, records),
    }
    result.update(
        competitor_run(args.competitor_ops, args.depth, args.deep_ops, args.seed, args.repeats)
    )
    return result


def report(result: dict) -> str:
    c = result["conditions"]
    lat = result["latency"]
    alloc = result["python_allocations"]
    lines = [
        f"Core benchmark, {c['date']}: {c['cpu']}, {c['cores']} cores, Linux {c['kernel']}, "
        f"Python {c['python']}, Cython {c['cython']}, numpy {c['numpy']}, "
        f"pinned to CPU {c['pinned_cpu']}, {'checked' if c['checked_build'] else 'release'} build.",
        "",
        f"Mixed flow: {c['commands']:,} commands, ~{c['resting_orders']:,} resting orders, "
        f"{c['accounts']:,} accounts, seed {c['seed']}; median of {c['repeats']} runs.",
        "",
        "| path | commands/s |",
        "|---|---:|",
        f"| batch (`apply_batch`, {c['batch_size']} per call) | {result['batch_cmds_per_s']:,} |",
        f"| one Python call per command | {result['per_call_cmds_per_s']:,} |",
        f"| pure-Python reference (first {c['reference_commands']:,}) "
        f"| {result['reference_cmds_per_s']:,} |",
        "",
        "Per-command apply time on the batch path (HDR histogram, ns; includes "
        f"~{lat['clock_overhead_ns']} ns of clock reads):",
        "",
        "| p50 | p90 | p99 | p99.9 | max |",
        "|---:|---:|---:|---:|---:|",
        f"| {lat['p50_ns']:,} | {lat['p90_ns']:,} | {lat['p99_ns']:,} | {lat['p999_ns']:,} "
        f"| {lat['max_ns']:,} |",
        "",
        f"Python allocations on the batch path: over {alloc['commands']:,} commands the traced "
        f"peak grew by {alloc['traced_peak_growth_bytes']} bytes and "
        f"{alloc['traced_bytes_retained']} bytes stayed allocated.",
        "",
        f"Other books, one Python call per operation, ops/s, the median of {c['repeats']} "
        "replays taking turns. On the mixed flow's book: inserts into a book of "
        f"{c['resting_orders']:,} resting orders, cancels and takers in rounds of "
        f"{c['resting_orders']:,} resting orders ({c['competitor_ops']:,} operations each):",
        "",
    ]
    lines += _book_table(result, ("insert", "cancel", "aggressive"))
    lines += [
        "",
        f"On a deep book: cancels and takers of {c['deep_book_orders']:,} orders all resting "
        "at once (memory-bound: the book no longer fits in the CPU's caches):",
        "",
    ]
    lines += _book_table(result["deep_book"], ("cancel", "aggressive"))
    nb, lb = result["nanobook"], result["liquibook"]
    lines += ["", f"nanobook {nb['version']}, liquibook {lb['version']}."]
    return "\n".join(lines)


def _book_table(books: dict, ops) -> list[str]:
    nb, lb = books["nanobook"], books["liquibook"]
    lines = [
        "| operation | nanobook | liquibook | Flowgate | vs nanobook | vs liquibook |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for op in ops:
        lines.append(
            f"| {op} | {nb[op]['them_ops_per_s']:,} | {lb[op]['them_ops_per_s']:,} "
            f"| {nb[op]['flowgate_ops_per_s']:,} | {nb[op]['ratio']}x | {lb[op]['ratio']}x |"
        )
    return lines


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--reference-commands", type=int, default=100_000)
    parser.add_argument("--competitor-ops", type=int, default=200_000)
    parser.add_argument(
        "--deep-ops", type=int, default=100_000, help="resting orders of the deep-book comparison"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=None, help="pin the benchmark to this CPU")
    output_arguments(parser, "core")
    return parser


def main(argv=None):
    args = parser().parse_args(argv)
    emit(run(args), args, report)


if __name__ == "__main__":
    sys.exit(main())
