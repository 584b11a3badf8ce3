"""Every benchmark from one command, into one report.

    python -m bench {core,engine,ws,rest,fix,floor,all} [options]

`ws`, `rest` and `fix` run their protocol through the real server open loop
(`bench.load`) beside both transport floors of the same run (and REST and FIX
beside WebSocket, the figure they are judged against); `floor` runs the
floors alone; `core` and `engine` are `bench.core` and `bench.engine` sized by
--duration; `all` runs everything, then a rate sweep of every protocol and
floor. The report goes to bench/results/<UTC timestamp>/: results.json (all
of it), report.md (the tables and their conditions) and PNG plots; stdout
gets the Markdown, or with --json one object holding, per protocol and floor
run, its percentiles, offered and achieved rates and count.
"""

import argparse
import ctypes
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import core, engine, load, plots, ws
from bench.placement import PR_SET_TIMERSLACK, cpu_seconds, stop_echo
from bench.report import RESULTS, UNLIMITED, machine
from tests.server import ServerProcess, configured_venue

SUBCOMMANDS = ("core", "engine", "ws", "rest", "fix", "floor", "all")
# each protocol is shown over the floor nearest to it, and over WebSocket
FLOOR_OF = {"ws": "ws_echo", "rest": "tcp_echo", "fix": "tcp_echo"}
TARGETS = {"ws": ("ws_echo", 1.5), "rest": ("ws", 1.3), "fix": ("ws", 1.3)}
SUSTAINED_TARGET = 100_000
SUMMARY = ("p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us", "mean_us",
           "offered_rate", "achieved_rate", "count", "server_cpu_us", "errors",
           "check")  # fmt: skip


def parse_mix(text: str) -> dict[str, int]:
    mix = {kind: int(share) for kind, share in (part.split("=") for part in text.split(","))}
    if set(mix) - {"place", "cancel"} or not mix.get("place"):
        raise argparse.ArgumentTypeError("place=N[,cancel=M]: placements and cancels")
    return mix


def sweep_factor(text: str) -> float:
    factor = float(text)
    if factor < 1.1:  # below it, rounding a step's rate to 2 digits can give it back unchanged
        raise argparse.ArgumentTypeError("at least 1.1")
    return factor


def positive(kind):
    """An argparse type: a number above 0, else a usage error before anything starts."""

    def convert(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not above 0")
        return value

    return convert


def arguments(argv) -> argparse.Namespace:
    cpus = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("subcommand", choices=SUBCOMMANDS)
    parser.add_argument(
        "--rate",
        type=positive(float),
        default=2_000,
        help="requests/s offered, open loop, all clients together",
    )
    parser.add_argument(
        "--duration",
        type=positive(float),
        default=10.0,
        help="seconds measured per protocol; sizes core and engine too",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of load before each measured run"
    )
    parser.add_argument(
        "--clients",
        type=positive(int),
        default=1,
        help="connections (processes when more than one), each its own account",
    )
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default="place=50,cancel=50",
        help="shares of post-only placements and cancels of the oldest open",
    )
    parser.add_argument(
        "--server-cpu",
        type=int,
        default=cpus[-1],
        help="the venue, the floors' servers, core and engine",
    )
    parser.add_argument("--client-cpu", type=int, default=cpus[0], help="the load generators")
    parser.add_argument(
        "--durability",
        choices=("fsync", "write", "none"),
        default="write",
        help="the venue's journal",
    )
    parser.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="step the rate up until p99 passes --p99-bound-us (default: with all)",
    )
    parser.add_argument("--p99-bound-us", type=float, default=1_000.0)
    parser.add_argument("--sweep-from", type=float, default=1_000, help="first rate of the sweep")
    parser.add_argument("--sweep-to", type=float, default=300_000, help="highest rate it tries")
    parser.add_argument(
        "--sweep-factor",
        type=sweep_factor,
        default=1.5,
        help="each step's rate over the last's (at least 1.1: rates are rounded to 2 digits)",
    )
    parser.add_argument("--sweep-duration", type=float, default=2.0, help="seconds per step")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where the report directory is made"
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path("build"),
        help="where the venue's journal is written (a real disk)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    args.command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    if args.sweep is None:
        args.sweep = args.subcommand == "all"
    return args


# -- core and engine, sized by --duration --


