"""A small blocking FIX 4.4 initiator for tests and scripted session
scenarios: `send MSGTYPE tag=value ...` and `expect MSGTYPE tag=value ...`
lines; the header (49, 56, 34, 52) is filled in, and a Logon is signed.
Every message it receives must pass the venue's published data dictionary,
as it would for a QuickFIX initiator validating with it."""

import socket
import time
from datetime import UTC, datetime

from ext.fix import FixError, FixReader, encode
from flowgate_client import Credentials, fix_logon_raw_data
from gateways.fix.dictionary import DataDictionary
from gateways.fix.session import DIALECT

TARGET = "FLOWGATE"
PUBLISHED = DataDictionary(DIALECT)


def now_timestamp(offset_ms: int = 0) -> str:
    ns = time.time_ns() + offset_ms * 1_000_000
    moment = datetime.fromtimestamp(ns / 1e9, UTC)
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{ns // 1_000_000 % 1000:03d}"


class FixClient:
    def __init__(self, port: int, sender: str, credentials: Credentials | None = None,
                 timeout: float = 5.0, target: str = TARGET):  # fmt: skip
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sender, self.target, self.credentials = sender, target, credentials
        self.seq = 1
        self.reader = FixReader(keep_raw=True)
        self.inbox: list[dict] = []

    def send(self, msg_type: str, fields: list | None = None, seq: int | None = None,
             sending_time: str | None = None) -> bytes:  # fmt: skip
        seq = self.seq if seq is None else seq
        sending_time = sending_time or now_timestamp()
        fields = list(fields or [])
        if msg_type == "A" and self.credentials is not None:
            signature = fix_logon_raw_data(self.credentials, self.sender, self.target, seq,
                                           sending_time)  # fmt: skip
            fields = [(553, self.credentials.key), (95, len(signature)), (96, signature), *fields]
        raw = encode(msg_type, self.sender, self.target, seq, sending_time, fields)
        self.sock.sendall(raw)
        self.seq = seq + 1
        return raw

    def send_together(self, messages: list[tuple[str, list]]):
        """Several messages in one write: the venue reads them at once."""
        stamp, first = now_timestamp(), self.seq
        self.seq += len(messages)
        self.sock.sendall(b"".join(encode(kind, self.sender, self.target, first + k, stamp, fields)
                                   for k, (kind, fields) in enumerate(messages)))  # fmt: skip

    def receive(self, timeout: float = 5.0) -> dict | None:
        """The next message (None when the connection closed)."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no message in time") from None
            if not data:
                return None
            messages = self.reader.feed(data)
            for message, raw in zip(messages, self.reader.raw, strict=True):
                if not isinstance(message, FixError):
                    PUBLISHED.validate(PUBLISHED.read(raw))  # raises Invalid, naming the fault
                    self.inbox.append(message)
        return self.inbox.pop(0)

    def expect(self, msg_type: str, **tags) -> dict:
        """The next message, which must be of this type with these values
        (keyword `t55="BTC-USDT"` for tag 55)."""
        message = self.receive()
        assert message is not None, f"closed while expecting {msg_type}"
        assert message[35] == msg_type.encode(), f"expected {msg_type}, got {message}"
        for name, value in tags.items():
            tag = int(name[1:])
            assert message.get(tag) == str(value).encode(), f"tag {tag}: {message}"
        return message

    def run(self, script: str):
        """Scenario lines: `send D 11=x 55=BTC-USDT ...` / `expect 8 t150=0 ...` style,
        written as `expect 8 150=0`."""
        for line in script.strip().splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            action, msg_type, pairs = words[0], words[1], words[2:]
            fields = [(int(tag), value) for tag, value in (p.split("=", 1) for p in pairs)]
            if action == "send":
                self.send(msg_type, fields)
            elif action == "expect":
                self.expect(msg_type, **{f"t{tag}": value for tag, value in fields})
            else:
                raise ValueError(f"not a scenario line: {line}")

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server closes the connection (after any messages)."""
        try:
            while self.receive(timeout) is not None:
                pass
        except (AssertionError, ConnectionError):
            return False
        return True

    def close(self):
        self.sock.close()
