"""The FIX message store: one per session identity (SenderCompID,
TargetCompID), in the data directory, so sequence numbers and the messages
sent survive reconnects and restarts and a ResendRequest can be answered.

`fix/<sender>-<target>/account` names the account the identity belongs to
(the account of the first key that logged on with it); `seqnums` holds the
next incoming and outgoing MsgSeqNum (two little-endian int64, rewritten in
place, and only when they change; the incoming one stays at a command whose
answer is not stored yet, so after a crash the peer sends it again; `refused`
lists the commands refused behind such a number); `messages` appends each sent message
as a record `seq (int64), length (int32), bytes`. Writes go to the file at
once (they survive a crash of the process, like the journal's default); a
record cut short by a crash is dropped when the store opens. Reset
(ResetSeqNumFlag) starts both numbers at 1 and empties the file.
"""

import os
import re
import struct
from pathlib import Path

SEQNUMS = struct.Struct("<qq")
RECORD = struct.Struct("<qi")
SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _records(data: bytes):
    """(seq, start, length) of each whole record in a messages file, in order
    (a record torn by a crash ends them)."""
    at = 0
    while at + RECORD.size <= len(data):
        seq, length = RECORD.unpack_from(data, at)
        if at + RECORD.size + length > len(data):
            return
        yield seq, at + RECORD.size, length
        at += RECORD.size + length


class MessageStore:
    def __init__(self, data_dir: Path, sender: str, target: str):
        """`sender` and `target` as this side sends them (its SenderCompID first)."""
        self.sender, self.target = sender, target
        self.directory = Path(data_dir) / "fix" / f"{SAFE.sub('_', sender)}-{SAFE.sub('_', target)}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.seqnums_fd = os.open(self.directory / "seqnums", os.O_RDWR | os.O_CREAT, 0o600)
        raw = os.pread(self.seqnums_fd, SEQNUMS.size, 0)
        self.saved = SEQNUMS.unpack(raw) if len(raw) == SEQNUMS.size else None  # the file's
        self.next_in, self.next_out = self.saved or (1, 1)
        self.messages_fd = os.open(self.directory / "messages", os.O_RDWR | os.O_CREAT, 0o600)
        self.index: dict[int, tuple[int, int]] = {}  # seq -> (offset of the bytes, length)
        self.unanswered: dict[int, None] = {}  # incoming numbers held, oldest first
        self.size = self._load()
        if self.index:  # a crash between a record and the numbers: the record counts
            self.next_out = max(self.next_out, max(self.index) + 1)
        # incoming commands refused for a passing reason (a rate limit, a full
        # ring) behind a held number: if a crash makes the peer send them
        # again, they are duplicates, not new requests
        self.refused_fd = os.open(self.directory / "refused", os.O_RDWR | os.O_CREAT, 0o600)
        raw = os.pread(self.refused_fd, os.fstat(self.refused_fd).st_size, 0)
        self.refused = {int.from_bytes(raw[i : i + 8], "little")
                        for i in range(0, len(raw) - 7, 8)}  # fmt: skip
        owner = self.directory / "account"
        self.account = int(owner.read_text()) if owner.exists() else 0  # 0: nobody's yet

    def claim(self, account: int) -> bool:
        """Whether the identity is `account`'s: it is if it was nobody's yet."""
        if not self.account:
            partial = self.directory / "account.partial"
            partial.write_text(str(account))
            os.replace(partial, self.directory / "account")
            self.account = account
        return self.account == account

    @staticmethod
    def sent_messages(directory: Path):
        """Every message a store directory holds, oldest first (for recovery,
        before any session opens it)."""
        data = (Path(directory) / "messages").read_bytes()
        for _, start, length in _records(data):
            yield data[start : start + length]

    def _load(self) -> int:
        """Index the records; cut a torn last one."""
        data = os.pread(self.messages_fd, os.fstat(self.messages_fd).st_size, 0)
        end = 0
        for seq, start, length in _records(data):
            self.index[seq] = (start, length)
            end = start + length
        if end < len(data):
            os.ftruncate(self.messages_fd, end)
        return end

    def _save_seqnums(self):
        # the next incoming number as the next start should expect it: the oldest
        # command still unanswered, which the peer is then asked to send again
        numbers = (next(iter(self.unanswered), self.next_in), self.next_out)
        if numbers != self.saved:  # (a command held for its answer changes neither)
            os.pwrite(self.seqnums_fd, SEQNUMS.pack(*numbers), 0)
            self.saved = numbers

    def set_next_in(self, seq: int):
        self.next_in = seq
        self._save_seqnums()
        if self.refused and not self.unanswered and seq > max(self.refused):
            self.refused.clear()  # the peer is past them: nothing to tell apart now
            os.ftruncate(self.refused_fd, 0)

    def note_refused(self, seq: int):
        """A command refused for a passing reason; kept while a held number
        before it could bring it back."""
        if self.unanswered and seq > next(iter(self.unanswered)) and seq not in self.refused:
            self.refused.add(seq)
            os.pwrite(self.refused_fd, seq.to_bytes(8, "little"), 8 * (len(self.refused) - 1))

    def hold(self, seq: int):
        """Incoming message `seq` went to the engine: until its answer is
        stored (`release`), a restart asks for it again."""
        self.unanswered[seq] = None

    def release(self, seq: int):
        """Its answer is being stored (the next save counts it)."""
        self.unanswered.pop(seq, None)

    def sent(self, seq: int, message: bytes):
        """Record a message just sent as `seq`; the next one is seq + 1."""
        record = RECORD.pack(seq, len(message)) + message
        os.pwrite(self.messages_fd, record, self.size)
        self.index[seq] = (self.size + RECORD.size, len(message))
        self.size += len(record)
        self.next_out = seq + 1
        self._save_seqnums()

    def messages(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """The stored messages with seq in [begin, end] (end 0: to the last), in order."""
        last = self.next_out - 1 if end == 0 else min(end, self.next_out - 1)
        out = []
        for seq in range(begin, last + 1):
            place = self.index.get(seq)
            if place is not None:
                out.append((seq, os.pread(self.messages_fd, place[1], place[0])))
        return out

    def reset(self):
        """Both sequence numbers back to 1, no messages kept."""
        os.ftruncate(self.messages_fd, 0)
        self.index.clear()
        self.unanswered.clear()
        self.refused.clear()
        os.ftruncate(self.refused_fd, 0)
        self.size = 0
        self.next_in = self.next_out = 1
        self._save_seqnums()

    def close(self):
        os.close(self.seqnums_fd)
        os.close(self.messages_fd)
        os.close(self.refused_fd)
