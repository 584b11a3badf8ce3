# -- JOURNAL FRAMES ------------------------------------------------------------
# Included by core.pyx. The sequencer's stage: commands leave the command ring
# as journal frames, stamped and sealed, and the core applies them from there,
# so what is on disk is byte for byte what was applied.

cdef extern from *:
    """
    /* CRC32 with zlib's polynomial, eight bytes per step (slice-by-8). */
    static uint32_t fg_crc_table[8][256];

    static void fg_crc32_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
            fg_crc_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
            for (int t = 1; t < 8; t++)
                fg_crc_table[t][i] = (fg_crc_table[t - 1][i] >> 8)
                                     ^ fg_crc_table[0][fg_crc_table[t - 1][i] & 0xffu];
    }

    static inline uint32_t fg_load32(const unsigned char *p) {
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }

    static uint32_t fg_crc32(const unsigned char *p, size_t n) {
        uint32_t crc = 0xffffffffu;
        for (; n >= 8; p += 8, n -= 8) {
            uint32_t lo = crc ^ fg_load32(p), hi = fg_load32(p + 4);
            crc = fg_crc_table[7][lo & 0xffu] ^ fg_crc_table[6][(lo >> 8) & 0xffu]
                ^ fg_crc_table[5][(lo >> 16) & 0xffu] ^ fg_crc_table[4][lo >> 24]
                ^ fg_crc_table[3][hi & 0xffu] ^ fg_crc_table[2][(hi >> 8) & 0xffu]
                ^ fg_crc_table[1][(hi >> 16) & 0xffu] ^ fg_crc_table[0][hi >> 24];
        }
        for (; n; p++, n--) crc = fg_crc_table[0][(crc ^ *p) & 0xffu] ^ (crc >> 8);
        return ~crc;
    }
    """
    void fg_crc32_init() nogil
    uint32_t fg_crc32(const unsigned char *p, size_t n) nogil

fg_crc32_init()

FRAME_SIZE = sizeof(JournalFrame)


cpdef enum FrameProblem:
    FRAME_OK = 0
    FRAME_SHORT = 1         # the data ends inside the frame
    FRAME_BAD_LENGTH = 2
    FRAME_BAD_CRC = 3
    FRAME_BAD_SEQ = 4       # not the sequence number that follows


def crc32(const unsigned char[::1] data):
    """The CRC32 the journal seals frames with; equal to zlib.crc32(data)."""
    if data.shape[0] == 0:
        return 0
    return fg_crc32(&data[0], data.shape[0])


cdef inline void seal(JournalFrame *frame) noexcept nogil:
    frame.length = sizeof(CommandRecord)
    frame.crc = fg_crc32(<const unsigned char *>&frame.command, sizeof(CommandRecord))


def sequence(Ring commands, unsigned char[::1] frames, int64_t first_seq, int64_t ts_ns):
    """Move commands from the ring into journal frames; return how many.

    As many as are waiting and fit in `frames` (a whole number of FRAME_SIZE
    slots). Each gets the next sequence number from first_seq on and the
    sequencer time ts_ns, then its length and CRC.
    """
    if commands.slot_size != sizeof(CommandRecord):
        raise ValueError("not a command ring")
    if frames.shape[0] % sizeof(JournalFrame):
        raise ValueError("frames must be a whole number of FRAME_SIZE slots")
    cdef uint64_t head = commands.head[0]
    cdef uint64_t k = min(<uint64_t>(frames.shape[0] // sizeof(JournalFrame)),
                          fg_load_acquire(commands.tail) - head)
    cdef uint64_t i
    cdef JournalFrame *frame
    with nogil:
        for i in range(k):
            frame = <JournalFrame *>&frames[i * sizeof(JournalFrame)]
            memcpy(&frame.command, commands.slot(head + i), sizeof(CommandRecord))
            frame.command.seq = first_seq + <int64_t>i
            frame.command.ts_ns = ts_ns
            seal(frame)
    fg_store_release(commands.head, head + k)
    return k


def seal_frames(unsigned char[::1] frames):
    """Set length and CRC of frames whose commands are already stamped (tools, tests)."""
    if frames.shape[0] % sizeof(JournalFrame):
        raise ValueError("frames must be a whole number of FRAME_SIZE slots")
    cdef Py_ssize_t i
    for i in range(frames.shape[0] // <Py_ssize_t>sizeof(JournalFrame)):
        seal(<JournalFrame *>&frames[i * sizeof(JournalFrame)])


def scan_frames(const unsigned char[::1] data, int64_t first_seq):
    """Check consecutive frames from the start of data.

    Returns (count, problem): how many frames are sound and carry first_seq,
    first_seq + 1, ..., and the FrameProblem of the one after them
    (FRAME_OK when the data ends exactly after the last sound frame).
    """
    cdef Py_ssize_t n = data.shape[0], offset = 0
    cdef const JournalFrame *frame
    cdef int64_t count = 0
    cdef FrameProblem problem = FRAME_OK
    with nogil:
        while offset < n:
            if n - offset < <Py_ssize_t>sizeof(JournalFrame):
                problem = FRAME_SHORT
                break
            frame = <const JournalFrame *>&data[offset]
            if frame.length != sizeof(CommandRecord):
                problem = FRAME_BAD_LENGTH
                break
            if frame.crc != fg_crc32(<const unsigned char *>&frame.command,
                                     sizeof(CommandRecord)):
                problem = FRAME_BAD_CRC
                break
            if frame.command.seq != first_seq + count:
                problem = FRAME_BAD_SEQ
                break
            count += 1
            offset += sizeof(JournalFrame)
    return count, problem


def zero_fill(int fd, size_t size):
    """Write `size` zero bytes at the file's current position and sync them,
    without holding the GIL, so a background thread can prepare journal
    segments while the loop thread runs. Synced a megabyte at a time: a burst
    of dirty pages would make the kernel throttle the loop thread's own
    writes into the journal."""
    cdef size_t chunk = 1 << 20, done = 0
    cdef ssize_t n = 0
    cdef char *zeros = <char *>calloc(1, chunk)
    if zeros == NULL:
        raise MemoryError()
    with nogil:
        while done < size:
            n = posix_write(fd, zeros, min(size - done, chunk))
            if n <= 0 or fdatasync(fd) != 0:
                n = -1
                break
            done += n
    free(zeros)
    if done < size:
        raise OSError(errno, f"zero_fill wrote {done} of {size} bytes")
