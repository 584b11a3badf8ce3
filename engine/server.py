"""`flowgate serve`: the composition root.

The default placement runs gateways and engine on one uvloop thread pinned to
one core: on small machines waking a thread on another core costs more than
the whole order path. `build_pipeline` wires it, stage by stage.
"""

import asyncio
import functools
import gc
import logging
import signal
import time
from pathlib import Path

import msgspec
import numpy as np
import uvloop

from engine import market_maker, metrics, placement
from engine import snapshot as snapshots
from engine.config import VenueConfig, instrument_specs
from engine.engine import Engine
from engine.engine_process import EngineProcess
from engine.history import HistoryReader
from engine.journal import Durability
from engine.records import EVENT_DTYPE, whole_commands
from engine.runtime import EngineRuntime, fingerprint
from engine.views import VenueView
from gateways import records, wire
from gateways.auth.keys import DEMO_CREDENTIALS, KeyStore, write_demo_credentials
from gateways.auth.verify import Authenticator
from gateways.fix import session as fix
from gateways.rest import server as rest
from gateways.venue import Venue
from gateways.ws import server as ws

log = logging.getLogger("flowgate.server")


class ServeOptions(msgspec.Struct, kw_only=True):
    data_dir: Path
    durability: Durability = Durability.WRITE
    host: str = "127.0.0.1"  # of the public gateways
    rest_port: int | None = None
    ws_port: int | None = None
    fix_port: int | None = None
    fix_test_session: tuple[str, str] | None = None  # (SenderCompID, TargetCompID), loopback
    fix_test_dictionary: Path | None = None  # what the test session is validated with
    record_port: int | None = None  # loopback only
    metrics_port: int | None = None  # loopback only
    command_slots: int = 1 << 16  # command ring; full is OVERLOADED
    cpu: int | None = None  # pin the loop thread here; None: the last CPU
    snapshot_every: int = 1_000_000  # commands
    snapshot_seconds: float = 300.0
    market_maker: bool = False
    engine_process: bool = False  # the engine in a process of its own, on its own core
    history: bool = True  # off only in benchmarks of the engine stage
    demo: bool = False  # write demo-credentials.json on a data directory without keys


TIMER_SLACK_S = 0.001  # a timer is armed this much after what it waits for


class Pipeline:
    """The engine on the loop's thread: runs the engine stage once per loop
    iteration while commands wait, and turns the core's timers into journaled
    ticks. Gateways submit commands and subscribe to events."""

    def __init__(self, runtime: EngineRuntime, loop: asyncio.AbstractEventLoop):
        self.runtime = runtime
        self.loop = loop
        self.subscribers = runtime.subscribers
        self.scheduled: asyncio.Handle | None = None  # the engine stage's next run
        self.timer: asyncio.TimerHandle | None = None
        self.timer_ns = 0
        self.closed = False
        self.arm_timer()

    @property
    def seq(self) -> int:
        return self.runtime.seq

    def close(self):
        """Journal, apply and answer what is queued; final snapshot. What is
        submitted afterwards is not taken (the gateways answer OVERLOADED)."""
        self.run()
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.runtime.close()

    def submit(self, records) -> int:
        """Gateways' way into the command ring; returns how many records it took."""
        if self.closed:
            return 0
        taken = self.runtime.submit(records)
        if taken and self.scheduled is None:
            self.scheduled = self.loop.call_soon(self.run)
        return taken

    def kick(self):
        """Run the engine stage now rather than on the next loop iteration: a
        gateway that has read all its socket held saves a trip round the loop."""
        if self.scheduled is not None:
            self.scheduled.cancel()
            self.run()

    def run(self):
        self.scheduled = None
        self.runtime.run_pending()
        self.arm_timer()

    def arm_timer(self):
        due_ns = self.runtime.next_timer_ns()
        if due_ns == self.timer_ns:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_ns = None, due_ns
        if due_ns:
            # (the loop's timers may fire up to a millisecond early)
            delay = max(0.0, (due_ns - time.time_ns()) / 1e9) + TIMER_SLACK_S
            self.timer = self.loop.call_later(delay, self.fire_timer)

    def fire_timer(self):
        self.timer, self.timer_ns = None, 0
        if time.time_ns() < self.runtime.next_timer_ns():
            self.arm_timer()  # early still: a tick now would do nothing but fill the journal
        elif self.runtime.submit_tick():
            if self.scheduled is None:
                self.scheduled = self.loop.call_soon(self.run)
        else:  # the ring is full: the commands in it will move the clock; try again soon
            self.timer = self.loop.call_later(0.001, self.fire_timer)


