"""The engine in a process of its own (`flowgate serve --engine-process`).

The gateways' process and the engine's share two rings in shared memory:
commands one way, events the other. The engine, pinned to its own core, spins
on the command ring without the GIL for a while after each batch, then
announces it will sleep and blocks on a pipe; a gateway that writes commands
to a sleeping engine writes a byte to that pipe. The engine writes a byte to
the gateways' pipe after each batch of events, and the gateways' loop reads
the event ring when it sees it.
"""

import functools
import logging
import multiprocessing
import os
import select
import signal
import struct
import time
from multiprocessing import shared_memory
from pathlib import Path

import msgspec

from engine import logs, placement
from engine import snapshot as snapshots
from engine.config import VenueConfig
from engine.journal import Durability
from engine.runtime import EngineRuntime
from ext.core import COMMAND_SIZE, EVENT_SIZE, Ring

log = logging.getLogger("flowgate.engine")

SPIN_NS = 50_000  # how long the engine spins for more commands before it sleeps
EVENT_SLOTS = 1 << 16
_CONTROL = 128  # [0] ready, [1] stop, [2] failed, [8:16] seq once ready
_READY, _STOP, _FAILED = 0, 1, 2


def _signal(fd: int):
    """One byte down a non-blocking pipe; a full pipe has wake-ups enough, a
    broken one nobody to wake."""
    try:
        os.write(fd, b"\x01")
    except (BlockingIOError, BrokenPipeError):
        pass


class EngineStartError(Exception):
    pass


class SharedRings:
    """The control block and both rings, laid out in one shared-memory segment."""

    def __init__(self, command_slots: int, name: str | None = None):
        sizes = (Ring.size(command_slots, COMMAND_SIZE), Ring.size(EVENT_SLOTS, EVENT_SIZE))
        # rings start on page boundaries, each position on a cache line of its own
        first = 4096
        second = first + (sizes[0] + 4095) // 4096 * 4096
        total = second + sizes[1]
        if name is None:
            self.shm = shared_memory.SharedMemory(create=True, size=total)
        else:
            self.shm = shared_memory.SharedMemory(name=name)
        self.control = self.shm.buf[:_CONTROL]
        self.commands = Ring(command_slots, COMMAND_SIZE, self.shm.buf[first:second])
        self.events = Ring(EVENT_SLOTS, EVENT_SIZE, self.shm.buf[second:])

    def close(self, unlink: bool):
        self.commands = self.events = None
        self.control.release()
        self.shm.close()
        if unlink:
            self.shm.unlink()


class EngineProcess:
    """The gateways' side: starts the engine process and talks to it."""

    def __init__(self, config: VenueConfig, options, engine_cpu: int):
        self.rings = SharedRings(options.command_slots)
        context = multiprocessing.get_context("spawn")
        self.wake_engine_read, self.wake_engine = context.Pipe(duplex=False)
        self.events_ready, self.events_ready_write = context.Pipe(duplex=False)
        self.process = context.Process(
            target=run_engine, name="flowgate-engine",  # not a daemon: it has the history
            args=(msgspec.json.encode(config), str(options.data_dir), str(options.durability),
                  options.command_slots, options.snapshot_every, options.snapshot_seconds,
                  self.rings.shm.name, engine_cpu, os.getpid(), self.wake_engine_read,
                  self.events_ready_write, logging.getLogger().level, options.history),
        )  # fmt: skip
        self.process.start()
        # the child has its ends now; without ours, its death closes the events pipe
        self.wake_engine_read.close()
        self.events_ready_write.close()
        os.sched_setaffinity(self.process.pid, {engine_cpu})
        self.wake_engine_fd = self.wake_engine.fileno()
        self.events_fd = self.events_ready.fileno()
        # neither side ever blocks on a pipe: a full pipe already holds a wake-up
        os.set_blocking(self.wake_engine_fd, False)
        os.set_blocking(self.events_fd, False)

    def wait_ready(self, timeout_s: float = 60.0) -> int:
        """Block until the engine has recovered; return its seq."""
        deadline = time.monotonic() + timeout_s
        while not self.rings.control[_READY]:
            if self.rings.control[_FAILED] or not self.process.is_alive():
                self.process.join(5)
                self.rings.close(unlink=True)
                raise EngineStartError("the engine process failed to start (see its log)")
            if time.monotonic() > deadline:
                self.process.kill()
                self.rings.close(unlink=True)
                raise EngineStartError("the engine process did not start in time")
            time.sleep(0.01)
        return struct.unpack_from("<q", self.rings.control, 8)[0]

    def submit(self, records) -> int:
        commands = self.rings.commands
        if commands is None:  # stopped: nothing is taken (the gateways answer OVERLOADED)
            return 0
        taken = commands.write(records)
        if taken and commands.consumer_sleeping():
            _signal(self.wake_engine_fd)
        return taken

    def take_events(self) -> bytes | None:
        """Whatever events are waiting (when events_fd is readable, or polling);
        None once the engine process is gone (its end of the pipe closed)."""
        try:
            if not os.read(self.events_fd, 65536):
                return None
        except BlockingIOError:
            pass
        return self.rings.events.read(EVENT_SLOTS)

    def stop(self, timeout_s: float = 60.0) -> bytes:
        """Ask the engine to finish what is queued and stop; return the events
        it published meanwhile."""
        self.rings.control[_STOP] = 1
        _signal(self.wake_engine_fd)
        events = []
        deadline = time.monotonic() + timeout_s
        while self.process.is_alive() and time.monotonic() < deadline:
            events.append(self.rings.events.read(EVENT_SLOTS))  # so it never waits for room
            self.process.join(0.005)
        events.append(self.rings.events.read(EVENT_SLOTS))
        self.rings.close(unlink=True)
        return b"".join(events)


