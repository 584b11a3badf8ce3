"""FIX 4.4 tag=value codec for the order path: framing, BodyLength and
CheckSum validation, fields to a dict, and messages from field lists.

`FixReader.feed(data)` returns what the bytes so far complete: each message
as a dict {tag: value bytes}, or a `FixError` where one could not be read.
A garbled message (bad framing, BodyLength or CheckSum, MsgType not third)
is skipped: FIX says to ignore it. A message whose frame is sound but whose
fields are not (a tag without a value, a repeated tag) comes back as a
`FixError` with the session-level reject reason and the fields read, so the
session can Reject it by its MsgSeqNum.

`encode` writes a whole message: BeginString, BodyLength, MsgType, the
standard header, the fields given, CheckSum. simplefix is the reference:
tests build random messages with it and check both directions byte for byte.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcpy

from operator import itemgetter


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL

cdef bytes BEGIN = b"8=FIX.4.4\x01"
cdef Py_ssize_t BEGIN_LEN = 10
cdef unsigned char SOH = 1

# SessionRejectReason(373) values the reader reports
INVALID_TAG_NUMBER = 0  # tag not a number
TAG_WITHOUT_VALUE = 4
INCORRECT_DATA_FORMAT = 6
TAG_REPEATED = 13


class FixError(ValueError):
    """A message that could not be read. `garbled`: skipped, as FIX says to
    ignore it (`other_version` if it begins like another FIX version's);
    otherwise `reason` is the SessionRejectReason, `tag` the field at fault
    and `fields` what was read (MsgSeqNum and MsgType among them)."""

    def __init__(self, message, garbled=False, reason=None, tag=None, fields=None,
                 other_version=False, too_large=False):
        super().__init__(message)
        self.garbled = garbled
        self.other_version = other_version  # a FIX message, but not FIX.4.4
        self.too_large = too_large  # MAX_MESSAGE_BYTES arrived without a whole message
        self.reason = reason
        self.tag = tag
        self.fields = fields if fields is not None else {}


cdef inline int _checksum(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef unsigned int total = 0
    cdef Py_ssize_t i
    for i in range(n):
        total += p[i]
    return total % 256


cdef inline int _three_digits(const unsigned char *p) noexcept nogil:
    """The value of three ASCII digits, or -1."""
    cdef int i, value = 0
    for i in range(3):
        if not (48 <= p[i] <= 57):
            return -1
        value = value * 10 + p[i] - 48
    return value


cdef Py_ssize_t _find(const unsigned char *p, Py_ssize_t n, bytes needle, Py_ssize_t start):
    cdef const unsigned char *q = needle
    cdef Py_ssize_t m = len(needle), i, j
    for i in range(start, n - m + 1):
        for j in range(m):
            if p[i + j] != q[j]:
                break
        else:
            return i
    return -1


MAX_MESSAGE_BYTES = 1 << 16  # far above any message the venue reads

cdef class FixReader:
    """Splits a byte stream into FIX messages. With `keep_raw`, `raw` holds
    after each feed the bytes of each message it returned (None for a
    garbled one), for checks that need the fields' order on the wire."""

    cdef bytearray buffer
    cdef bint keep_raw
    cdef public list raw

    def __cinit__(self, bint keep_raw=False):
        self.buffer = bytearray()
        self.keep_raw = keep_raw
        self.raw = []

    def feed(self, data) -> list:
        """Add bytes; return every message they complete, in order."""
        self.buffer += data
        out = []
        if self.keep_raw:
            self.raw = []
        cdef const unsigned char[::1] view
        cdef Py_ssize_t start = 0, n, at, length, body_start, end, k
        cdef int digits
        while True:
            n = len(self.buffer)
            if n - start < BEGIN_LEN + 2:
                break
            view = self.buffer
            if _find(&view[0], n, BEGIN, start) != start:
                at = _find(&view[0], n, BEGIN, start + 1)
                if _find(&view[0], start + 6, b"8=FIX", start) == start:
                    out.append(FixError("garbled: BeginString is not FIX.4.4", garbled=True,
                                        other_version=True))
                else:
                    out.append(FixError("garbled: no BeginString", garbled=True))
                if at < 0:  # keep a tail that may begin the next message
                    start = max(start, n - BEGIN_LEN)
                    view = None
                    break
                start = at
                view = None
                continue
            at = start + BEGIN_LEN
            if view[at] != b"9" or view[at + 1] != b"=":
                out.append(FixError("garbled: BodyLength(9) must follow BeginString", garbled=True))
                start = _next_start(view, n, start)
                view = None
                continue
            at += 2
            length, digits = 0, 0
            while at < n and b"0" <= view[at] <= b"9" and digits < 7:
                length = length * 10 + (view[at] - 48)
                at += 1
                digits += 1
            if at >= n:
                view = None
                break  # the length is still arriving
            if digits == 0 or view[at] != SOH:
                out.append(FixError("garbled: BodyLength(9) is not a number", garbled=True))
                start = _next_start(view, n, start)
                view = None
                continue
            body_start = at + 1
            end = body_start + length + 7  # "10=ccc\x01"
            if n < end:
                view = None
                break
            k = body_start + length
            if not (view[k] == b"1" and view[k + 1] == b"0" and view[k + 2] == b"=" and
                    view[end - 1] == SOH):
                # the frame runs to the first CheckSum at or after BodyLength,
                # as QuickFIX reads it: a length too long swallows what follows
                at = _find(&view[0], n, b"\x0110=", k - 1)
                at = -1 if at < 0 else _find(&view[0], n, b"\x01", at + 4)
                if at < 0:
                    view = None
                    break
                out.append(FixError("garbled: BodyLength(9) does not reach CheckSum(10)",
                                    garbled=True))
                start = at + 1
                view = None
                continue
            if _three_digits(&view[k + 3]) != _checksum(&view[start], k - start):
                out.append(FixError("garbled: CheckSum(10) does not match", garbled=True))
                start = end
                view = None
                continue
            message = _fields(view, body_start, k)
            out.append(message)
            if self.keep_raw and not (isinstance(message, FixError) and message.garbled):
                self.raw.extend([None] * (len(out) - 1 - len(self.raw)))
                self.raw.append(bytes(self.buffer[start:end]))
            start = end
            view = None
        if start:
            del self.buffer[:start]
        if len(self.buffer) > MAX_MESSAGE_BYTES:  # kept, it would be searched on every read
            out.append(FixError(f"garbled: {MAX_MESSAGE_BYTES} bytes without a whole message",
                                garbled=True, too_large=True))
            del self.buffer[:]
        if self.keep_raw:
            self.raw.extend([None] * (len(out) - len(self.raw)))
        return out


cdef Py_ssize_t _next_start(const unsigned char[::1] view, Py_ssize_t n, Py_ssize_t start):
    cdef Py_ssize_t at = _find(&view[0], n, BEGIN, start + 1)
    return at if at >= 0 else max(start + 1, n - BEGIN_LEN)


cdef object _fields(const unsigned char[::1] view, Py_ssize_t at, Py_ssize_t end):
    """The body's fields (MsgType first) as {tag: value}, or a FixError."""
    fields = {}
    cdef Py_ssize_t i, value_start
    cdef int64_t tag
    cdef int count = 0
    while at < end:
        tag, i = 0, at
        while i < end and b"0" <= view[i] <= b"9" and i - at < 9:
            tag = tag * 10 + (view[i] - 48)
            i += 1
        if i == at or i >= end or view[i] != b"=":
            return FixError("a field without a numeric tag", reason=INVALID_TAG_NUMBER,
                            fields=fields)
        value_start = i + 1
        i = value_start
        while i < end and view[i] != SOH:
            i += 1
        if i >= end:
            return FixError("a field without its SOH", reason=INCORRECT_DATA_FORMAT,
                            tag=tag, fields=fields)
        if i == value_start:
            return FixError(f"tag {tag} has no value", reason=TAG_WITHOUT_VALUE, tag=tag,
                            fields=fields)
        if count == 0 and tag != 35:  # FIX: garbled
            return FixError("garbled: MsgType(35) must be the third field", garbled=True)
        if tag in fields:
            return FixError(f"tag {tag} appears more than once", reason=TAG_REPEATED, tag=tag,
                            fields=fields)
        fields[tag] = PyBytes_FromStringAndSize(<const char *>&view[value_start],
                                                i - value_start)
        count += 1
        at = i + 1
    return fields


cdef class _Writer:
    cdef char *data
    cdef Py_ssize_t size, capacity

    def __cinit__(self):
        self.capacity = 1024
        self.data = <char *>malloc(self.capacity)
        if self.data == NULL:
            raise MemoryError()
        self.size = 0

    def __dealloc__(self):
        free(self.data)

    cdef void reserve(self, Py_ssize_t more) except *:
        cdef char *grown
        if self.size + more <= self.capacity:
            return
        while self.size + more > self.capacity:
            self.capacity *= 2
        grown = <char *>realloc(self.data, self.capacity)
        if grown == NULL:
            raise MemoryError()
        self.data = grown

    cdef void put(self, const char *p, Py_ssize_t n) except *:
        self.reserve(n)
        memcpy(self.data + self.size, p, n)
        self.size += n

    cdef inline void put_int(self, int64_t value) noexcept:
        """Digits of value; the caller has reserved 21 bytes."""
        cdef char digits[24]
        cdef int i = 24
        cdef bint negative = value < 0
        cdef unsigned long long v = -value if negative else value
        while True:
            i -= 1
            digits[i] = <char>(48 + v % 10)
            v //= 10
            if v == 0:
                break
        if negative:
            i -= 1
            digits[i] = b"-"
        memcpy(self.data + self.size, &digits[i], 24 - i)
        self.size += 24 - i

    cdef void field(self, int64_t tag, object value) except *:
        cdef const char *p
        cdef Py_ssize_t n
        if isinstance(value, bytes):
            p, n = PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value)
        elif isinstance(value, str):
            p = PyUnicode_AsUTF8AndSize(value, &n)
        elif isinstance(value, int) and not isinstance(value, bool):
            self.reserve(44)
            self.put_int(tag)
            self.data[self.size] = b"="
            self.size += 1
            self.put_int(value)
            self.data[self.size] = 1
            self.size += 1
            return
        else:
            raise TypeError(f"tag {tag}: a FIX value is bytes, str or int, not {type(value)}")
        if n == 0 or memchr(p, 1, n) != NULL:
            raise ValueError(f"tag {tag}: a FIX value is not empty and holds no SOH")
        self.reserve(n + 23)
        self.put_int(tag)
        self.data[self.size] = b"="
        memcpy(self.data + self.size + 1, p, n)
        self.data[self.size + 1 + n] = 1
        self.size += n + 2


