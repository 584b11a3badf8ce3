"""Journal frames and files: CRC, scanning, rotation, torn tails, corruption."""

import logging
import random
import zlib

import numpy as np
import pytest

from engine import journal
from engine.journal import Durability, Journal, JournalError
from engine.records import FRAME_DTYPE
from ext.core import FRAME_SIZE, FrameProblem, crc32, scan_frames, seal_frames


def frames(first_seq: int, n: int) -> bytes:
    out = np.zeros(n, dtype=FRAME_DTYPE)
    out["command"]["seq"] = np.arange(first_seq, first_seq + n)
    out["command"]["ts_ns"] = 1_000 + np.arange(n)
    out["command"]["price"] = random.Random(first_seq).randrange(1, 10**9)
    seal_frames(out.view(np.uint8))
    return out.tobytes()


def test_crc_is_zlibs():
    rng = random.Random(5)
    for size in [0, 1, 7, 8, 9, 63, 128, 1000]:
        data = rng.randbytes(size)
        assert crc32(data) == zlib.crc32(data), size


def test_scan_names_the_first_bad_frame():
    good = frames(10, 4)
    assert scan_frames(good, 10) == (4, FrameProblem.FRAME_OK)
    assert scan_frames(good, 11) == (0, FrameProblem.FRAME_BAD_SEQ)
    assert scan_frames(good[:-5], 10) == (3, FrameProblem.FRAME_SHORT)
    flipped = bytearray(good)
    flipped[2 * FRAME_SIZE + 40] ^= 1
    assert scan_frames(bytes(flipped), 10) == (2, FrameProblem.FRAME_BAD_CRC)
    wrong_length = bytearray(good)
    wrong_length[FRAME_SIZE] = 7
    assert scan_frames(bytes(wrong_length), 10) == (1, FrameProblem.FRAME_BAD_LENGTH)


def write(directory, first_seq, batches, segment_frames=1000, durability=Durability.WRITE):
    j = Journal(directory, first_seq, durability, segment_bytes=segment_frames * FRAME_SIZE,
                batch_frames=min(segment_frames, 100))  # fmt: skip
    seq = first_seq
    for n in batches:
        j.append(frames(seq, n))
        seq += n
    j.close()
    return j


def read_all(directory, after=0, until=10**9) -> bytes:
    return b"".join(bytes(b) for b in journal.read_frames(directory, after, until, chunk=3))


def test_segments_rotate_and_read_back_in_order(tmp_path):
    write(tmp_path, 1, [2, 2, 2, 3, 1], segment_frames=4)
    names = [p.name for _, p in journal.segments(tmp_path)]
    assert names == [f"journal-{s:020d}.fgj" for s in (1, 5, 7)]
    assert journal.check(tmp_path) == 10
    assert read_all(tmp_path) == b"".join(
        frames(s, n) for s, n in [(1, 2), (3, 2), (5, 2), (7, 3), (10, 1)]
    )
    assert read_all(tmp_path, after=6) == frames(7, 3) + frames(10, 1)
    assert read_all(tmp_path, after=2, until=8) == frames(3, 2) + frames(5, 2) + frames(7, 2)
    assert journal.check(tmp_path, after_seq=6) == 10


def test_a_new_run_continues_in_a_segment_of_its_own(tmp_path):
    write(tmp_path, 1, [3])
    write(tmp_path, 4, [2])
    assert len(journal.segments(tmp_path)) == 2
    assert journal.check(tmp_path) == 5


@pytest.mark.parametrize("tail", [b"\x01" * 50, b"\x07" + b"\x00" * 300, frames(4, 1)[:-1]])
def test_a_torn_tail_is_truncated_with_a_log_line(tmp_path, caplog, tail):
    write(tmp_path, 1, [3])
    ((_, path),) = journal.segments(tmp_path)
    with open(path, "ab") as f:
        f.write(tail)
    with caplog.at_level(logging.WARNING, "flowgate.journal"):
        assert journal.check(tmp_path) == 3
    assert "torn" in caplog.text
    assert path.stat().st_size == 3 * FRAME_SIZE


def test_a_damaged_last_frame_is_a_torn_tail(tmp_path):
    write(tmp_path, 1, [3])
    ((_, path),) = journal.segments(tmp_path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert journal.check(tmp_path) == 2


def test_damage_in_the_middle_stops_start_up(tmp_path):
    write(tmp_path, 1, [5])
    ((_, path),) = journal.segments(tmp_path)
    data = bytearray(path.read_bytes())
    data[FRAME_SIZE + 60] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=rf"FRAME_BAD_CRC at offset {FRAME_SIZE} \(seq 2\)"):
        journal.check(tmp_path)
    assert path.stat().st_size == 5 * FRAME_SIZE  # nothing repaired


def test_damage_in_an_earlier_segment_is_not_a_tail(tmp_path):
    write(tmp_path, 1, [2, 2], segment_frames=2)
    first = journal.segments(tmp_path)[0][1]
    first.write_bytes(first.read_bytes()[:-10])
    with pytest.raises(JournalError):
        journal.check(tmp_path)


def test_a_missing_segment_is_a_gap(tmp_path):
    write(tmp_path, 1, [2, 2, 2], segment_frames=2)
    journal.segments(tmp_path)[1][1].unlink()
    with pytest.raises(JournalError, match="gap"):
        journal.check(tmp_path)


def test_durability_modes(tmp_path):
    fsynced = write(tmp_path / "f", 1, [2, 2], durability=Durability.FSYNC)
    assert fsynced.fsync_ns > 0 and fsynced.bytes_written == 4 * FRAME_SIZE
    assert journal.check(tmp_path / "f") == 4
    none = write(tmp_path / "n", 1, [2], durability=Durability.NONE)
    assert none.bytes_written == 0 and not (tmp_path / "n").exists()


def test_a_crash_leaves_preallocated_zeros_that_are_not_damage(tmp_path, caplog):
    crashed = Journal(tmp_path, 1, segment_bytes=100 * FRAME_SIZE, batch_frames=10)
    crashed.append(frames(1, 3))  # never closed: the segment keeps its preallocated size
    ((_, path),) = journal.segments(tmp_path)
    assert path.stat().st_size == 100 * FRAME_SIZE
    following = Journal(tmp_path, 4, segment_bytes=100 * FRAME_SIZE, batch_frames=10)
    following.append(frames(4, 2))  # crashed as well
    with caplog.at_level(logging.WARNING, "flowgate.journal"):
        assert journal.check(tmp_path, repair=False) == 5  # zeros end the first segment
        assert read_all(tmp_path, until=5) == frames(1, 3) + frames(4, 2)
        assert journal.check(tmp_path) == 5
    assert caplog.text == ""  # nothing was torn
    assert journal.segments(tmp_path)[-1][1].stat().st_size == 2 * FRAME_SIZE


def test_the_sequencer_writes_into_the_journal_mapping(tmp_path):
    j = Journal(tmp_path, 1, segment_bytes=4 * FRAME_SIZE, batch_frames=3)
    room = j.reserve(10)
    assert len(room) == 3 * FRAME_SIZE  # at most a batch
    room[: 2 * FRAME_SIZE] = frames(1, 2)
    j.commit(2)
    del room
    room = j.reserve(3)  # 2 + 3 frames do not fit a 4-frame segment: a new one
    room[:FRAME_SIZE] = frames(3, 1)
    j.commit(1)
    del room
    j.close()
    assert [first for first, _ in journal.segments(tmp_path)] == [1, 3]
    assert read_all(tmp_path) == frames(1, 2) + frames(3, 1)