def core_run(args) -> dict:
    d = args.duration
    return core.run(core.parser().parse_args([
        "--commands", str(int(100_000 * d)), "--reference-commands", str(int(10_000 * d)),
        "--competitor-ops", str(int(20_000 * d)), "--deep-ops", str(int(20_000 * d)),
        "--repeats", "3" if d >= 5 else "1",
        "--cpu", str(args.server_cpu)]))  # fmt: skip


def engine_run(args) -> dict:
    d = args.duration
    return engine.run(engine.parser().parse_args([
        "--commands", str(int(100_000 * d)), "--latency-commands", str(int(20_000 * d)),
        "--repeats", "3" if d >= 5 else "1", "--cpu", str(args.server_cpu),
        "--data-root", str(args.data_root)]))  # fmt: skip


# -- the protocols --


class Bench:
    """The venue and the floors' servers of one run, and the accounts of its clients."""

    def __init__(self, args, work: Path):
        self.args = args
        protocols = len(load.VENUE)
        data = work / "venue"
        venue = configured_venue(data, UNLIMITED, accounts=1 + protocols * args.clients)
        self.entries = json.loads((data / "demo-credentials.json").read_text())
        self.server = ServerProcess(data, *venue, "--cpu", str(args.server_cpu),
                                    "--durability", args.durability,
                                    "--snapshot-every", str(10**9))  # fmt: skip
        self.floors = {}
        self.runs = 0
        try:
            reply = self.answer_size()
            for name in load.FLOORS:
                self.floors[name] = load.start_floor(name, args.server_cpu, reply)
        except BaseException:
            self.close()
            raise

    def answer_size(self) -> int:
        """The venue's answer to a placement like the runs' (its order rests on the
        market maker's account, which no client uses)."""
        entry = next(e for e in self.entries if e["account"] == 1 and e["type"] == "ed25519")
        probe = load.Op("place", "r0c0-0", 0)
        frame = load.ws_requests([probe], None, 0, 1)[0]
        return ws.answer_size(self.server.ws_port, entry, frame)

    def clients(self, protocol: str) -> list[dict]:
        """Credentials of the protocol's clients: accounts of their own, after the market
        maker's (an echo floor takes WebSocket's)."""
        index = load.VENUE.index(protocol) if protocol in load.VENUE else 0
        key_type = load.PROTOCOLS[protocol].key_type
        first = 2 + index * self.args.clients
        return [next(e for e in self.entries if e["account"] == account and e["type"] == key_type)
                for account in range(first, first + self.args.clients)]  # fmt: skip

    def port(self, protocol: str) -> int:
        if protocol in self.floors:
            return self.floors[protocol][1]
        return getattr(self.server, f"{protocol}_port")

    def run(self, protocol: str, rate: float, seconds: float, warmup: float) -> dict:
        args = self.args
        self.runs += 1
        venue = protocol in load.VENUE
        before = load.scrape(self.server.metrics_port) if venue else None
        pid = self.server.process.pid if venue else self.floors[protocol][0].pid
        cpu_before = cpu_seconds(pid)
        result = load.run(protocol, self.port(protocol), self.server.rest_port,
                          self.clients(protocol), rate, seconds, warmup, args.mix,
                          args.client_cpu, f"r{self.runs}")  # fmt: skip
        # the server's CPU per request, warm-up included: its own work, and the
        # cost of waking for each request
        result["server_cpu_us"] = round(
            (cpu_seconds(pid) - cpu_before) * 1e6 / (rate * (seconds + warmup)), 1)  # fmt: skip
        if venue:
            result["engine_stages"] = load.engine_stages(
                before, load.scrape(self.server.metrics_port)
            )
        return result

    def sweep(self, protocol: str) -> dict:
        """Rates rising from --sweep-from until a step is not sustained: p99 over the
        bound, fewer answers per second than offered, an error or a wrong final state.
        A failed step runs once more, so one stall of the machine does not end it."""
        args = self.args
        steps, sustained, rate, held = [], None, args.sweep_from, True
        while rate <= args.sweep_to:
            for attempt in range(2):
                step = self.run(protocol, rate, args.sweep_duration, min(args.warmup, 0.5))
                step.pop("curve")
                step["attempt"] = attempt + 1
                held = self.sustained(step)
                if held:
                    break
            steps.append(step)
            if not held:
                break
            sustained = step["offered_rate"]
            rate = float(f"{rate * args.sweep_factor:.2g}")  # round numbers: 1,500, 2,200...
        # every step held up to --sweep-to: the rate is a floor, not a limit
        return {"steps": steps, "sustained_rate": sustained, "capped": held}

    def sustained(self, step: dict) -> bool:
        return (
            step["p99_us"] <= self.args.p99_bound_us
            and step["achieved_rate"] >= 0.95 * step["offered_rate"]
            and step.get("errors", 0) == 0
            and step.get("check", "ok") == "ok"
        )

    def close(self):
        for process, _ in self.floors.values():
            stop_echo(process)
        self.server.stop()