cdef _Writer _body = _Writer()  # the loop's thread is the only writer
cdef _Writer _message = _Writer()


def encode(msg_type, sender, target, int64_t seq, sending_time, list fields,
           tuple header=()) -> bytes:
    """One message: 8, 9, 35, then the header in tag order as QuickFIX writes
    it (34, 49, 52, 56 and any of `header`'s (tag, value) pairs: 43, 97,
    122...), then `fields` ((tag, value) pairs, in order; values bytes, str or
    int), then 10."""
    cdef _Writer body = _body
    cdef tuple pair
    body.size = 0
    body.field(35, msg_type)
    if not header:
        body.field(34, seq)
        body.field(49, sender)
        body.field(52, sending_time)
        body.field(56, target)
    else:
        for pair in sorted(((34, seq), (49, sender), (52, sending_time), (56, target))
                           + header, key=itemgetter(0)):
            body.field(pair[0], pair[1])
    for pair in fields:
        body.field(pair[0], pair[1])
    cdef _Writer out = _message
    out.size = 0
    out.put(BEGIN, BEGIN_LEN)
    out.field(9, body.size)
    out.put(body.data, body.size)
    cdef int checksum = _checksum(<const unsigned char *>out.data, out.size)
    cdef char trailer[7]
    trailer[0], trailer[1], trailer[2] = b"1", b"0", b"="
    trailer[3] = <char>(48 + checksum // 100)
    trailer[4] = <char>(48 + checksum // 10 % 10)
    trailer[5] = <char>(48 + checksum % 10)
    trailer[6] = b"\x01"
    out.put(trailer, 7)
    return PyBytes_FromStringAndSize(out.data, out.size)
