"""The journal: every command, in sequence, on disk before its effects are
acknowledged.

A journal is a run of segment files ``journal-<first seq, 20 digits>.fgj`` in the
data directory. Each holds consecutive journal frames (``ext.core.JournalFrame``:
payload length, CRC32, then the stamped command record) and nothing else. The
sequencer's batch goes to disk with one ``write`` (group commit); a new segment
starts when the current one would pass ``segment_bytes``.
"""

import enum
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ext.core import FRAME_SIZE, FrameProblem, scan_frames

log = logging.getLogger("flowgate.journal")

SEGMENT_GLOB = "journal-*.fgj"
DEFAULT_SEGMENT_BYTES = 64 << 20  # 512k commands


class Durability(enum.StrEnum):
    FSYNC = "fsync"  # on stable storage before any acknowledgement
    WRITE = "write"  # in the page cache before any acknowledgement: survives a process crash
    NONE = "none"  # not written at all (benchmarks only)


class JournalError(Exception):
    """The journal cannot be trusted: a damaged record before its end, or a gap."""


def segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"journal-{first_seq:020d}.fgj"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment, oldest first."""
    found = [(int(p.stem.split("-")[1]), p) for p in Path(directory).glob(SEGMENT_GLOB)]
    return sorted(found)


class Journal:
    """Appends sequenced frames; one write per batch, then fsync in FSYNC mode."""

    def __init__(
        self,
        directory: Path,
        next_seq: int,
        durability: Durability = Durability.WRITE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ):
        self.directory = Path(directory)
        self.durability = Durability(durability)
        self.segment_bytes = max(segment_bytes, FRAME_SIZE)
        self.next_seq = next_seq
        self.fd = -1
        self.segment_size = 0
        self.bytes_written = 0
        self.write_ns = 0  # total time in write()
        self.fsync_ns = 0  # total time in fsync()
        if self.durability != Durability.NONE:
            # each start opens a segment of its own, so no segment ever holds a
            # jump in sequence numbers, whatever the previous run left behind
            self.directory.mkdir(parents=True, exist_ok=True)
            self._open(segment_path(self.directory, next_seq))

    def _open(self, path: Path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.segment_size = os.fstat(self.fd).st_size
        if self.durability == Durability.FSYNC:
            _fsync_directory(self.directory)

    def append(self, frames) -> None:
        """Write a batch of frames whose first seq is `next_seq`; return when the
        durability mode is satisfied."""
        size = len(frames)
        if size % FRAME_SIZE:
            raise ValueError("not a whole number of frames")
        if size == 0:
            return
        if self.durability != Durability.NONE:
            if self.fd < 0 or (self.segment_size and self.segment_size + size > self.segment_bytes):
                self._rotate()
            started = time.perf_counter_ns()
            written = os.write(self.fd, frames)
            while written < size:  # a regular file takes it all, short of a full disk
                written += os.write(self.fd, frames[written:])
            wrote = time.perf_counter_ns()
            self.write_ns += wrote - started
            if self.durability == Durability.FSYNC:
                os.fdatasync(self.fd)
                self.fsync_ns += time.perf_counter_ns() - wrote
            self.segment_size += size
            self.bytes_written += size
        self.next_seq += size // FRAME_SIZE

    def _rotate(self):
        if self.fd >= 0:
            if self.durability == Durability.FSYNC:
                os.fsync(self.fd)
            os.close(self.fd)
        self._open(segment_path(self.directory, self.next_seq))

    def close(self):
        if self.fd >= 0:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


def _fsync_directory(directory: Path):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_torn_tail(data: bytes, bad_offset: int, problem: FrameProblem) -> bool:
    """Damage a crash can leave: a frame cut short, a last frame half written, or
    zeros where the file system had not yet stored the data."""
    if problem == FrameProblem.FRAME_SHORT:
        return True
    rest = memoryview(data)[bad_offset + FRAME_SIZE :]
    return len(rest) == 0 or not any(rest)


def check(directory: Path, after_seq: int = 0, repair: bool = True) -> int:
    """Verify every frame after `after_seq` and truncate a torn tail (when
    `repair`); return the last sound sequence number (after_seq when there is
    nothing after it).

    Raises JournalError for damage anywhere but the tail, or a gap.
    """
    last = after_seq
    found = segments(directory)
    for index, (first, path) in enumerate(found):
        following = found[index + 1][0] if index + 1 < len(found) else None
        if following is not None and following <= after_seq + 1:
            continue  # wholly at or before after_seq: the snapshot covers it
        if first > last + 1:
            raise JournalError(f"{path}: starts at seq {first}, expected {last + 1} (a gap)")
        data = path.read_bytes()
        count, problem = scan_frames(data, first)
        if problem != FrameProblem.FRAME_OK:
            bad_offset = count * FRAME_SIZE
            if following is None and _is_torn_tail(data, bad_offset, problem):
                log.warning(
                    "journal tail torn: truncating" if repair else "journal tail torn",
                    extra={"file": str(path), "offset": bad_offset, "seq": first + count,
                           "problem": problem.name, "bytes_dropped": len(data) - bad_offset},
                )  # fmt: skip
                if repair:
                    with open(path, "r+b") as f:
                        f.truncate(bad_offset)
                        os.fsync(f.fileno())
            else:
                raise JournalError(
                    f"{path}: {problem.name} at offset {bad_offset} (seq {first + count}); "
                    "the journal is damaged before its end and cannot be replayed"
                )
        last = max(last, first + count - 1)
    return last


def read_frames(
    directory: Path, after_seq: int, until_seq: int, chunk: int = 4096
) -> Iterator[memoryview]:
    """The frames with after_seq < seq <= until_seq, in blocks of up to `chunk`
    frames, from a journal that `check` has passed up to until_seq."""
    found = segments(directory)
    for index, (first, path) in enumerate(found):
        following = found[index + 1][0] if index + 1 < len(found) else None
        if following is not None and following <= after_seq + 1:
            continue  # the whole segment is at or before after_seq
        if first > until_seq:
            return
        data = memoryview(path.read_bytes())
        start = max(0, after_seq + 1 - first) * FRAME_SIZE
        end = min(len(data), (until_seq + 1 - first) * FRAME_SIZE)
        for offset in range(start, end, chunk * FRAME_SIZE):
            yield data[offset : min(end, offset + chunk * FRAME_SIZE)]
