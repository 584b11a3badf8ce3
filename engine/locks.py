"""Exclusive file locks that the OS drops when their holder dies."""

import fcntl
import time
from pathlib import Path
from typing import BinaryIO


def exclusive_lock(path: Path, wait_s: float) -> BinaryIO | None:
    """Hold an exclusive lock on `path` (created if need be) until the returned
    file is closed; wait up to wait_s for another holder to let go. None if
    it did not."""
    lock = open(path, "a+b")  # noqa: SIM115 - held until the caller closes it
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() >= deadline:
                lock.close()
                return None
            time.sleep(0.05)
