"""Metrics in the Prometheus text format, read when scraped.

The hot path keeps only what it must: the core counts commands and rejections
in C arrays, the journal its bytes and fsync time, and the runtime times its
stages on one step in STAGE_SAMPLE. Everything else is read at scrape time.
"""

import asyncio
import bisect
import time

from engine import messages as m
from ext.core import Result

STAGE_SAMPLE = 16  # time the stages of one step in this many
STAGES = ("sequence", "journal", "apply", "publish")
BUCKETS_S = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1, 1.0)


class Histogram:
    """Cumulative-bucket histogram of durations in seconds."""

    def __init__(self):
        self.counts = [0] * (len(BUCKETS_S) + 1)
        self.total = 0.0

    def observe_ns(self, ns: int):
        seconds = ns / 1e9
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total += seconds

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*BUCKETS_S, "+Inf"), self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels},le="{bound}"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.total:.9f}")
        out.append(f"{name}_count{{{labels}}} {running}")
        return out


class StageTimer:
    """Per-stage durations of sampled steps."""

    def __init__(self):
        self.histograms = {stage: Histogram() for stage in STAGES}
        self.steps = 0

    def sampling(self) -> bool:
        self.steps += 1
        return self.steps % STAGE_SAMPLE == 0

    def record(self, marks: list[int]):
        """marks: perf_counter_ns before the first stage and after each one."""
        for stage, start, end in zip(STAGES, marks, marks[1:], strict=False):
            self.histograms[stage].observe_ns(end - start)


def render(runtime) -> str:
    """The venue's metrics now, as Prometheus text exposition."""
    commands, rejects, trades = runtime.engine.core.counters()
    out = [
        "# HELP flowgate_commands_total Commands applied, by type, since this process started.",
        "# TYPE flowgate_commands_total counter",
    ]
    for code, count in sorted(commands.items()):
        name = m.COMMAND_NAMES.get(code, "invalid")
        out.append(f'flowgate_commands_total{{type="{name}"}} {count}')
    out += [
        "# HELP flowgate_rejects_total Commands rejected, by error code, since this process "
        "started.",
        "# TYPE flowgate_rejects_total counter",
    ]
    for code, count in sorted(rejects.items()):
        out.append(f'flowgate_rejects_total{{code="{Result(code).name}"}} {count}')
    journal, history = runtime.journal, runtime.history
    gauges = [
        ("flowgate_trades", "Trades since the venue's first command.", trades),
        ("flowgate_sequence", "Sequence number of the last command applied.", runtime.seq),
        ("flowgate_command_ring_depth", "Commands waiting for the engine.", len(runtime.commands)),
        ("flowgate_command_ring_capacity", "Slots of the command ring.",
         runtime.commands.capacity),
        ("flowgate_snapshot_sequence", "Sequence number of the last snapshot taken.",
         runtime.snapshot_seq),
        ("flowgate_history_backlog_events", "Events waiting to enter the history's ring.",
         history.backlog_events if history else 0),
        ("flowgate_time_seconds", "Wall clock at the scrape.", round(time.time(), 3)),
    ]  # fmt: skip
    for name, text, value in gauges:
        out += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
    out += [
        "# HELP flowgate_journal_bytes_total Bytes of frames committed to the journal.",
        "# TYPE flowgate_journal_bytes_total counter",
        f"flowgate_journal_bytes_total {journal.bytes_written}",
        "# HELP flowgate_journal_fsync_seconds_total Time spent in fdatasync (fsync mode).",
        "# TYPE flowgate_journal_fsync_seconds_total counter",
        f"flowgate_journal_fsync_seconds_total {journal.fsync_ns / 1e9:.9f}",
        f"# HELP flowgate_stage_seconds Time of each engine stage, on one step in {STAGE_SAMPLE}.",
        "# TYPE flowgate_stage_seconds histogram",
    ]
    for stage, histogram in runtime.stage_timer.histograms.items():
        out += histogram.lines("flowgate_stage_seconds", f'stage="{stage}"')
    return "\n".join(out) + "\n"


MAX_REQUEST = 8192


class _MetricsHttp(asyncio.Protocol):
    """HTTP/1.1 with one answer per connection: GET /metrics, or an error."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.request = bytearray()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.request += data
        if b"\r\n\r\n" not in self.request:
            if len(self.request) > MAX_REQUEST:
                self.answer(431, "request too large\n")
            return
        line = bytes(self.request.split(b"\r\n", 1)[0]).split()
        if len(line) != 3 or not line[2].startswith(b"HTTP/1."):
            self.answer(400, "bad request\n")
        elif line[1].split(b"?", 1)[0] != b"/metrics":
            self.answer(404, "not found: only /metrics is served here\n")
        elif line[0] != b"GET":
            self.answer(405, "method not allowed\n")
        else:
            self.answer(200, render(self.runtime))

    def answer(self, status: int, body: str):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large"}[status]  # fmt: skip
        payload = body.encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")  # fmt: skip
        self.transport.write(head.encode() + payload)
        self.transport.close()


async def serve(runtime, port: int) -> asyncio.Server:
    """The metrics endpoint, on loopback."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _MetricsHttp(runtime), "127.0.0.1", port)
