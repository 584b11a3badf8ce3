"""Snapshots: the core's state at a sequence number, so recovery replays only the
journal after it.

``snapshot-<seq, 20 digits>.fgs`` is MessagePack (msgspec) of a `Snapshot`
followed by the CRC32 of those bytes (4 bytes, little-endian). It is written to
a temporary name, synced and renamed, so a crash never leaves half a snapshot
under the real name; a damaged one is skipped with a log line.
"""

import logging
import os
import zlib
from pathlib import Path

import msgspec

log = logging.getLogger("flowgate.snapshot")

KEEP = 3  # snapshots kept; older ones are deleted


class Snapshot(msgspec.Struct, frozen=True):
    seq: int  # the last command applied
    ts_ns: int  # its sequencer time
    state_hash: str  # Engine.state_hash() at seq
    config: str  # fingerprint of the venue configuration
    core: dict  # MatchingCore.snapshot()


def path_of(directory: Path, seq: int) -> Path:
    return Path(directory) / f"snapshot-{seq:020d}.fgs"


def encode(snapshot: Snapshot) -> bytes:
    body = msgspec.msgpack.encode(snapshot)
    return body + zlib.crc32(body).to_bytes(4, "little")


def decode(data: bytes) -> Snapshot:
    body, crc = data[:-4], data[-4:]
    if len(data) < 4 or zlib.crc32(body).to_bytes(4, "little") != crc:
        raise ValueError("checksum mismatch")
    return msgspec.msgpack.decode(body, type=Snapshot)


def write(directory: Path, data: bytes, seq: int) -> Path:
    """Store an encoded snapshot durably, then drop all but the newest KEEP
    and what an interrupted write left."""
    final = path_of(directory, seq)
    temporary = final.with_suffix(".tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in sorted(Path(directory).glob("snapshot-*.fgs"))[:-KEEP]:
        old.unlink()
    for unfinished in Path(directory).glob("snapshot-*.tmp"):  # a writer killed midway
        unfinished.unlink(missing_ok=True)
    return final


def all_snapshots(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("snapshot-*.fgs"))


def latest(directory: Path, config: str, at_most_seq: int | None = None) -> Snapshot | None:
    """The newest sound snapshot of this configuration (and not past
    at_most_seq); damaged or foreign ones are skipped with a log line."""
    for path in reversed(all_snapshots(directory)):
        try:
            snapshot = decode(path.read_bytes())
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            log.warning(
                "snapshot unreadable, skipped", extra={"file": str(path), "error": str(exc)}
            )
            continue
        if snapshot.config != config:
            log.warning("snapshot of another configuration, skipped", extra={"file": str(path)})
            continue
        if at_most_seq is not None and snapshot.seq > at_most_seq:
            continue
        return snapshot
    return None
