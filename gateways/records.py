"""The record port: the engine's own records over TCP, for operators, tools and
tests.

A client writes `CommandRecord`s (COMMAND_SIZE bytes each, the layout of
``engine.records.COMMAND_DTYPE``) and reads back the `EventRecord`s
(EVENT_SIZE bytes each) of its commands, in sequence order. The gateway sets
each record's `tag` (session and request number) and `recv_ns`; the sequencer
sets `seq` and `ts_ns`. A command the command ring cannot take is answered at
once with a REJECTED event of result OVERLOADED and seq 0 (never sequenced).

There is no authentication: the port listens on loopback only, and only when
the operator asks for it.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from engine.records import COMMAND_DTYPE, EVENT_DTYPE
from ext.core import COMMAND_SIZE, EventFlag, EventType, OrderStatus, Result
from gateways.sessions import next_session_id

log = logging.getLogger("flowgate.records")

MAX_UNSENT_BYTES = 16 << 20  # a client that stops reading is disconnected past this


class RecordPort:
    """Sessions of the record port and the routing of events back to them."""

    def __init__(self, submit: Callable[[memoryview], int]):
        self.submit = submit
        self.sessions: dict[int, RecordSession] = {}

    def session(self) -> "RecordSession":
        return RecordSession(self, next_session_id())

    def close(self):
        for session in list(self.sessions.values()):
            session.transport.close()

    def on_events(self, batch: bytes):
        """Event ring subscriber: each event goes to the session that sent its command."""
        if not self.sessions:  # the usual case: nobody to route to, nothing to pay
            return
        events = np.frombuffer(batch, EVENT_DTYPE)
        owners = events["tag"] >> 32
        for session_id in np.unique(owners[owners > 0]).tolist():
            session = self.sessions.get(session_id)
            if session is not None:
                session.send(events[owners == session_id].tobytes())


class RecordSession(asyncio.Protocol):
    def __init__(self, port: RecordPort, session_id: int):
        self.port = port
        self.session_id = session_id
        self.requests = 0
        self.pending = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport
        self.port.sessions[self.session_id] = self
        peer = str(transport.get_extra_info("peername"))
        log.info("record session open", extra={"session": self.session_id, "peer": peer})

    def connection_lost(self, exc):
        self.port.sessions.pop(self.session_id, None)
        log.info("record session closed", extra={"session": self.session_id})

    def data_received(self, data: bytes):
        self.pending += data
        n = len(self.pending) // COMMAND_SIZE
        if n == 0:
            return
        records = np.frombuffer(self.pending[: n * COMMAND_SIZE], COMMAND_DTYPE).copy()
        del self.pending[: n * COMMAND_SIZE]
        records["tag"] = (self.session_id << 32) + self.requests + np.arange(1, n + 1)
        records["recv_ns"] = time.time_ns()
        self.requests += n
        taken = self.port.submit(memoryview(records.view(np.uint8)))
        if taken < n:
            self.send(overloaded(records[taken:]))

    def send(self, data: bytes):
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            log.warning("record session not reading: closed", extra={"session": self.session_id})
            self.transport.abort()
            return
        self.transport.write(data)


def overloaded(commands: np.ndarray) -> bytes:
    """REJECTED/OVERLOADED events for commands the ring could not take."""
    events = np.zeros(len(commands), EVENT_DTYPE)
    for field in ("tag", "recv_ns", "account", "instrument", "order_id", "side", "order_type",
                  "tif", "stp", "price", "qty", "coid_len", "coid"):  # fmt: skip
        events[field] = commands[field]
    events["type"] = EventType.EV_REJECTED
    events["cmd_type"] = commands["type"]
    events["result"] = Result.OVERLOADED
    events["flags"] = EventFlag.FLAG_LAST
    events["status"] = OrderStatus.STATUS_REJECTED
    events["ts_ns"] = time.time_ns()
    return events.tobytes()


async def serve(port: RecordPort, tcp_port: int) -> asyncio.Server:
    """Listen on loopback."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(port.session, "127.0.0.1", tcp_port)


class RecordClient:
    """A blocking client of the record port (tools, tests, benchmarks).

    `request` sends commands and returns each one's events. The gateway numbers
    a session's commands 1, 2, 3, ... in the low half of the tag, and marks the
    last event of each command with FLAG_LAST.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        import socket

        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.buffer = bytearray()

    def send(self, records: bytes) -> range:
        """Send command records; return their request numbers."""
        self.sock.sendall(records)
        first = self.sent + 1
        self.sent += len(records) // COMMAND_SIZE
        return range(first, self.sent + 1)

    def receive(self, requests: range) -> np.ndarray:
        """The events of these requests, in arrival order, once each has its last.

        Sequenced events arrive in request order; an OVERLOADED answer comes at
        once, so it may overtake the events of earlier requests.
        """
        size = EVENT_DTYPE.itemsize
        while True:
            events = np.frombuffer(self.buffer[: len(self.buffer) // size * size], EVENT_DTYPE)
            number = events["tag"] & 0xFFFFFFFF
            mine = (number >= requests.start) & (number < requests.stop)
            finished = np.unique(number[mine & ((events["flags"] & EventFlag.FLAG_LAST) != 0)])
            if len(finished) == len(requests):
                out = events[mine].copy()
                self.buffer[:] = events[~mine].tobytes() + self.buffer[len(events) * size :]
                return out
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("record port closed the connection")
            self.buffer += chunk

    def request(self, records: bytes) -> np.ndarray:
        """Send command records and wait for all their events."""
        return self.receive(self.send(records))

    def close(self):
        self.sock.close()