class RemotePipeline:
    """The engine in its own process: commands go into the shared ring, and
    the loop hands events from the shared event ring to the subscribers when
    the engine signals them."""

    def __init__(self, engine: EngineProcess, loop: asyncio.AbstractEventLoop):
        self.engine = engine
        self.loop = loop
        self.subscribers: list = []
        self.seq = engine.wait_ready()
        self.submit = engine.submit
        self.carried = b""  # events of a command whose last event has not come yet
        self.engine_lost = lambda: None  # what to do if the engine process dies
        loop.add_reader(engine.events_fd, self.dispatch)

    def kick(self):
        """The engine process takes commands as they come: nothing to do."""

    def dispatch(self, events: bytes | None = None):
        batch = self.engine.take_events() if events is None else events
        if batch is None:  # nothing would answer the gateways' commands any more
            self.loop.remove_reader(self.engine.events_fd)
            log.error("the engine process has stopped: the venue stops")
            self.engine_lost()
            return
        batch, self.carried = whole_commands(self.carried + batch)  # gateways answer whole ones
        if batch:
            self.seq = int(np.frombuffer(batch, EVENT_DTYPE)["seq"][-1])
            for subscriber in self.subscribers:
                subscriber(batch)

    def close(self):
        self.loop.remove_reader(self.engine.events_fd)
        self.dispatch(self.engine.stop())


async def build_pipeline(config: VenueConfig, options: ServeOptions, engine_cpu: int):
    """Wire the venue: gateways → command ring → engine → event ring → gateways."""
    loop = asyncio.get_running_loop()
    # 1. the engine stage: recovers state from the data directory, opens the
    #    journal, and is driven a batch per loop iteration (timers as ticks),
    #    or runs in a process of its own on engine_cpu
    if options.engine_process:
        pipeline = RemotePipeline(EngineProcess(config, options, engine_cpu), loop)
    else:
        runtime = EngineRuntime(
            config, options.data_dir, options.durability, command_slots=options.command_slots,
            lock_wait_s=10.0,  # a previous process may still be letting go
            snapshot_every=options.snapshot_every, snapshot_seconds=options.snapshot_seconds,
            history=options.history,
        )  # fmt: skip
        pipeline = Pipeline(runtime, loop)
    # 2. authentication for the gateways; revocations reach it within a second
    store = KeyStore(options.data_dir)
    if options.demo:
        write_demo_credentials(store, options.data_dir, [a.id for a in config.accounts])
    authenticator = Authenticator(store, config.limits)
    authenticator.on_revoked.append(
        lambda key_id: log.info("key no longer usable", extra={"key": key_id})
    )
    gateways = [("key_watch", _watch_keys(authenticator), None)]
    # 3. gateways: commands in through pipeline.submit, events out as subscribers
    specs = instrument_specs(config)
    if options.ws_port is not None or options.rest_port is not None or (
            options.fix_port is not None):  # fmt: skip
        #    the public gateways share one venue view, fed by one walk over
        #    each event batch
        history = HistoryReader(options.data_dir) if options.history else None
        view = VenueView(specs, len(config.assets), core_at(pipeline, config, options),
                         pipeline.seq, history)  # fmt: skip
        venue = Venue(pipeline, view, wire.Instruments(config, specs), history)
        pipeline.subscribers.append(venue.on_events)
        if options.ws_port is not None:
            gateway = ws.WsGateway(venue, authenticator)
            served = await ws.serve(gateway, options.host, options.ws_port)
            gateways.append(("ws_port", gateway, served))
        if options.rest_port is not None:
            render = (functools.partial(metrics.render, pipeline.runtime)
                      if isinstance(pipeline, Pipeline) else None)  # fmt: skip
            rest_gateway = rest.RestGateway(venue, authenticator, render)
            served = await rest.serve(rest_gateway, options.host, options.rest_port)
            gateways.append(("rest_port", rest_gateway, served))
        if options.fix_port is not None:
            fix_gateway = fix.FixGateway(venue, authenticator, options.data_dir,
                                         options.fix_test_session,
                                         options.fix_test_dictionary)  # fmt: skip
            served = await fix.serve(fix_gateway, options.host, options.fix_port)
            gateways.append(("fix_port", fix_gateway, served))
        gateways.append(("venue", venue, None))
    if options.record_port is not None:
        port = records.RecordPort(pipeline.submit)
        pipeline.subscribers.append(port.on_events)
        gateways.append(("record_port", port, await records.serve(port, options.record_port)))
    if options.metrics_port is not None:
        served = await metrics.serve(pipeline.runtime, options.metrics_port)
        gateways.append(("metrics_port", None, served))
    # 4. the demo's market maker, a client like any other
    if options.market_maker:
        maker = asyncio.create_task(market_maker.run(pipeline.submit, specs))
        gateways.append(("market_maker", maker, None))
    return pipeline, gateways