def protocols_of(subcommand: str) -> list[str]:
    if subcommand == "all":
        return [*load.FLOORS, *load.VENUE]
    if subcommand == "floor":
        return list(load.FLOORS)
    if subcommand in load.VENUE:
        return [*load.FLOORS, *dict.fromkeys(("ws", subcommand))]
    return []


def ratios(latency: dict) -> dict:
    """Each protocol's p50 and p99 over its floor and over WebSocket, from the same run."""
    out = {}
    for name, floor in FLOOR_OF.items():
        if name not in latency:
            continue
        for base in (floor, "ws"):
            if base in latency and base != name:
                for p in ("p50", "p99"):
                    out[f"{name}_{p}_over_{base}"] = round(
                        latency[name][f"{p}_us"] / latency[base][f"{p}_us"], 2)  # fmt: skip
    return out


def run(args) -> dict:
    # wake from select() on time: the default 50 µs timer slack would delay planned sends
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    affinity = os.sched_getaffinity(0)
    result = {
        "conditions": {
            **machine(), "command": args.command,
            "subcommand": args.subcommand, "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu, "durability": args.durability, "rate": args.rate,
            "duration_s": args.duration, "warmup_s": args.warmup, "clients": args.clients,
            "mix": args.mix, "p99_bound_us": args.p99_bound_us,
            "sweep_step_s": args.sweep_duration,
            "sweep_factor": args.sweep_factor,
        },
    }  # fmt: skip
    try:
        if args.subcommand in ("core", "all"):
            result["core"] = core_run(args)
            os.sched_setaffinity(0, affinity)
        if args.subcommand in ("engine", "all"):
            result["engine"] = engine_run(args)
            os.sched_setaffinity(0, affinity)
        protocols = protocols_of(args.subcommand)
        if protocols:
            args.data_root.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="flowgate-bench-", dir=args.data_root))
            bench = Bench(args, work)
            try:
                result["latency"] = {p: bench.run(p, args.rate, args.duration, args.warmup)
                                     for p in protocols}  # fmt: skip
                result["ratios"] = ratios(result["latency"])
                if args.sweep:
                    result["sweep"] = {p: bench.sweep(p) for p in protocols}
            finally:
                bench.close()
                shutil.rmtree(work, ignore_errors=True)
    finally:
        os.sched_setaffinity(0, affinity)
    return result


# -- the report --


def conditions_line(c: dict) -> str:
    mix = ", ".join(f"{k} {v}" for k, v in c["mix"].items())
    return (f"{c['cpu']}, {c['cores']} cores, Linux {c['kernel']}, Python {c['python']}, "
            f"Cython {c['cython']}, {'checked' if c['checked_build'] else 'release'} build; "
            f"the venue and the floors' servers on CPU {c['server_cpu']}, clients on CPU "
            f"{c['client_cpu']}; journal `{c['durability']}`; {c['clients']} client(s); "
            f"mix {mix}")  # fmt: skip


def markdown(result: dict) -> str:
    c = result["conditions"]
    lines = [f"# Flowgate benchmark, {c['date']}", "", f"`{c['command']}`", "",
             conditions_line(c) + ".", ""]  # fmt: skip
    latency = result.get("latency", {})
    sweep = result.get("sweep", {})
    if latency:
        lines += latency_table(result, latency, sweep)
        lines += targets(result, latency, sweep)
        lines += stages_tables(latency)
    if sweep:
        lines += sweep_table(result, sweep)
    if "core" in result:
        lines += ["## Core", "", core.report(result["core"]), ""]
    if "engine" in result:
        lines += ["## Engine", "", engine.report(result["engine"]), ""]
    return "\n".join(lines)


