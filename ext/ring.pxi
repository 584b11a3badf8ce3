# -- RING --------------------------------------------------------------------
# Included by core.pyx.

@cython.final
cdef class Ring:
    """Single-producer single-consumer ring of fixed-size slots.

    Positions are free-running 64-bit counters published with release stores
    and read with acquire loads, so producer and consumer may live on
    different threads, or in different processes when the ring is built over
    shared memory (`memory`, at least `Ring.size(capacity, slot_size)` bytes,
    zeroed before either side starts).
    """

    def __cinit__(self, uint64_t capacity, Py_ssize_t slot_size, memory=None):
        cdef unsigned char[::1] view
        if capacity == 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        if slot_size <= 0:
            raise ValueError("slot_size must be positive")
        self.capacity = capacity
        self.mask = capacity - 1
        self.slot_size = slot_size
        if memory is None:
            self.buffer = <char *>calloc(1, Ring.size(capacity, slot_size))
            if self.buffer == NULL:
                raise MemoryError()
        else:
            view = memory
            if view.shape[0] < Ring.size(capacity, slot_size):
                raise ValueError("memory is smaller than the ring")
            self.memory = view
            self.buffer = <char *>&view[0]
        self.head = <uint64_t *>self.buffer
        self.tail = <uint64_t *>(self.buffer + 64)
        self.slots = self.buffer + 128

    @staticmethod
    def size(uint64_t capacity, Py_ssize_t slot_size):
        """Bytes a ring of this shape takes: two positions, then the slots."""
        return 128 + capacity * slot_size

    def __dealloc__(self):
        if self.memory is None:
            free(self.buffer)

    def __len__(self):
        return fg_load_acquire(self.tail) - fg_load_acquire(self.head)

    cdef inline char *slot(self, uint64_t position) noexcept nogil:
        return self.slots + (position & self.mask) * self.slot_size

    def write(self, const unsigned char[::1] records):
        """Copy as many whole records as fit; return how many were written.

        Fewer than given means the ring is full: the caller applies
        back-pressure, nothing is dropped here.
        """
        cdef Py_ssize_t n = records.shape[0] // self.slot_size
        if n * self.slot_size != records.shape[0]:
            raise ValueError("records must be a whole number of slots")
        cdef uint64_t tail = self.tail[0]
        cdef uint64_t room = self.capacity - (tail - fg_load_acquire(self.head))
        cdef uint64_t k = min(<uint64_t>n, room)
        cdef uint64_t first = min(k, self.capacity - (tail & self.mask))
        cdef const unsigned char *src
        if k:
            src = &records[0]
            memcpy(self.slot(tail), src, first * self.slot_size)
            memcpy(self.slots, src + first * self.slot_size, (k - first) * self.slot_size)
            fg_store_release(self.tail, tail + k)
        return k

    def read(self, uint64_t max_records):
        """Remove up to max_records and return them as bytes."""
        cdef uint64_t head = self.head[0]
        cdef uint64_t k = min(max_records, fg_load_acquire(self.tail) - head)
        cdef uint64_t first = min(k, self.capacity - (head & self.mask))
        out = PyBytes_FromStringAndSize(NULL, k * self.slot_size)
        cdef char *dst = out
        memcpy(dst, self.slot(head), first * self.slot_size)
        memcpy(dst + first * self.slot_size, self.slots, (k - first) * self.slot_size)
        fg_store_release(self.head, head + k)
        return out

    # -- waiting, for a consumer in another process --
    # The consumer spins for a while without the GIL, then announces that it
    # will sleep and checks once more; the producer, after writing, checks for
    # that announcement and wakes it (through a pipe: the caller's business).
    # Both sides order their store and load with sequentially consistent
    # atomics, so a write is never left unseen by a sleeping consumer.

    def wait(self, int64_t spin_ns):
        """Spin without the GIL until records are waiting or spin_ns pass;
        return how many are waiting."""
        cdef timespec start, now
        cdef uint64_t waiting = 0, spins = 0
        clock_gettime(CLOCK_MONOTONIC, &start)
        with nogil:
            while True:
                waiting = fg_load_acquire(self.tail) - self.head[0]
                if waiting:
                    break
                spins += 1
                fg_pause()
                if spins % 256 == 0:
                    clock_gettime(CLOCK_MONOTONIC, &now)
                    if ((now.tv_sec - start.tv_sec) * 1000000000
                            + (now.tv_nsec - start.tv_nsec)) >= spin_ns:
                        break
        return waiting

    def announce_sleep(self):
        """Consumer: about to block; return how many records are waiting now
        (if any, it should not block after all)."""
        fg_store_seq_cst(self.head + 1, 1)
        return fg_load_seq_cst(self.tail) - self.head[0]

    def end_sleep(self):
        fg_store_seq_cst(self.head + 1, 0)

    def consumer_sleeping(self):
        """Producer, after a write: whether the consumer must be woken."""
        fg_fence_seq_cst()
        return fg_load_seq_cst(self.head + 1) != 0