def settle_gc():
    """After start-up: what start-up built lives as long as the venue, so keep
    it out of the cyclic GC's sight, and let a collection wait for many more
    allocations (the hot path makes no cycles; at the default threshold one in
    a few hundred requests paid for a collection)."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


async def serve(config: VenueConfig, options: ServeOptions, engine_cpu: int) -> int:
    pipeline, gateways = await build_pipeline(config, options, engine_cpu)
    settle_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    failed = []  # why the venue stops on its own, if it does
    if isinstance(pipeline, RemotePipeline):
        pipeline.engine_lost = lambda: (failed.append("engine"), stop.set())
    ports = {name: server.sockets[0].getsockname()[1] for name, _, server in gateways if server}
    log.info("ready", extra={"seq": pipeline.seq, "data_dir": str(options.data_dir),
                             "durability": str(options.durability),
                             "engine_process": options.engine_process, **ports})  # fmt: skip
    print(how_to_connect(config, options, ports), flush=True)
    await stop.wait()
    # clean shutdown: stop taking connections; sessions that asked for it get
    # their orders canceled; journal, apply and answer what is queued
    for _, gateway, server in gateways:
        if isinstance(gateway, asyncio.Task):
            gateway.cancel()  # the key watcher, the market maker
        if server is not None:
            server.close()
        if isinstance(gateway, ws.WsGateway | fix.FixGateway | rest.RestGateway):
            gateway.cancel_on_shutdown()
    pipeline.close()  # (what comes in from here on is refused: OVERLOADED)
    for _, gateway, server in gateways:
        if server is not None and gateway is not None:
            gateway.close()
        elif isinstance(gateway, Venue):
            gateway.close()
    for _, _, server in gateways:
        if server is not None:
            await server.wait_closed()
    log.info("stopped", extra={"seq": pipeline.seq})
    return 1 if failed else 0


def core_at(pipeline, config: VenueConfig, options: ServeOptions):
    """The core's state at the pipeline's seq, for the gateways' view: the
    engine itself on this thread, or the snapshot the engine process wrote
    when it became ready."""
    if isinstance(pipeline, Pipeline):
        return pipeline.runtime.engine.core
    engine = Engine(config)
    if pipeline.seq:
        snap = snapshots.latest(options.data_dir, fingerprint(config), at_most_seq=pipeline.seq)
        if snap is None or snap.seq != pipeline.seq:
            raise RuntimeError(f"no snapshot at the engine's start seq {pipeline.seq}")
        engine.core.restore(snap.core)
    return engine.core


def _watch_keys(authenticator: Authenticator) -> asyncio.Task:
    async def watch():
        while True:
            await asyncio.sleep(0.5)
            authenticator.refresh()

    return asyncio.create_task(watch())


def how_to_connect(config: VenueConfig, options: ServeOptions, ports: dict) -> str:
    symbols = ", ".join(i.symbol for i in config.instruments)
    accounts = ", ".join(str(a.id) for a in config.accounts)
    lines = [f"Flowgate is up: {symbols}; accounts {accounts}; state in {options.data_dir}/"]
    if options.market_maker:
        lines.append(f"  account {market_maker.ACCOUNT} makes markets in every book")
    if options.demo:
        lines.append(f"  API keys of every account: {options.data_dir}/{DEMO_CREDENTIALS}")
    if "rest_port" in ports:
        lines.append(f"  REST http://{options.host}:{ports['rest_port']}/v1 (reference: "
                     f"http://{options.host}:{ports['rest_port']}/docs; Python: "
                     "flowgate_client.RestClient)")  # fmt: skip
    if "ws_port" in ports:
        lines.append(f"  WebSocket ws://{options.host}:{ports['ws_port']}/v1/ws (docs/websocket.md;"
                     " Python: flowgate_client.WsClient)")  # fmt: skip
    if "fix_port" in ports:
        lines.append(f"  FIX 4.4 {options.host}:{ports['fix_port']} (TargetCompID FLOWGATE; "
                     "docs/fix.md)")  # fmt: skip
    if "record_port" in ports:
        lines.append(
            f"  record port 127.0.0.1:{ports['record_port']} (command records in, event records"
            " out; Python: gateways.records.RecordClient)"
        )
    if "metrics_port" in ports:
        lines.append(f"  metrics http://127.0.0.1:{ports['metrics_port']}/metrics (Prometheus)")
    lines.append("  SIGTERM or Ctrl-C stops it cleanly.")
    return "\n".join(lines)


def run(config: VenueConfig, options: ServeOptions) -> int:
    if options.engine_process:
        # the engine gets the chosen core; the gateways' loop another one
        engine_cpu = placement.last_cpu() if options.cpu is None else options.cpu
        cpu = placement.pin_loop_thread(placement.other_cpu(engine_cpu))
    else:
        engine_cpu = cpu = placement.pin_loop_thread(options.cpu)
    log.info("pinned", extra={"cpu": cpu, "engine_cpu": engine_cpu})
    return uvloop.run(serve(config, options, engine_cpu))