def deliver(runtime: EngineRuntime, rings: SharedRings, ready_fd: int, parent_pid: int,
            batch: bytes):  # fmt: skip
    """A batch's events into the shared event ring, and a wake-up for the
    gateways. When they are behind it waits for room, never drops."""
    view = memoryview(batch)
    while view:
        written = rings.events.write(view)
        view = view[written * EVENT_SIZE :]
        if view:
            _signal(ready_fd)
            time.sleep(0.0001)
            if not written and os.getppid() != parent_pid:  # nobody will make room
                orphaned(runtime)
    _signal(ready_fd)


def orphaned(runtime: EngineRuntime):
    """The gateways' process is gone: let go as after a crash, and exit."""
    log.error("the gateways' process is gone: stopping as after a crash")
    runtime.abandon()
    os._exit(1)


def run_engine(config_json: bytes, data_dir: str, durability: str, command_slots: int,
               snapshot_every: int, snapshot_seconds: float, shm_name: str, cpu: int,
               parent_pid: int, wake_read, events_ready, log_level: int,
               history: bool):  # fmt: skip
    """The engine process: recover, then apply commands until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateways' process coordinates shutdown
    logs.configure(logging.getLevelName(log_level))
    placement.pin_loop_thread(cpu)
    rings = SharedRings(command_slots, shm_name)
    wake_fd, ready_fd = wake_read.fileno(), events_ready.fileno()
    os.set_blocking(ready_fd, False)
    try:
        runtime = EngineRuntime(
            msgspec.json.decode(config_json, type=VenueConfig), Path(data_dir),
            Durability(durability), command_ring=rings.commands,
            snapshot_every=snapshot_every, snapshot_seconds=snapshot_seconds, lock_wait_s=10.0,
            history=history,
        )  # fmt: skip
    except Exception as exc:
        log.error("engine failed to start", extra={"error": str(exc)})
        rings.control[_FAILED] = 1
        os._exit(1)  # the gateways' process cleans up the shared memory

    # to the gateways' process, through the shared ring
    runtime.deliver = functools.partial(deliver, runtime, rings, ready_fd, parent_pid)
    if runtime.seq and not snapshots.path_of(Path(data_dir), runtime.seq).exists():
        runtime.take_snapshot(wait=True)  # the gateways' view starts from it
    struct.pack_into("<q", rings.control, 8, runtime.seq)
    rings.control[_READY] = 1
    while True:
        if runtime.run_pending() or rings.commands.wait(SPIN_NS):
            continue
        if rings.control[_STOP]:
            break
        due = runtime.next_timer_ns()
        if due and due <= time.time_ns():
            runtime.submit_tick()
            continue
        if os.getppid() != parent_pid:
            orphaned(runtime)
        if not rings.commands.announce_sleep():
            timeout = 0.1 if not due else min(0.1, max(0.0, (due - time.time_ns()) / 1e9))
            if select.select([wake_fd], [], [], timeout)[0]:
                os.read(wake_fd, 65536)
        rings.commands.end_sleep()
    runtime.close()
    runtime.deliver = None  # (which refers to the runtime: a cycle `del` would not end)
    del runtime  # it holds a view of the shared command ring
    rings.close(unlink=False)