def latency_table(result, latency, sweep) -> list[str]:
    c, r = result["conditions"], result["ratios"]
    lines = [
        f"## Round trips, open loop at {c['rate']:,.0f}/s for {c['duration_s']:g} s",
        "",
        f"After {c['warmup_s']:g} s of warm-up; each request from its planned send time to "
        "its answer. Server CPU: the CPU time the server process used (all its threads, "
        "warm-up included) per request offered. Ratios are over the floor of the same run "
        "nearest to the protocol (WebSocket: the picows echo; REST and FIX: the raw TCP "
        "echo) and over WebSocket; "
        f"sustained: the highest rate of the sweep with p99 ≤ {c['p99_bound_us']:,.0f} µs.",
        "",
        "| round trip | p50 µs | p90 | p99 | p99.9 | p99.99 | max | offered/s | achieved/s "
        "| count | server CPU µs | p50 / floor | p99 / floor | p50 / WS | sustained/s "
        "| final state |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in latency.items():
        floor = FLOOR_OF.get(name)
        over_floor = [str(r.get(f"{name}_{p}_over_{floor}", "")) for p in ("p50", "p99")]
        over_ws = str(r.get(f"{name}_p50_over_ws", ""))
        steps = sweep.get(name, {})
        sustained = sustained_text(steps) if steps else ""
        check = "" if "check" not in row else "ok" if row["check"] == "ok" else "**wrong**"
        lines.append(
            f"| {load.PROTOCOLS[name].title} | {row['p50_us']} | {row['p90_us']} | "
            f"{row['p99_us']} | {row['p999_us']} | {row['p9999_us']} | {row['max_us']} | "
            f"{row['offered_rate']:,} | {row['achieved_rate']:,} | {row['count']:,} | "
            f"{row['server_cpu_us']} | {over_floor[0]} | {over_floor[1]} | {over_ws} | "
            f"{sustained} | {check} |"
        )
    return [*lines, ""]


def targets(result, latency, sweep) -> list[str]:
    r, lines = result["ratios"], []
    for name, (base, bound) in TARGETS.items():
        ratio = r.get(f"{name}_p50_over_{base}")
        if ratio is not None:
            verdict = "met" if ratio <= bound else "not met"
            lines.append(f"- {load.PROTOCOLS[name].title} p50 / {load.PROTOCOLS[base].title} "
                         f"p50 = {ratio} (target ≤ {bound}): {verdict}")  # fmt: skip
    venue = {n: s["sustained_rate"] or 0 for n, s in sweep.items() if n in load.VENUE}
    if venue:
        best = max(venue, key=venue.get)
        verdict = "met" if venue[best] >= SUSTAINED_TARGET else "not met"
        lines.append(
            f"- highest sustained rate: {venue[best]:,}/s "
            f"({load.PROTOCOLS[best].title}; target ≥ {SUSTAINED_TARGET:,}): {verdict}"
        )
    return ["Targets:", "", *lines, ""] if lines else []


def stages_tables(latency) -> list[str]:
    rows = {n: r for n, r in latency.items() if "stages" in r}
    if not rows:
        return []
    lines = [
        "## Where the time goes",
        "",
        "Per order, from the four timestamps on each answer (gateway receive, engine in, "
        "engine out, gateway send, all wall clock) and the client's planned send and "
        "arrival: mean µs, p50 in brackets. The means add up to the mean round trip.",
        "",
        "| protocol | " + " | ".join(load.STAGES.values()) + " | round trip |",
        "|---|" + "---:|" * (len(load.STAGES) + 1),
    ]
    for name, row in rows.items():
        cells = [f"{s['mean_us']} ({s['p50_us']})" for s in row["stages"].values()]
        lines.append(f"| {load.PROTOCOLS[name].title} | {' | '.join(cells)} | "
                     f"{row['mean_us']} ({row['p50_us']}) |")  # fmt: skip
    stages = sorted({s for r in rows.values() for s in r.get("engine_stages", {})},
                    key=list(("sequence", "journal", "apply", "publish")).index)  # fmt: skip
    lines += [
        "",
        "Inside the engine, from the venue's own histograms (`/metrics`, "
        "`flowgate_stage_seconds`: one engine step in 16 timed, a step being a batch of "
        "commands): mean µs per step, and the bucket bound under which half and 99% fall.",
        "",
        "| run | steps timed | " + " | ".join(stages) + " |",
        "|---|---:|" + "---:|" * len(stages),
    ]
    for name, row in rows.items():
        engine_stages = row.get("engine_stages", {})
        steps = max((s["steps"] for s in engine_stages.values()), default=0)
        cells = [(f"{s['mean_us']} (≤ {s['p50_le_us']}, ≤ {s['p99_le_us']})"
                  if (s := engine_stages.get(stage)) else "") for stage in stages]  # fmt: skip
        lines.append(f"| {load.PROTOCOLS[name].title} | {steps} | {' | '.join(cells)} |")
    return [*lines, ""]


def sweep_table(result, sweep) -> list[str]:
    c = result["conditions"]
    rates = sorted({s["offered_rate"] for run in sweep.values() for s in run["steps"]})
    lines = [
        "## Rate sweep",
        "",
        f"Each step {c['sweep_step_s']:g} s open loop, the rate rising by "
        f"{c['sweep_factor']:g}x until p99 passes "
        f"{c['p99_bound_us']:,.0f} µs, fewer answers per second arrive than were offered "
        "(< 95%), or an answer or the final state is wrong; a failed step is run once more. "
        "Cells: p99 µs (achieved/s).",
        "",
        "| offered/s | " + " | ".join(load.PROTOCOLS[n].title for n in sweep) + " |",
        "|---:|" + "---:|" * len(sweep),
    ]
    for rate in rates:
        cells = []
        for run in sweep.values():
            step = next((s for s in run["steps"] if s["offered_rate"] == rate), None)
            cells.append(f"{step['p99_us']:,} ({step['achieved_rate']:,})" if step else "")
        lines.append(f"| {rate:,} | " + " | ".join(cells) + " |")
    sustained = [f"{n} {sustained_text(s)}/s" for n, s in sweep.items()]
    return [*lines, "", "Highest sustained: " + ", ".join(sustained) + ".", ""]


def sustained_text(sweep: dict) -> str:
    """The sustained rate; "≥" when the sweep stopped at --sweep-to with every step held."""
    return ("≥ " if sweep.get("capped") else "") + f"{sweep['sustained_rate'] or 0:,}"


def write_report(result: dict, directory: Path):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (directory / "report.md").write_text(markdown(result))
    c = result["conditions"]
    note = f"{c['date']}, {c['cpu']}, journal {c['durability']}"
    titles = {name: p.title for name, p in load.PROTOCOLS.items()}
    if result.get("latency"):
        plots.percentile_curves(
            result["latency"],
            titles,
            directory / "latency.png",
            f"{c['rate']:,.0f}/s for {c['duration_s']:g} s, {note}",
        )
        if any("stages" in r for r in result["latency"].values()):
            plots.stages(result["latency"], titles, load.STAGES, directory / "stages.png", note)
    if result.get("sweep"):
        plots.rate_sweep(result["sweep"], titles, c["p99_bound_us"], directory / "sweep.png",
                         note)  # fmt: skip


def summary(result: dict) -> dict:
    """One object: per protocol and floor run its figures; core and engine headlines."""
    out = {name: {k: row[k] for k in SUMMARY if k in row}
           for name, row in result.get("latency", {}).items()}  # fmt: skip
    for name, run in result.get("sweep", {}).items():
        out[name]["sustained_rate"] = run["sustained_rate"]
        out[name]["sustained_capped"] = run["capped"]
    if "core" in result:
        out["core"] = {k: result["core"][k] for k in ("batch_cmds_per_s", "per_call_cmds_per_s")}
    if "engine" in result:
        out["engine"] = {mode: {"cmds_per_s": m["cmds_per_s"],
                                "p50_us": round(m["latency"]["p50_ns"] / 1000, 1),
                                "p99_us": round(m["latency"]["p99_ns"] / 1000, 1)}
                         for mode, m in result["engine"]["modes"].items()}  # fmt: skip
    return out


def main(argv=None) -> Path:
    args = arguments(argv)
    result = run(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = args.results / stamp
    write_report(result, directory)
    print(json.dumps(summary(result), indent=2) if args.json else markdown(result))
    print(f"report: {directory}", file=sys.stderr)
    return directory


if __name__ == "__main__":
    main()
