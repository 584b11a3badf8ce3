"""Start the real `flowgate serve` in a subprocess for integration and recovery
tests, and find its ports in its structured log."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT_S = 30


def configured_venue(data_dir: Path, sections: dict[str, dict[str, int]],
                     accounts: int = 4) -> tuple[str, ...]:  # fmt: skip
    """The demo venue with other limits (or risk, capacity...), keys and
    demo-credentials.json included: the `serve` arguments that start it."""
    from engine.config import demo_toml
    from gateways.auth.keys import KeyStore, write_demo_credentials

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir.with_name(data_dir.name + ".toml")
    config.write_text(demo_toml(accounts, sections))
    store = KeyStore(data_dir)
    write_demo_credentials(store, data_dir, list(range(1, accounts + 1)))
    store.close()
    return ("--config", str(config))


class ServerProcess:
    def __init__(self, data_dir: Path, *args: str):
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.offset = self.log.tell()
        command = [sys.executable, "-m", "engine.cli", "serve", "--data-dir", str(data_dir),
                   "--record-port", "0", "--ws-port", "0", "--rest-port", "0",
                   "--fix-port", "0", *args]  # fmt: skip
        if "--engine-process" not in args:
            command += ["--metrics-port", "0"]
        if "--config" not in args:
            command.append("--demo")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        self.ready = self.wait_for("ready")
        self.record_port = self.ready["record_port"]
        self.metrics_port = self.ready.get("metrics_port")
        self.ws_port = self.ready["ws_port"]
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}/v1/ws"
        self.rest_port = self.ready["rest_port"]
        self.fix_port = self.ready["fix_port"]

    def child_pid(self) -> int:
        """The server's child process besides multiprocessing's resource
        tracker: the engine with --engine-process, else the history writer."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        (engine,) = [
            int(child)
            for child in children
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
        ]
        return engine

    def lines(self) -> list[dict]:
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return [json.loads(line) for line in f.read().splitlines() if line.startswith(b"{")]

    def wait_for(self, msg: str) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.get("msg") == msg:
                    return line
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.text()}")
            time.sleep(0.02)
        raise TimeoutError(f"no {msg!r} line: {self.text()}")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        """SIGTERM: a clean shutdown."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code

    def kill(self):
        self.process.kill()  # SIGKILL: no chance to flush anything
        self.process.wait(timeout=30)
        self.log.close()


def credentials(server: ServerProcess, account: int, key_type: str = "ed25519"):
    """The SDK credentials of one of the account's keys (demo-credentials.json)."""
    from flowgate_client import Credentials

    entries = json.loads((server.data_dir / "demo-credentials.json").read_text())
    entry = next(e for e in entries if e["account"] == account and e["type"] == key_type)
    return Credentials.from_entry(entry)
