"""The journal: every command, in sequence, on disk before its effects are
acknowledged.

A journal is a run of segment files ``journal-<first seq, 20 digits>.fgj`` in the
data directory. Each holds consecutive journal frames (``ext.core.JournalFrame``:
payload length, CRC32, then the stamped command record) and nothing else. The
sequencer's batch goes to disk with one ``write`` (group commit); a new segment
starts when the current one would pass ``segment_bytes``.
"""

import concurrent.futures
import enum
import logging
import mmap
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from engine import placement
from ext.core import FRAME_SIZE, FrameProblem, scan_frames, zero_fill

log = logging.getLogger("flowgate.journal")

SEGMENT_GLOB = "journal-*.fgj"
DEFAULT_SEGMENT_BYTES = 64 << 20  # ~490k commands
SPARE_FILE = "journal-spare.tmp"  # the next segment, zero-filled ahead of need


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
    """The journal's writing end.

    A segment is preallocated and memory-mapped, and the sequencer writes its
    frames straight into the mapping (`reserve`, then `commit`): in WRITE mode
    the frames are in the page cache, safe from a process crash, without a
    system call; FSYNC mode adds one fdatasync per batch. NONE hands out a
    scratch buffer. A segment is trimmed to its frames when it is closed;
    after a crash, recovery trims the unused zeros.
    """

    def __init__(
        self,
        directory: Path,
        next_seq: int,
        durability: Durability = Durability.WRITE,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        batch_frames: int = 1024,
    ):
        self.directory = Path(directory)
        self.durability = Durability(durability)
        # per batch: flags, not enum comparisons (each ~80 ns)
        self.writes = self.durability is not Durability.NONE
        self.syncs = self.durability is Durability.FSYNC
        self.batch_bytes = batch_frames * FRAME_SIZE
        self.segment_bytes = max(segment_bytes // FRAME_SIZE * FRAME_SIZE, self.batch_bytes)
        self.next_seq = next_seq
        self.fd = -1
        self.map: mmap.mmap | None = None
        self.used = 0  # bytes of frames in the current segment
        self.bytes_written = 0
        self.fsync_ns = 0  # total time in fdatasync
        self.scratch = memoryview(bytearray(self.batch_bytes))
        self._preparer = concurrent.futures.ThreadPoolExecutor(
            1, "flowgate-journal", initializer=placement.background_thread
        )
        self._spare: concurrent.futures.Future | None = None
        if self.writes:
            self.directory.mkdir(parents=True, exist_ok=True)
            # each start opens a segment of its own, so no segment ever holds a
            # jump in sequence numbers, whatever the previous run left behind
            self._open()

    def _open(self):
        spare = self._spare.result() if self._spare else self._prepare_spare()
        path = segment_path(self.directory, self.next_seq)
        os.replace(spare, path)  # recovery left any segment of this name empty
        self.fd = os.open(path, os.O_RDWR)
        self.used = 0
        self.map = mmap.mmap(self.fd, self.segment_bytes, mmap.MAP_SHARED)
        self.view = memoryview(self.map)
        if self.syncs:
            _fsync_directory(self.directory)
        self._spare = self._preparer.submit(self._prepare_spare)

    def _prepare_spare(self) -> Path:
        """The next segment's file, made ahead in the background: zeros written
        out, not just allocated. Through a mapping, the first write into an
        allocated but unwritten extent can stall for milliseconds (ext4
        converts the extent there), and written blocks cannot run out of disk
        space later."""
        path = self.directory / SPARE_FILE
        if path.exists() and path.stat().st_size == self.segment_bytes:
            return path  # left by the previous run
        fd, partial = tempfile.mkstemp(".partial", "journal-spare-", self.directory)
        try:
            zero_fill(fd, self.segment_bytes)  # without the GIL: the loop runs meanwhile
        finally:
            os.close(fd)
        os.replace(partial, path)
        return path

    def reserve(self, n_frames: int) -> memoryview:
        """Room for up to n_frames (at most batch_frames) frames, starting with
        seq `next_seq`. The view must be dropped before the next reserve or
        close: either may unmap the segment."""
        size = min(n_frames * FRAME_SIZE, self.batch_bytes)
        if not self.writes:
            return self.scratch[:size]
        if self.used + size > self.segment_bytes:
            self._close_segment()
            self._open()
        return self.view[self.used : self.used + size]

    def commit(self, n_frames: int):
        """The first n_frames of the reserved room now hold sequenced frames;
        returns once the durability mode is satisfied."""
        self.next_seq += n_frames
        if not self.writes or n_frames == 0:
            return
        self.used += n_frames * FRAME_SIZE
        self.bytes_written += n_frames * FRAME_SIZE
        if self.syncs:
            started = time.perf_counter_ns()
            os.fdatasync(self.fd)
            self.fsync_ns += time.perf_counter_ns() - started

    def append(self, frames) -> None:
        """Copy in frames made elsewhere (tools and tests)."""
        frames = memoryview(frames)
        while frames:
            room = self.reserve(len(frames) // FRAME_SIZE)
            n = len(room)
            room[:] = frames[:n]
            del room  # the mapping may be closed by the next reserve
            self.commit(n // FRAME_SIZE)
            frames = frames[n:]

    def _close_segment(self):
        self.view.release()
        self.map.close()
        os.ftruncate(self.fd, self.used)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd, self.map = -1, None

    def close(self):
        if self.fd >= 0:
            self._close_segment()
        self._preparer.shutdown(wait=True)


def _fsync_directory(directory: Path):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check(directory: Path, after_seq: int = 0, repair: bool = True) -> int:
    """Verify every frame after `after_seq`; return the last sound sequence
    number (after_seq when there is nothing after it).

    A segment ends at its last sound frame when only zeros follow (space
    preallocated and never used). In the last segment, a bad frame followed by
    nothing or zeros is a tail torn by a crash: logged, and cut off when
    `repair`. Any other damage, or a gap, is JournalError.
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
        end = count * FRAME_SIZE
        if problem != FrameProblem.FRAME_OK:
            unused = not any(memoryview(data)[end:])
            # what a crash can do to the last frame being written
            torn = problem == FrameProblem.FRAME_SHORT or not any(
                memoryview(data)[end + FRAME_SIZE :]
            )
            if not unused and (following is not None or not torn):
                raise JournalError(
                    f"{path}: {problem.name} at offset {end} (seq {first + count}); "
                    "the journal is damaged before its end and cannot be replayed"
                )
            if not unused:
                log.warning(
                    "journal tail torn: truncating" if repair else "journal tail torn",
                    extra={"file": str(path), "offset": end, "seq": first + count,
                           "problem": problem.name, "bytes_dropped": len(data) - end},
                )  # fmt: skip
            if repair and following is None:
                with open(path, "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
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
        last = until_seq if following is None else min(until_seq, following - 1)
        end = min(len(data), (last + 1 - first) * FRAME_SIZE)
        for offset in range(start, end, chunk * FRAME_SIZE):
            yield data[offset : min(end, offset + chunk * FRAME_SIZE)]
