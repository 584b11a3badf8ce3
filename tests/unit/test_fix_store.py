"""The FIX message store keeps sequence numbers and sent messages across a
reopen, answers ranges for resends, drops a torn last record, and resets."""

import os

from gateways.fix.store import SEQNUMS, MessageStore


def test_numbers_and_messages_survive_a_reopen(tmp_path):
    store = MessageStore(tmp_path, "FLOWGATE", "CLIENT/1")
    assert (store.next_in, store.next_out) == (1, 1)
    for seq in range(1, 6):
        store.sent(seq, b"message %d" % seq)
    store.set_next_in(4)
    store.close()
    again = MessageStore(tmp_path, "FLOWGATE", "CLIENT/1")
    assert (again.next_in, again.next_out) == (4, 6)
    assert again.messages(2, 3) == [(2, b"message 2"), (3, b"message 3")]
    assert [seq for seq, _ in again.messages(4, 0)] == [4, 5]  # 0: to the last
    assert again.messages(7, 0) == []
    again.close()


def test_a_torn_last_record_is_dropped(tmp_path):
    store = MessageStore(tmp_path, "A", "B")
    store.sent(1, b"whole")
    store.sent(2, b"cut short by a crash")
    store.close()
    path = next(tmp_path.glob("fix/*/messages"))
    os.truncate(path, path.stat().st_size - 5)
    again = MessageStore(tmp_path, "A", "B")
    assert again.messages(1, 0) == [(1, b"whole")]
    again.sent(3, b"after")  # appends where the whole records end
    assert again.messages(1, 0) == [(1, b"whole"), (3, b"after")]
    again.close()


def test_reset_starts_both_sequences_afresh(tmp_path):
    store = MessageStore(tmp_path, "A", "B")
    store.sent(1, b"x")
    store.set_next_in(9)
    store.reset()
    assert (store.next_in, store.next_out, store.messages(1, 0)) == (1, 1, [])
    store.close()
    again = MessageStore(tmp_path, "A", "B")
    assert (again.next_in, again.next_out) == (1, 1)
    again.close()


def test_a_record_stored_before_its_numbers_still_counts(tmp_path):
    store = MessageStore(tmp_path, "A", "B")
    store.sent(1, b"one")
    numbers = (store.directory / "seqnums").read_bytes()
    store.sent(2, b"two")
    store.close()
    (store.directory / "seqnums").write_bytes(numbers)  # the crash came between the writes
    again = MessageStore(tmp_path, "A", "B")
    assert again.next_out == 3  # 2 is taken: its record is there
    again.close()


def test_the_stored_incoming_number_waits_for_unanswered_commands(tmp_path):
    store = MessageStore(tmp_path, "A", "B")
    store.set_next_in(5)
    store.hold(5)  # a command went to the engine
    store.set_next_in(6)
    store.note_refused(6)  # a rate limit refused the next one at once
    store.set_next_in(7)
    store.close()
    again = MessageStore(tmp_path, "A", "B")
    assert (again.next_in, again.refused) == (5, {6})  # 5 asked for again; 6 was answered
    again.set_next_in(7)  # past both: nothing to tell apart any more
    assert again.refused == set()
    again.close()
    assert MessageStore(tmp_path, "A", "B").next_in == 7


def test_the_numbers_are_written_when_they_change_and_only_then(tmp_path, monkeypatch):
    store = MessageStore(tmp_path, "A", "B")
    written = []
    pwrite = os.pwrite

    def recording(fd, data, offset):
        if fd == store.seqnums_fd:
            written.append(SEQNUMS.unpack(data))
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", recording)
    store.set_next_in(5)  # a command numbered 4 arrived: expect 5
    store.hold(5)  # command 5 went to the engine...
    store.set_next_in(6)  # ...so 5 is still the number to ask for again: nothing to write
    assert written == [(5, 1)]
    store.release(5)
    store.sent(1, b"its answer")  # answered: 6 next, and 2 out
    store.sent(2, b"a heartbeat")
    assert written == [(5, 1), (6, 2), (6, 3)]
    store.close()
    again = MessageStore(tmp_path, "A", "B")
    assert (again.next_in, again.next_out) == (6, 3)
    again.close()
