"""The matching and pre-trade risk core.

One `MatchingCore` holds every book, account and balance of the venue in
preallocated C memory. Commands come in as fixed-size `CommandRecord`s and
leave `EventRecord`s in an event buffer; nothing on that path touches a Python
object. See core.pxd for the records and the state.
"""

cimport cython
import numpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport abort, calloc, free, malloc, realloc
from libc.string cimport memcmp, memcpy, memmove, memset
from libc.errno cimport errno
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport fdatasync
from posix.unistd cimport write as posix_write

cdef extern from *:
    """
    #ifndef FLOWGATE_CHECKED
    #define FLOWGATE_CHECKED 0
    #endif
    typedef __int128 fg_int128;
    static inline uint64_t fg_load_acquire(uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void fg_store_release(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline uint64_t fg_load_seq_cst(uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
    }
    static inline void fg_store_seq_cst(uint64_t *p, uint64_t v) {
        __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
    }
    static inline void fg_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    static inline void fg_pause(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #endif
    }
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>
    /* Zeroed memory on 2 MiB boundaries, backed by transparent huge pages where
       the kernel allows it, and touched now: the hot path then never takes a
       page fault, and random access across large pools misses the TLB less. */
    static void *fg_alloc_prefaulted(size_t size) {
        const size_t huge = (size_t)2 << 20;
        void *p = NULL;
        size_t rounded = (size + huge - 1) & ~(huge - 1);
        if (rounded == 0) rounded = huge;
        if (posix_memalign(&p, huge, rounded) != 0) return NULL;
    #ifdef MADV_HUGEPAGE
        madvise(p, rounded, MADV_HUGEPAGE);
    #endif
        memset(p, 0, rounded);
        return p;
    }
    """
    int FLOWGATE_CHECKED
    ctypedef long long fg_int128
    void *fg_alloc_prefaulted(size_t size) nogil
    uint64_t fg_load_acquire(uint64_t *p) nogil
    void fg_store_release(uint64_t *p, uint64_t v) nogil
    uint64_t fg_load_seq_cst(uint64_t *p) nogil
    void fg_store_seq_cst(uint64_t *p, uint64_t v) nogil
    void fg_fence_seq_cst() nogil
    void fg_pause() nogil

CHECKED = bool(FLOWGATE_CHECKED)
COMMAND_SIZE = sizeof(CommandRecord)
EVENT_SIZE = sizeof(EventRecord)
# The most of one asset the venue may hold in all: value only moves between
# accounts and fees, so no balance or fee total can then overflow.
MAX_SUPPLY = 1 << 62

cdef int64_t _MAX_SUPPLY = MAX_SUPPLY
# The longest dead man's switch: a day.
MAX_CANCEL_AFTER_NS = 86_400 * 1_000_000_000
cdef int64_t _MAX_CANCEL_AFTER_NS = MAX_CANCEL_AFTER_NS
cdef uint64_t _FNV_OFFSET = 0xcbf29ce484222325ULL
cdef uint64_t _FNV_PRIME = 0x100000001b3ULL
cdef uint64_t _GOLDEN = 0x9E3779B97F4A7C15ULL


cdef inline Amount fee_of(Amount notional, int64_t bps) noexcept nogil:
    # floor(notional * bps / 10000) without the product overflowing
    return (notional // 10000) * bps + (notional % 10000) * bps // 10000


cdef inline Amount hold_of(Instrument *ins, uint8_t side, Price limit, Qty qty,
                           int64_t taker_bps) noexcept nogil:
    """What an order must hold: the quote notional at its limit plus the worst-case
    (taker) fee for a buy, the base quantity for a sell."""
    cdef Amount notional
    if side == SIDE_BUY:
        notional = limit * qty * ins.quote_per_tick_lot
        return notional + fee_of(notional, taker_bps)
    return qty * ins.base_per_lot


cdef inline int32_t hold_asset(Instrument *ins, uint8_t side) noexcept nogil:
    return ins.quote_asset if side == SIDE_BUY else ins.base_asset


cdef inline Ladder *book_side(Instrument *ins, uint8_t side) noexcept nogil:
    return &ins.bids if side == SIDE_BUY else &ins.asks


cdef inline uint8_t other_side(uint8_t side) noexcept nogil:
    return SIDE_SELL if side == SIDE_BUY else SIDE_BUY


cdef inline bint expires_before(Expiry a, Expiry b) noexcept nogil:
    return a.expire_ns < b.expire_ns or (a.expire_ns == b.expire_ns and a.order_id < b.order_id)


cdef inline void add_fill(Order *o, Price price, Qty qty) noexcept nogil:
    o.leaves -= qty
    o.filled += qty
    o.filled_quote += price * qty
    o.status = status_of(o)


cdef inline bint crosses(uint8_t taker_side, Price limit, Price level_price) noexcept nogil:
    if taker_side == SIDE_BUY:
        return level_price <= limit
    return level_price >= limit


cdef inline int64_t ladder_key(uint8_t side, Price price) noexcept nogil:
    return price if side == SIDE_BUY else -price


cdef inline uint64_t mix64(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= _GOLDEN
    h ^= h >> 29
    return h


cdef inline uint64_t coid_hash(int32_t account, const char *coid, uint8_t n) noexcept nogil:
    cdef uint64_t h = _FNV_OFFSET
    cdef uint64_t a = <uint64_t><uint32_t>account
    cdef int i
    for i in range(4):
        h = (h ^ ((a >> (8 * i)) & 0xff)) * _FNV_PRIME
    for i in range(n):
        h = (h ^ <uint8_t>coid[i]) * _FNV_PRIME
    return mix64(h)


cdef inline uint8_t status_of(Order *o) noexcept nogil:
    if o.leaves == 0:
        return STATUS_FILLED
    if o.filled > 0:
        return STATUS_PARTIALLY_FILLED
    return STATUS_NEW


cdef inline bint is_open(Order *o) noexcept nogil:
    return o.flags & ORDER_OPEN


cdef inline bint is_post_only(Order *o) noexcept nogil:
    return o.flags & ORDER_POST_ONLY


cdef inline uint8_t stp_of(Order *o) noexcept nogil:
    return (o.flags >> ORDER_STP_SHIFT) & 3


cdef inline uint8_t reason_of(Order *o) noexcept nogil:
    return o.flags >> ORDER_REASON_SHIFT


cdef uint64_t table_size(int64_t entries):
    cdef uint64_t size = 16
    while size < <uint64_t>(2 * entries):
        size <<= 1
    return size


include "ring.pxi"
include "journal.pxi"


# final: calls between its methods are direct C calls the compiler can inline
@cython.final
cdef class MatchingCore:
    """Books, accounts, balances and positions of the whole venue.

    Capacities are fixed at construction; running out of order slots is the
    `CAPACITY_EXCEEDED` rejection. Account ids are 1..n_accounts; assets and
    instruments are indexed from 0.
    """

    def __cinit__(self, int32_t n_accounts, int32_t n_assets, int32_t n_instruments,
                  int32_t order_capacity, int32_t retired_capacity, int32_t max_open_orders,
                  int64_t event_capacity=4096):
        cdef int32_t i
        if min(n_accounts, n_assets, n_instruments, order_capacity) <= 0:
            raise ValueError("counts and capacities must be positive")
        if n_instruments > 0xffff:
            raise ValueError("at most 65535 instruments")
        if not 0 <= retired_capacity <= order_capacity:
            raise ValueError("retired_capacity must be within 0..order_capacity")
        self.n_accounts = n_accounts
        self.n_assets = n_assets
        self.n_instruments = n_instruments
        self.order_capacity = order_capacity
        self.retired_capacity = retired_capacity
        self.max_open_orders = max_open_orders
        self.level_capacity = order_capacity + 1
        self.event_capacity = max(event_capacity, 16)
        self.next_order_id = 1
        self.next_trade_id = 1

        self.orders = <Order *>fg_alloc_prefaulted(order_capacity * sizeof(Order))
        self.details = <OrderDetail *>fg_alloc_prefaulted(order_capacity * sizeof(OrderDetail))
        self.links = <AccountLink *>fg_alloc_prefaulted(order_capacity * sizeof(AccountLink))
        self.levels = <Level *>fg_alloc_prefaulted(self.level_capacity * sizeof(Level))
        self.instruments = <Instrument *>calloc(n_instruments, sizeof(Instrument))
        self.accounts = <Account *>calloc(n_accounts + 1, sizeof(Account))
        self.balances = <Balance *>calloc((n_accounts + 1) * n_assets, sizeof(Balance))
        self.positions = <Position *>calloc((n_accounts + 1) * n_instruments, sizeof(Position))
        self.fees_collected = <Amount *>calloc(n_assets, sizeof(Amount))
        self.net_deposits = <Amount *>calloc(n_assets, sizeof(Amount))
        self.id_mask = table_size(order_capacity) - 1
        self.ids = <Slot *>fg_alloc_prefaulted((self.id_mask + 1) * sizeof(Slot))
        self.old_ids = <IdEntry *>fg_alloc_prefaulted((self.id_mask + 1) * sizeof(IdEntry))
        self.coid_mask = table_size(order_capacity) - 1
        self.coid_hashes = <uint64_t *>fg_alloc_prefaulted((self.coid_mask + 1) * sizeof(uint64_t))
        self.coid_slots = <Slot *>fg_alloc_prefaulted((self.coid_mask + 1) * sizeof(Slot))
        self.retired = <Slot *>calloc(max(retired_capacity, 1), sizeof(Slot))
        # twice the orders, so a full heap's compaction frees at least half of it
        self.expiries = <Expiry *>fg_alloc_prefaulted(2 * order_capacity * sizeof(Expiry))
        self.touched_balances = <Touched *>calloc((n_accounts + 1) * n_assets, sizeof(Touched))
        self.touched_positions = <Touched *>calloc(
            (n_accounts + 1) * n_instruments, sizeof(Touched))
        self.events = <EventRecord *>malloc(self.event_capacity * sizeof(EventRecord))
        if (self.orders == NULL or self.details == NULL or self.links == NULL
                or self.levels == NULL or self.instruments == NULL
                or self.accounts == NULL or self.balances == NULL or self.positions == NULL
                or self.fees_collected == NULL or self.net_deposits == NULL
                or self.ids == NULL or self.old_ids == NULL or self.coid_hashes == NULL
                or self.coid_slots == NULL or self.retired == NULL or self.expiries == NULL
                or self.touched_balances == NULL or self.touched_positions == NULL
                or self.events == NULL):
            raise MemoryError()
        for i in range(n_instruments):
            self.instruments[i].bids.levels = <int32_t *>malloc(self.level_capacity * 4)
            self.instruments[i].asks.levels = <int32_t *>malloc(self.level_capacity * 4)
            if self.instruments[i].bids.levels == NULL or self.instruments[i].asks.levels == NULL:
                raise MemoryError()
        for i in range(n_accounts + 1):
            self.accounts[i].head = self.accounts[i].tail = -1
        self.free_head = -1
        self.pool_used = 0
        for i in range(self.level_capacity):
            self.levels[i].head = i + 1 if i + 1 < self.level_capacity else -1
        self.level_free_head = 0
        for i in range(<int32_t>(self.id_mask + 1)):
            self.ids[i] = -1
        for i in range(<int32_t>(self.coid_mask + 1)):
            self.coid_slots[i] = -1

    def __dealloc__(self):
        cdef int32_t i
        if self.instruments != NULL:
            for i in range(self.n_instruments):
                free(self.instruments[i].bids.levels)
                free(self.instruments[i].asks.levels)
        free(self.orders)
        free(self.details)
        free(self.links)
        free(self.levels)
        free(self.instruments)
        free(self.accounts)
        free(self.balances)
        free(self.positions)
        free(self.fees_collected)
        free(self.net_deposits)
        free(self.ids)
        free(self.old_ids)
        free(self.coid_hashes)
        free(self.coid_slots)
        free(self.retired)
        free(self.expiries)
        free(self.touched_balances)
        free(self.touched_positions)
        free(self.events)

    # -- CONFIGURATION (cold) --

    def configure_instrument(self, int32_t instrument, int32_t base_asset, int32_t quote_asset,
                             int64_t quote_per_tick_lot, int64_t base_per_lot,
                             Qty min_qty, Qty max_qty, Amount min_notional, Amount max_notional,
                             Price max_price, Price reference_price, int64_t band_bps):
        if not 0 <= instrument < self.n_instruments:
            raise ValueError("instrument out of range")
        if not (0 <= base_asset < self.n_assets and 0 <= quote_asset < self.n_assets):
            raise ValueError("asset out of range")
        cdef Instrument *ins = &self.instruments[instrument]
        ins.base_asset = base_asset
        ins.quote_asset = quote_asset
        ins.quote_per_tick_lot = quote_per_tick_lot
        ins.base_per_lot = base_per_lot
        ins.min_qty = min_qty
        ins.max_qty = max_qty
        ins.min_notional = min_notional
        ins.max_notional = max_notional
        ins.max_price = max_price
        ins.reference_price = reference_price
        ins.band_bps = band_bps

    def configure_account(self, int32_t account, int64_t maker_bps, int64_t taker_bps):
        if not 1 <= account <= self.n_accounts:
            raise ValueError("account out of range")
        self.accounts[account].exists = 1
        self.accounts[account].maker_bps = maker_bps
        self.accounts[account].taker_bps = taker_bps

    def credit(self, int32_t account, int32_t asset, Amount amount):
        """Opening balance from configuration: counted as a deposit, emits nothing."""
        if not (1 <= account <= self.n_accounts and 0 <= asset < self.n_assets):
            raise ValueError("account or asset out of range")
        if not 0 <= amount <= _MAX_SUPPLY - self.net_deposits[asset]:
            raise ValueError("opening balance out of range")
        self.balances[account * self.n_assets + asset].total += amount
        self.net_deposits[asset] += amount

    # -- COMMANDS --

    @staticmethod
    cdef Py_ssize_t _count(const unsigned char[::1] records) except -1:
        cdef Py_ssize_t n = records.shape[0] // sizeof(CommandRecord)
        if n * <Py_ssize_t>sizeof(CommandRecord) != records.shape[0]:
            raise ValueError("records must be a whole number of CommandRecords")
        return n

    def apply_batch(self, const unsigned char[::1] records):
        """Apply a block of CommandRecords in order; events accumulate in the buffer."""
        cdef Py_ssize_t n = MatchingCore._count(records), i
        if n == 0:
            return
        cdef const CommandRecord *first = <const CommandRecord *>&records[0]
        with nogil:
            for i in range(n):
                self.apply_record(first + i)

    def apply_batch_timed(self, const unsigned char[::1] records, int64_t[::1] elapsed_ns):
        """apply_batch, also writing each command's own apply time (ns) to elapsed_ns.

        For latency percentiles: the two clock reads add ~20 ns per command.
        """
        cdef Py_ssize_t n = MatchingCore._count(records), i
        cdef timespec t0, t1
        if elapsed_ns.shape[0] < n:
            raise ValueError("need one elapsed slot per record")
        if n == 0:
            return
        cdef const CommandRecord *first = <const CommandRecord *>&records[0]
        with nogil:
            for i in range(n):
                clock_gettime(CLOCK_MONOTONIC, &t0)
                self.apply_record(first + i)
                clock_gettime(CLOCK_MONOTONIC, &t1)
                elapsed_ns[i] = (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)

    def apply_frames(self, const unsigned char[::1] frames):
        """Apply the commands of a block of journal frames (see `sequence`), in
        order; events accumulate in the buffer. The frames are trusted: the
        sequencer made them, or recovery checked them with `scan_frames`."""
        if frames.shape[0] % sizeof(JournalFrame):
            raise ValueError("frames must be a whole number of FRAME_SIZE slots")
        cdef Py_ssize_t n = frames.shape[0] // sizeof(JournalFrame), i
        if n == 0:
            return
        cdef const JournalFrame *first = <const JournalFrame *>&frames[0]
        with nogil:
            for i in range(n):
                self.apply_record(&first[i].command)

    @cython.binding(False)  # a plain method: cheaper to call than a bound function
    def place(self, int64_t ts_ns, int32_t account, int32_t instrument,
              uint8_t side, uint8_t order_type, uint8_t tif, Price price, Qty qty,
              uint8_t stp=STP_CANCEL_NEWEST, bint post_only=False, Nanos expire_ns=0,
              bytes client_order_id=b""):
        """One placement per Python call; returns the number of events it emitted.

        The per-call methods number each command one past the last applied, and
        start it with an empty event buffer: its events are there for
        `take_events` until the next command.
        """
        cdef CommandRecord c
        memset(&c, 0, sizeof(CommandRecord))
        c.type = CMD_PLACE
        c.ts_ns = ts_ns
        c.account = account
        c.instrument = instrument
        c.side = side
        c.order_type = order_type
        c.tif = tif
        c.stp = stp
        c.post_only = post_only
        c.expire_ns = expire_ns
        c.price = price
        c.qty = qty
        if client_order_id:
            c.coid_len = <uint8_t>min(len(client_order_id), 255)
            memcpy(c.coid, <char *>client_order_id, min(c.coid_len, COID_CAPACITY))
        return self._apply_one(&c)

    @cython.binding(False)
    def cancel(self, int64_t ts_ns, int32_t account, OrderId order_id):
        """One cancel per Python call; returns the number of events it emitted."""
        cdef CommandRecord c
        memset(&c, 0, sizeof(CommandRecord))
        c.type = CMD_CANCEL
        c.ts_ns = ts_ns
        c.account = account
        c.order_id = order_id
        return self._apply_one(&c)

    @cython.binding(False)
    def amend(self, int64_t ts_ns, int32_t account, OrderId order_id,
              Price price, Qty qty):
        """One amend per Python call; returns the number of events it emitted."""
        cdef CommandRecord c
        memset(&c, 0, sizeof(CommandRecord))
        c.type = CMD_AMEND
        c.ts_ns = ts_ns
        c.account = account
        c.order_id = order_id
        c.price = price
        c.qty = qty
        return self._apply_one(&c)

    cdef int64_t _apply_one(self, CommandRecord *c) noexcept:
        # numbered one past the last command, its events alone in the buffer
        c.seq = self.last_seq + 1
        self.n_events = 0
        self.apply_record(c)
        return self.n_events

    def take_events(self):
        """The events emitted since the last take/clear, as bytes; clears the buffer."""
        out = PyBytes_FromStringAndSize(<char *>self.events, self.n_events * sizeof(EventRecord))
        self.n_events = 0
        return out

    def clear_events(self):
        self.n_events = 0

    cdef void apply_record(self, const CommandRecord *cmd) noexcept nogil:
        cdef int64_t first_event = self.n_events
        self.cmd = cmd
        self.command_counts[cmd.type % COUNTED_COMMAND_TYPES] += 1
        self.epoch += 1
        self.last_seq = cmd.seq
        self.n_touched_balances = 0
        self.n_touched_positions = 0
        if self.expiry_size and self.expiries[0].expire_ns <= cmd.ts_ns:
            self._expire_due()
        if self.next_cancel_after and self.next_cancel_after <= cmd.ts_ns:
            self._fire_cancel_all_after()
        if cmd.deadline_ns and cmd.ts_ns > cmd.deadline_ns:
            self._reject(DEADLINE_EXCEEDED)
            self.events[self.n_events - 1].expire_ns = cmd.deadline_ns  # beside ts_ns, recv_ns
        elif cmd.type == CMD_PLACE:
            self._place()
        elif cmd.type == CMD_CANCEL:
            self._cancel()
        elif cmd.type == CMD_AMEND:
            self._amend()
        elif cmd.type == CMD_MASS_CANCEL:
            self._mass_cancel()
        elif cmd.type == CMD_DEPOSIT or cmd.type == CMD_WITHDRAW:
            self._transfer()
        elif cmd.type == CMD_KILL_SWITCH:
            self._kill_switch()
        elif cmd.type == CMD_CANCEL_ALL_AFTER:
            self._cancel_all_after()
        elif cmd.type != CMD_TICK:
            self._reject(INVALID_COMMAND)
        self._flush_touched()
        if self.n_events > first_event:
            self.events[self.n_events - 1].flags |= FLAG_LAST

    cdef inline bint _known_account(self, int32_t account) noexcept nogil:
        return 1 <= account <= self.n_accounts and self.accounts[account].exists

    cdef uint16_t _place(self) noexcept nogil:
        cdef const CommandRecord *c = self.cmd
        cdef Instrument *ins
        cdef Account *acct
        cdef Order *o
        cdef OrderDetail *detail
        cdef Slot s, previous = -1
        cdef Price lo, hi, limit
        cdef Amount notional, hold
        cdef int32_t asset
        cdef uint64_t h = 0
        cdef bint post_only = c.post_only != 0
        if not self._known_account(c.account):
            return self._reject(UNKNOWN_ACCOUNT)
        if not 0 <= c.instrument < self.n_instruments:
            return self._reject(UNKNOWN_INSTRUMENT)
        if c.coid_len > COID_CAPACITY:
            return self._reject(INVALID_CLIENT_ORDER_ID)
        if c.coid_len:
            h = coid_hash(c.account, c.coid, c.coid_len)
            previous = self._find_coid(c.account, c.coid, c.coid_len, h)
            if previous >= 0:
                o = &self.orders[previous]
                detail = &self.details[previous]
                if (o.instrument == c.instrument and o.side == c.side
                        and o.order_type == c.order_type and o.tif == c.tif
                        and is_post_only(o) == post_only and stp_of(o) == c.stp
                        and detail.orig_price == c.price and detail.orig_qty == c.qty
                        and detail.expire_ns == c.expire_ns):
                    self._emit_order(EV_ORDER_STATE, previous).flags |= FLAG_RETRY
                    return OK
                if o.status == STATUS_NEW or o.status == STATUS_PARTIALLY_FILLED:
                    return self._reject(DUPLICATE_CLIENT_ORDER_ID)
        if c.side != SIDE_BUY and c.side != SIDE_SELL:
            return self._reject(INVALID_SIDE)
        if c.order_type != TYPE_LIMIT and c.order_type != TYPE_MARKET:
            return self._reject(INVALID_ORDER_TYPE)
        if not TIF_GTC <= c.tif <= TIF_GTD:
            return self._reject(INVALID_TIF)
        if not STP_CANCEL_NEWEST <= c.stp <= STP_CANCEL_BOTH:
            return self._reject(INVALID_STP)
        if c.order_type == TYPE_MARKET:
            if post_only:
                return self._reject(INVALID_ORDER_TYPE)
            if c.tif != TIF_IOC and c.tif != TIF_FOK:
                return self._reject(INVALID_TIF)
            if c.price != 0:
                return self._reject(INVALID_PRICE)
        else:
            if c.price <= 0:
                return self._reject(INVALID_PRICE)
            if post_only and c.tif != TIF_GTC and c.tif != TIF_GTD:
                return self._reject(INVALID_TIF)
        if c.qty <= 0:
            return self._reject(INVALID_QUANTITY)
        if c.tif == TIF_GTD:
            if c.expire_ns <= c.ts_ns:
                return self._reject(INVALID_EXPIRE_TIME)
        elif c.expire_ns != 0:
            return self._reject(INVALID_EXPIRE_TIME)

        acct = &self.accounts[c.account]
        ins = &self.instruments[c.instrument]
        if acct.killed:
            return self._reject(KILL_SWITCH_ACTIVE)
        if c.qty < ins.min_qty:
            return self._reject(QUANTITY_BELOW_MIN)
        if c.qty > ins.max_qty:
            return self._reject(QUANTITY_ABOVE_MAX)
        self._band(ins, &lo, &hi)
        if c.order_type == TYPE_LIMIT:
            if c.price < lo or c.price > hi:
                return self._reject(PRICE_OUT_OF_BAND)
            limit = c.price
            notional = c.price * c.qty * ins.quote_per_tick_lot
        else:
            limit = hi if c.side == SIDE_BUY else lo
            notional = ins.reference_price * c.qty * ins.quote_per_tick_lot
        if notional < ins.min_notional:
            return self._reject(NOTIONAL_BELOW_MIN)
        if notional > ins.max_notional:
            return self._reject(NOTIONAL_ABOVE_MAX)
        if (c.order_type == TYPE_LIMIT and (c.tif == TIF_GTC or c.tif == TIF_GTD)
                and acct.open_count >= self.max_open_orders):
            return self._reject(TOO_MANY_OPEN_ORDERS)
        if post_only and self._would_take(ins, c.side, c.price):
            return self._reject(POST_ONLY_WOULD_TAKE)
        hold = hold_of(ins, c.side, limit, c.qty, acct.taker_bps)
        asset = hold_asset(ins, c.side)
        if hold > self._available(c.account, asset):
            return self._reject(INSUFFICIENT_BALANCE)
        s = self._allocate()
        if s < 0:
            return self._reject(CAPACITY_EXCEEDED)
        if c.coid_len:
            # a closed order of this account used the id before: the new order takes it over
            previous = self._find_coid(c.account, c.coid, c.coid_len, h)
            if previous >= 0:
                self._remove_coid(previous)

        o = &self.orders[s]
        o.order_id = self.next_order_id
        self.next_order_id += 1
        o.price = c.price
        o.leaves = c.qty
        o.filled = 0
        o.filled_quote = 0
        o.account = c.account
        o.prev = o.next = -1
        o.level = -1
        o.instrument = <uint16_t>c.instrument
        o.side = c.side
        o.order_type = c.order_type
        o.tif = c.tif
        o.status = STATUS_NEW
        o.flags = (ORDER_POST_ONLY if post_only else 0) | (c.stp << ORDER_STP_SHIFT)
        o.coid_len = c.coid_len
        detail = &self.details[s]
        detail.limit = limit
        detail.expire_ns = c.expire_ns
        detail.orig_price = c.price
        detail.orig_qty = c.qty
        memcpy(detail.coid, c.coid, c.coid_len)
        self._insert_id(o.order_id, s)
        if c.coid_len:
            self._insert_coid(s)
        self.balances[c.account * self.n_assets + asset].locked += hold
        self._touch_balance(c.account, asset)
        self._emit_order(EV_ACCEPTED, s)

        if c.tif == TIF_FOK and not self._fok_fillable(s):
            self._finish(s, STATUS_CANCELED, REASON_FOK_UNFILLABLE)
        elif self._match(s):
            pass
        elif o.leaves == 0:
            self._finish(s, STATUS_FILLED, 0)
        elif c.order_type == TYPE_LIMIT and (c.tif == TIF_GTC or c.tif == TIF_GTD):
            self._rest(s)
        else:
            self._finish(s, STATUS_CANCELED, REASON_UNFILLED)
        return OK

    cdef inline void _band(self, Instrument *ins, Price *lo, Price *hi) noexcept nogil:
        cdef Price width = ins.reference_price * ins.band_bps // 10000
        if ins.band_bps <= 0:
            lo[0] = 1
            hi[0] = ins.max_price
            return
        lo[0] = max(ins.reference_price - width, 1)
        hi[0] = min(ins.reference_price + width, ins.max_price)

    cdef uint16_t _cancel(self) noexcept nogil:
        if not self._known_account(self.cmd.account):
            return self._reject(UNKNOWN_ACCOUNT)
        cdef Slot s = self._target()
        if s < 0:
            return self._reject(UNKNOWN_ORDER)
        self._finish(s, STATUS_CANCELED, REASON_USER)
        return OK

    cdef uint16_t _amend(self) noexcept nogil:
        cdef const CommandRecord *c = self.cmd
        cdef Slot s
        cdef Order *o
        cdef Instrument *ins
        cdef Price new_price, lo, hi
        cdef Qty new_qty, new_leaves
        cdef Amount notional, new_hold, delta
        cdef int32_t asset
        cdef bint keep
        cdef EventRecord *e
        if not self._known_account(c.account):
            return self._reject(UNKNOWN_ACCOUNT)
        s = self._target()
        if s < 0:
            return self._reject(UNKNOWN_ORDER)
        o = &self.orders[s]
        ins = &self.instruments[o.instrument]
        if self.accounts[c.account].killed:
            return self._reject(KILL_SWITCH_ACTIVE)
        if c.price < 0:
            return self._reject(INVALID_PRICE)
        if c.qty < 0:
            return self._reject(INVALID_QUANTITY)
        new_price = c.price if c.price else o.price
        new_qty = c.qty if c.qty else o.leaves + o.filled
        if new_qty <= o.filled:
            return self._reject(INVALID_QUANTITY)
        if new_qty < ins.min_qty:
            return self._reject(QUANTITY_BELOW_MIN)
        if new_qty > ins.max_qty:
            return self._reject(QUANTITY_ABOVE_MAX)
        if new_price != o.price:
            self._band(ins, &lo, &hi)
            if new_price < lo or new_price > hi:
                return self._reject(PRICE_OUT_OF_BAND)
        notional = new_price * new_qty * ins.quote_per_tick_lot
        if notional < ins.min_notional:
            return self._reject(NOTIONAL_BELOW_MIN)
        if notional > ins.max_notional:
            return self._reject(NOTIONAL_ABOVE_MAX)
        new_leaves = new_qty - o.filled
        keep = new_price == o.price and new_leaves <= o.leaves
        if not keep and is_post_only(o) and self._would_take(ins, o.side, new_price):
            return self._reject(POST_ONLY_WOULD_TAKE)
        # a resting order is a limit order: it holds against its price
        new_hold = hold_of(ins, o.side, new_price, new_leaves, self.accounts[o.account].taker_bps)
        delta = new_hold - self._hold(s, o.leaves)
        asset = hold_asset(ins, o.side)
        if delta > self._available(o.account, asset):
            return self._reject(INSUFFICIENT_BALANCE)

        if keep:
            self.levels[o.level].total -= o.leaves - new_leaves
        else:
            self._unlink(s)
            o.price = new_price
        o.leaves = new_leaves
        self.balances[o.account * self.n_assets + asset].locked += delta
        self._touch_balance(o.account, asset)
        e = self._emit_order(EV_AMENDED, s)
        if keep:
            e.flags |= FLAG_PRIORITY_KEPT
        elif self._match(s):
            pass
        elif o.leaves == 0:
            self._finish(s, STATUS_FILLED, 0)
        else:
            self._rest(s)
        return OK

    cdef uint16_t _mass_cancel(self) noexcept nogil:
        cdef const CommandRecord *c = self.cmd
        cdef int64_t count
        cdef EventRecord *e
        if not self._known_account(c.account):
            return self._reject(UNKNOWN_ACCOUNT)
        if not -1 <= c.instrument < self.n_instruments:
            return self._reject(UNKNOWN_INSTRUMENT)
        if c.side > SIDE_SELL:
            return self._reject(INVALID_SIDE)
        count = self._cancel_account_orders(c.account, c.instrument, c.side, REASON_MASS)
        e = self._emit(EV_MASS_CANCELED)
        e.account = c.account
        e.instrument = c.instrument
        e.side = c.side
        e.qty = count
        return OK

    cdef uint16_t _transfer(self) noexcept nogil:
        cdef const CommandRecord *c = self.cmd
        cdef Balance *b
        if not self._known_account(c.account):
            return self._reject(UNKNOWN_ACCOUNT)
        if not 0 <= c.instrument < self.n_assets:
            return self._reject(UNKNOWN_ASSET)
        b = &self.balances[c.account * self.n_assets + c.instrument]
        if c.amount <= 0:
            return self._reject(INVALID_AMOUNT)
        if c.type == CMD_DEPOSIT:
            if c.amount > _MAX_SUPPLY - self.net_deposits[c.instrument]:
                return self._reject(INVALID_AMOUNT)
            b.total += c.amount
            self.net_deposits[c.instrument] += c.amount
        else:
            if c.amount > b.total - b.locked:
                return self._reject(INSUFFICIENT_BALANCE)
            b.total -= c.amount
            self.net_deposits[c.instrument] -= c.amount
        self._touch_balance(c.account, c.instrument)
        return OK

    cdef uint16_t _kill_switch(self) noexcept nogil:
        cdef const CommandRecord *c = self.cmd
        cdef EventRecord *e
        if not self._known_account(c.account):
            return self._reject(UNKNOWN_ACCOUNT)
        if c.amount != 0 and c.amount != 1:
            return self._reject(INVALID_AMOUNT)
        self.accounts[c.account].killed = <uint8_t>c.amount
        e = self._emit(EV_KILL_SWITCH)
        e.account = c.account
        if c.amount:
            e.flags = FLAG_KILL_SWITCH_ON
            self._cancel_account_orders(c.account, -1, 0, REASON_KILL_SWITCH)
        return OK

    cdef uint16_t _cancel_all_after(self) noexcept nogil:
        """Arm (or re-arm) the account's dead man's switch: unless the account
        sends another before the deadline, all its open orders are canceled."""
        cdef const CommandRecord *c = self.cmd
        cdef EventRecord *e
        if not self._known_account(c.account):
            return self._reject(UNKNOWN_ACCOUNT)
        if not 0 <= c.amount <= _MAX_CANCEL_AFTER_NS:
            return self._reject(INVALID_TIMEOUT)
        self.accounts[c.account].cancel_after_ns = c.ts_ns + c.amount if c.amount else 0
        self._find_next_cancel_after()
        e = self._emit(EV_CANCEL_ALL_AFTER)
        e.account = c.account
        e.expire_ns = self.accounts[c.account].cancel_after_ns
        return OK

    cdef void _fire_cancel_all_after(self) noexcept nogil:
        """Every switch due by the command's time, in account order."""
        cdef int32_t a
        cdef EventRecord *e
        cdef int64_t count
        for a in range(1, self.n_accounts + 1):
            if 0 < self.accounts[a].cancel_after_ns <= self.cmd.ts_ns:
                self.accounts[a].cancel_after_ns = 0
                count = self._cancel_account_orders(a, -1, 0, REASON_CANCEL_ALL_AFTER)
                e = self._emit(EV_CANCEL_ALL_AFTER)
                e.account = a
                e.qty = count
                e.flags = FLAG_FIRED
        self._find_next_cancel_after()

    cdef void _find_next_cancel_after(self) noexcept nogil:
        # a scan, but only when a switch is armed or fires: heartbeats are seconds apart
        cdef int32_t a
        cdef Nanos deadline
        self.next_cancel_after = 0
        for a in range(1, self.n_accounts + 1):
            deadline = self.accounts[a].cancel_after_ns
            if deadline and (self.next_cancel_after == 0 or deadline < self.next_cancel_after):
                self.next_cancel_after = deadline

    cdef int64_t _cancel_account_orders(self, int32_t account, int32_t instrument,
                                        uint8_t side, uint8_t reason) noexcept nogil:
        """Cancel the account's open orders of one instrument (-1: all) and side
        (0: both), oldest first; return how many."""
        cdef Slot s = self.accounts[account].head, following
        cdef int64_t count = 0
        while s >= 0:
            following = self.links[s].next
            if ((instrument < 0 or self.orders[s].instrument == instrument)
                    and (side == 0 or self.orders[s].side == side)):
                self._finish(s, STATUS_CANCELED, reason)
                count += 1
            s = following
        return count

    cdef void _expire_due(self) noexcept nogil:
        cdef Expiry top, last
        cdef Slot s
        cdef int32_t i, child, n
        while self.expiry_size > 0 and self.expiries[0].expire_ns <= self.cmd.ts_ns:
            top = self.expiries[0]
            self.expiry_size -= 1
            n = self.expiry_size
            last = self.expiries[n]
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and expires_before(self.expiries[child + 1],
                                                    self.expiries[child]):
                    child += 1
                if expires_before(last, self.expiries[child]):
                    break
                self.expiries[i] = self.expiries[child]
                i = child
            if n > 0:
                self.expiries[i] = last
            s = self._find_id(top.order_id)
            if s >= 0 and is_open(&self.orders[s]) and self.details[s].expire_ns == top.expire_ns:
                self._finish(s, STATUS_EXPIRED, 0)

    cdef void _push_expiry(self, Slot s) noexcept nogil:
        cdef Expiry item
        cdef int32_t n = 0, j
        cdef Slot t
        if self.expiry_size == 2 * self.order_capacity:
            # drop entries of orders no longer open, then rebuild the heap
            for j in range(self.expiry_size):
                t = self._find_id(self.expiries[j].order_id)
                if t >= 0 and is_open(&self.orders[t]):
                    self.expiries[n] = self.expiries[j]
                    n += 1
            self.expiry_size = 0
            for j in range(n):
                item = self.expiries[j]
                self._sift_up(item)
        item.expire_ns = self.details[s].expire_ns
        item.order_id = self.orders[s].order_id
        self._sift_up(item)

    cdef inline void _sift_up(self, Expiry item) noexcept nogil:
        cdef int32_t i = self.expiry_size, parent
        self.expiry_size += 1
        while i > 0:
            parent = (i - 1) >> 1
            if expires_before(self.expiries[parent], item):
                break
            self.expiries[i] = self.expiries[parent]
            i = parent
        self.expiries[i] = item

    # -- MATCHING --

    cdef bint _match(self, Slot taker) noexcept nogil:
        """Trade the taker against the opposite side; true if self-trade prevention
        canceled the taker."""
        cdef Order *o = &self.orders[taker]
        cdef Instrument *ins = &self.instruments[o.instrument]
        cdef Ladder *ladder = book_side(ins, other_side(o.side))
        cdef Level *level
        cdef Slot m, following
        cdef Order *maker
        cdef Price limit = self._limit(taker)
        cdef uint8_t stp = stp_of(o)
        while o.leaves > 0 and ladder.size > 0:
            level = &self.levels[ladder.levels[ladder.size - 1]]
            if not crosses(o.side, limit, level.price):
                break
            m = level.head
            while m >= 0 and o.leaves > 0:
                maker = &self.orders[m]
                following = maker.next
                if maker.account == o.account:
                    if stp != STP_CANCEL_NEWEST:
                        self._finish(m, STATUS_CANCELED, REASON_SELF_TRADE)
                    if stp != STP_CANCEL_OLDEST:
                        self._finish(taker, STATUS_CANCELED, REASON_SELF_TRADE)
                        return True
                else:
                    self._fill(taker, m, level.price, min(o.leaves, maker.leaves))
                    if maker.leaves == 0:
                        self._finish(m, STATUS_FILLED, 0)
                m = following
        return False

    cdef bint _fok_fillable(self, Slot taker) noexcept nogil:
        # walks the book as _match would, without touching it
        cdef Order *o = &self.orders[taker]
        cdef Instrument *ins = &self.instruments[o.instrument]
        cdef Ladder *ladder = book_side(ins, other_side(o.side))
        cdef Level *level
        cdef Qty available = 0
        cdef int32_t i = ladder.size - 1
        cdef Slot m
        cdef Price limit = self._limit(taker)
        while i >= 0:
            level = &self.levels[ladder.levels[i]]
            i -= 1
            if level.count == 0:
                continue
            if not crosses(o.side, limit, level.price):
                return False
            m = level.head
            while m >= 0:
                if self.orders[m].account == o.account:
                    if stp_of(o) != STP_CANCEL_OLDEST:
                        return False
                else:
                    available += self.orders[m].leaves
                    if available >= o.leaves:
                        return True
                m = self.orders[m].next
        return False

    cdef void _fill(self, Slot taker, Slot maker, Price price, Qty qty) noexcept nogil:
        cdef Order *o = &self.orders[taker]
        cdef Order *mk = &self.orders[maker]
        cdef Instrument *ins = &self.instruments[o.instrument]
        cdef Amount notional = price * qty * ins.quote_per_tick_lot
        cdef Amount taker_fee = fee_of(notional, self.accounts[o.account].taker_bps)
        cdef Amount maker_fee = fee_of(notional, self.accounts[mk.account].maker_bps)
        cdef EventRecord *e
        add_fill(o, price, qty)
        add_fill(mk, price, qty)
        self.levels[mk.level].total -= qty
        self._settle(maker, qty, notional, maker_fee, price)
        self._settle(taker, qty, notional, taker_fee, price)
        self.fees_collected[ins.quote_asset] += taker_fee + maker_fee
        ins.reference_price = price
        e = self._emit(EV_TRADE)
        e.trade_id = self.next_trade_id
        self.next_trade_id += 1
        e.instrument = o.instrument
        e.price = price
        e.qty = qty
        e.side = o.side
        e.order_id = o.order_id
        e.account = o.account
        e.leaves = o.leaves
        e.filled = o.filled
        e.filled_quote = o.filled_quote
        e.status = o.status
        e.maker_order_id = mk.order_id
        e.maker_account = mk.account
        e.maker_leaves = mk.leaves
        e.taker_fee = taker_fee
        e.maker_fee = maker_fee

    cdef void _settle(self, Slot s, Qty qty, Amount notional, Amount fee,
                      Price price) noexcept nogil:
        """One side of a fill, after its leaves went down by qty."""
        cdef Order *o = &self.orders[s]
        cdef Instrument *ins = &self.instruments[o.instrument]
        cdef Balance *base = &self.balances[o.account * self.n_assets + ins.base_asset]
        cdef Balance *quote = &self.balances[o.account * self.n_assets + ins.quote_asset]
        self._touch_balance(o.account, ins.base_asset)
        self._touch_balance(o.account, ins.quote_asset)
        if o.side == SIDE_BUY:
            quote.locked -= self._hold(s, o.leaves + qty) - self._hold(s, o.leaves)
            quote.total -= notional + fee
            base.total += qty * ins.base_per_lot
            self._update_position(o.account, o.instrument, qty, price)
        else:
            base.locked -= qty * ins.base_per_lot
            base.total -= qty * ins.base_per_lot
            quote.total += notional - fee
            self._update_position(o.account, o.instrument, -qty, price)

    cdef void _update_position(self, int32_t account, int32_t instrument, Qty delta,
                               Price price) noexcept nogil:
        cdef Position *p = &self.positions[account * self.n_instruments + instrument]
        cdef Qty size = delta if delta > 0 else -delta
        cdef Qty held, closing, rest
        cdef int64_t removed
        cdef int64_t per_tick_lot = self.instruments[instrument].quote_per_tick_lot
        self._touch_position(account, instrument)
        if p.net_qty == 0 or (p.net_qty > 0) == (delta > 0):
            p.net_qty += delta
            p.cost += price * size
            return
        held = p.net_qty if p.net_qty > 0 else -p.net_qty
        closing = min(size, held)
        removed = <int64_t>((<fg_int128>p.cost * closing) // held)
        if p.net_qty > 0:
            p.realized_pnl += (price * closing - removed) * per_tick_lot
            p.net_qty -= closing
        else:
            p.realized_pnl += (removed - price * closing) * per_tick_lot
            p.net_qty += closing
        p.cost -= removed
        rest = size - closing
        if rest > 0:
            p.net_qty = rest if delta > 0 else -rest
            p.cost = price * rest

    cdef void _finish(self, Slot s, uint8_t status, uint8_t reason) noexcept nogil:
        """Close an order: out of the book and its account's list, hold released,
        the closing event emitted, the slot retired."""
        cdef Order *o = &self.orders[s]
        cdef Account *acct = &self.accounts[o.account]
        cdef int32_t asset = hold_asset(&self.instruments[o.instrument], o.side)
        cdef AccountLink *link
        o.status = status
        if o.level >= 0:
            self._unlink(s)
        if is_open(o):
            link = &self.links[s]
            if link.prev >= 0:
                self.links[link.prev].next = link.next
            else:
                acct.head = link.next
            if link.next >= 0:
                self.links[link.next].prev = link.prev
            else:
                acct.tail = link.prev
            acct.open_count -= 1
            o.flags &= ~ORDER_OPEN
        self.balances[o.account * self.n_assets + asset].locked -= self._hold(s, o.leaves)
        self._touch_balance(o.account, asset)
        if status == STATUS_CANCELED:
            o.flags |= reason << ORDER_REASON_SHIFT  # a retried placement reports it
            self._emit_order(EV_CANCELED, s)
        elif status == STATUS_EXPIRED:
            self._emit_order(EV_EXPIRED, s)
        self._retire(s)

    cdef void _rest(self, Slot s) noexcept nogil:
        cdef Order *o = &self.orders[s]
        cdef Instrument *ins = &self.instruments[o.instrument]
        cdef int32_t lv = self._level_at(ins, o.side, o.price)
        cdef Level *level = &self.levels[lv]
        cdef Account *acct
        o.level = lv
        o.prev = level.tail
        o.next = -1
        if level.tail >= 0:
            self.orders[level.tail].next = s
        else:
            level.head = s
        level.tail = s
        level.count += 1
        level.total += o.leaves
        if is_open(o):
            return
        acct = &self.accounts[o.account]
        o.flags |= ORDER_OPEN
        self.links[s].prev = acct.tail
        self.links[s].next = -1
        if acct.tail >= 0:
            self.links[acct.tail].next = s
        else:
            acct.head = s
        acct.tail = s
        acct.open_count += 1
        if o.tif == TIF_GTD:
            self._push_expiry(s)

    # -- BOOK --

    cdef bint _would_take(self, Instrument *ins, uint8_t side, Price limit) noexcept nogil:
        cdef Ladder *ladder = book_side(ins, other_side(side))
        if ladder.size == 0:
            return False
        return crosses(side, limit, self.levels[ladder.levels[ladder.size - 1]].price)

    cdef int32_t _level_at(self, Instrument *ins, uint8_t side, Price price) noexcept nogil:
        """The level at price, created in sorted position if absent."""
        cdef Ladder *ladder = book_side(ins, side)
        cdef int64_t key = ladder_key(side, price)
        cdef int32_t lo = 0, hi = ladder.size, mid, lv
        while lo < hi:
            mid = (lo + hi) >> 1
            if ladder_key(side, self.levels[ladder.levels[mid]].price) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < ladder.size and self.levels[ladder.levels[lo]].price == price:
            return ladder.levels[lo]
        if self.level_free_head < 0:
            self._compact_levels()
            return self._level_at(ins, side, price)
        lv = self.level_free_head
        self.level_free_head = self.levels[lv].head
        self.levels[lv].price = price
        self.levels[lv].total = 0
        self.levels[lv].count = 0
        self.levels[lv].head = -1
        self.levels[lv].tail = -1
        memmove(&ladder.levels[lo + 1], &ladder.levels[lo], (ladder.size - lo) * sizeof(int32_t))
        ladder.levels[lo] = lv
        ladder.size += 1
        return lv

    cdef void _unlink(self, Slot s) noexcept nogil:
        cdef Order *o = &self.orders[s]
        cdef Level *level = &self.levels[o.level]
        cdef Instrument *ins = &self.instruments[o.instrument]
        if o.prev >= 0:
            self.orders[o.prev].next = o.next
        else:
            level.head = o.next
        if o.next >= 0:
            self.orders[o.next].prev = o.prev
        else:
            level.tail = o.prev
        level.count -= 1
        level.total -= o.leaves
        o.level = -1
        o.prev = o.next = -1
        if level.count == 0:
            self._trim(book_side(ins, o.side))

    cdef void _trim(self, Ladder *ladder) noexcept nogil:
        cdef int32_t lv
        while ladder.size > 0:
            lv = ladder.levels[ladder.size - 1]
            if self.levels[lv].count:
                return
            self._free_level(lv)
            ladder.size -= 1

    cdef void _compact_levels(self) noexcept nogil:
        cdef int32_t i, j, n, lv
        cdef uint8_t side
        cdef Ladder *ladder
        for i in range(self.n_instruments):
            for side in range(SIDE_BUY, SIDE_SELL + 1):
                ladder = book_side(&self.instruments[i], side)
                n = 0
                for j in range(ladder.size):
                    lv = ladder.levels[j]
                    if self.levels[lv].count:
                        ladder.levels[n] = lv
                        n += 1
                    else:
                        self._free_level(lv)
                ladder.size = n

    cdef inline void _free_level(self, int32_t lv) noexcept nogil:
        self.levels[lv].head = self.level_free_head
        self.level_free_head = lv

    # -- RISK --

    cdef Price _limit(self, Slot s) noexcept nogil:
        """The worst price the order may trade at: a limit order's price, a market
        order's protection price."""
        if self.orders[s].order_type == TYPE_LIMIT:
            return self.orders[s].price
        return self.details[s].limit

    cdef Amount _hold(self, Slot s, Qty leaves) noexcept nogil:
        """What order s must hold with these leaves."""
        cdef Order *o = &self.orders[s]
        return hold_of(&self.instruments[o.instrument], o.side, self._limit(s), leaves,
                       self.accounts[o.account].taker_bps)

    cdef Amount _available(self, int32_t account, int32_t asset) noexcept nogil:
        cdef Balance *b = &self.balances[account * self.n_assets + asset]
        return b.total - b.locked

    # -- ORDERS, INDEXES, EVENTS --

    cdef Slot _allocate(self) noexcept nogil:
        cdef Slot s = self.free_head
        if s >= 0:
            self.free_head = self.orders[s].next
            return s
        if self.pool_used < self.order_capacity:
            self.pool_used += 1
            return self.pool_used - 1
        if self.retired_size == 0:
            return -1
        return self._forget_oldest()

    cdef void _retire(self, Slot s) noexcept nogil:
        """Remember a closed order for retries; forget the oldest when full."""
        cdef int32_t tail
        if self.retired_capacity == 0:
            self._release(s)
            self._free_slot(s)
            return
        if self.retired_size == self.retired_capacity:
            self._free_slot(self._forget_oldest())
        tail = self.retired_head + self.retired_size
        if tail >= self.retired_capacity:
            tail -= self.retired_capacity
        self.retired[tail] = s
        self.retired_size += 1

    cdef Slot _forget_oldest(self) noexcept nogil:
        """Take the oldest remembered order off the list and out of the indexes."""
        cdef Slot s = self.retired[self.retired_head]
        self.retired_head += 1
        if self.retired_head == self.retired_capacity:
            self.retired_head = 0
        self.retired_size -= 1
        self._release(s)
        return s

    cdef inline void _free_slot(self, Slot s) noexcept nogil:
        self.orders[s].next = self.free_head
        self.free_head = s

    cdef void _release(self, Slot s) noexcept nogil:
        self._remove_id(self.orders[s].order_id, s)
        if self.orders[s].coid_len:
            self._remove_coid(s)

    # Order ids are sequential, so the id itself places an order in `ids`:
    # recent orders sit in neighbouring buckets, which keeps placement and lookup
    # in cache, and each bucket holds one order, found in one probe. A bucket
    # holds just the slot (4 bytes, not the 16 of an id and a slot), so
    # forgetting an order closed tens of thousands of orders ago clears a bucket
    # still in cache; whoever looks an id up reads its order anyway. An order
    # still there when the ids come round the table to its bucket again moves to
    # `old_ids`, a hash table of its own: probing past a run of long-lived orders
    # instead would make every placement that lands on the run probe all of it.

    cdef inline Slot _find_id(self, OrderId order_id) noexcept nogil:
        cdef Slot s = self.ids[<uint64_t>order_id & self.id_mask]
        if s >= 0 and self.orders[s].order_id == order_id:
            return s
        if self.n_old_ids:
            return self._find_old_id(order_id)
        return -1

    cdef inline void _insert_id(self, OrderId order_id, Slot s) noexcept nogil:
        cdef Slot *bucket = &self.ids[<uint64_t>order_id & self.id_mask]
        cdef IdEntry moved
        if bucket[0] >= 0:
            moved.order_id = self.orders[bucket[0]].order_id
            moved.slot = bucket[0]
            self._insert_old_id(moved)
        bucket[0] = s

    cdef inline void _remove_id(self, OrderId order_id, Slot s) noexcept nogil:
        cdef Slot *bucket = &self.ids[<uint64_t>order_id & self.id_mask]
        if bucket[0] == s:
            bucket[0] = -1
        elif self.n_old_ids:
            self._remove_old_id(order_id)

    # `old_ids` keeps Robin Hood order (the further an entry is from home, the
    # earlier it wins a bucket): a lookup or a deletion stops at the first entry
    # nearer its home than the probe is.

    cdef inline uint64_t _old_home(self, OrderId order_id) noexcept nogil:
        return mix64(<uint64_t>order_id) & self.id_mask

    cdef inline uint64_t _old_distance(self, uint64_t i) noexcept nogil:
        return (i - self._old_home(self.old_ids[i].order_id)) & self.id_mask

    cdef Slot _find_old_id(self, OrderId order_id) noexcept nogil:
        cdef uint64_t i = self._old_home(order_id), d = 0
        while self.old_ids[i].order_id:
            if self.old_ids[i].order_id == order_id:
                return self.old_ids[i].slot
            if self._old_distance(i) < d:
                return -1
            i = (i + 1) & self.id_mask
            d += 1
        return -1

    cdef void _insert_old_id(self, IdEntry entry) noexcept nogil:
        cdef uint64_t i = self._old_home(entry.order_id), d = 0, there
        cdef IdEntry displaced
        while self.old_ids[i].order_id:
            there = self._old_distance(i)
            if there < d:
                displaced = self.old_ids[i]
                self.old_ids[i] = entry
                entry, d = displaced, there
            i = (i + 1) & self.id_mask
            d += 1
        self.old_ids[i] = entry
        self.n_old_ids += 1

    cdef void _remove_old_id(self, OrderId order_id) noexcept nogil:
        cdef uint64_t i = self._old_home(order_id), d = 0, j
        while self.old_ids[i].order_id != order_id:
            if self.old_ids[i].order_id == 0 or self._old_distance(i) < d:
                return
            i = (i + 1) & self.id_mask
            d += 1
        j = (i + 1) & self.id_mask
        while self.old_ids[j].order_id and self._old_distance(j) > 0:
            self.old_ids[i] = self.old_ids[j]
            i = j
            j = (j + 1) & self.id_mask
        self.old_ids[i].order_id = 0
        self.n_old_ids -= 1

    cdef Slot _find_coid(self, int32_t account, const char *coid, uint8_t n,
                         uint64_t h) noexcept nogil:
        cdef uint64_t i = h & self.coid_mask
        cdef Slot s
        while self.coid_slots[i] >= 0:
            s = self.coid_slots[i]
            if (self.coid_hashes[i] == h and self.orders[s].account == account
                    and self.orders[s].coid_len == n
                    and memcmp(self.details[s].coid, coid, n) == 0):
                return s
            i = (i + 1) & self.coid_mask
        return -1

    cdef void _insert_coid(self, Slot s) noexcept nogil:
        cdef uint64_t h = coid_hash(self.orders[s].account, self.details[s].coid,
                                    self.orders[s].coid_len)
        cdef uint64_t i = h & self.coid_mask
        while self.coid_slots[i] >= 0:
            i = (i + 1) & self.coid_mask
        self.coid_hashes[i] = h
        self.coid_slots[i] = s

    cdef void _remove_coid(self, Slot s) noexcept nogil:
        cdef uint64_t h = coid_hash(self.orders[s].account, self.details[s].coid,
                                    self.orders[s].coid_len)
        cdef uint64_t i = h & self.coid_mask, j, home
        while self.coid_slots[i] != s:
            if self.coid_slots[i] < 0:
                return      # another order has taken this id over
            i = (i + 1) & self.coid_mask
        j = i
        while True:
            j = (j + 1) & self.coid_mask
            if self.coid_slots[j] < 0:
                break
            home = self.coid_hashes[j] & self.coid_mask
            if ((j - home) & self.coid_mask) >= ((j - i) & self.coid_mask):
                self.coid_hashes[i] = self.coid_hashes[j]
                self.coid_slots[i] = self.coid_slots[j]
                i = j
        self.coid_slots[i] = -1

    cdef Slot _target(self) noexcept nogil:
        """The resting order of this account named by the command's order id, or
        by its client order id when the order id is 0; -1 if none."""
        cdef const CommandRecord *c = self.cmd
        cdef Slot s = -1
        if c.order_id != 0:
            s = self._find_id(c.order_id)
        elif 0 < c.coid_len <= COID_CAPACITY:
            s = self._find_coid(c.account, c.coid, c.coid_len,
                                coid_hash(c.account, c.coid, c.coid_len))
        if s < 0 or self.orders[s].account != c.account or not is_open(&self.orders[s]):
            return -1
        return s

    cdef void _touch_balance(self, int32_t account, int32_t asset) noexcept nogil:
        cdef int32_t index = account * self.n_assets + asset
        if self.balances[index].touched != self.epoch:
            self.balances[index].touched = self.epoch
            self.touched_balances[self.n_touched_balances].account = account
            self.touched_balances[self.n_touched_balances].item = asset
            self.n_touched_balances += 1

    cdef void _touch_position(self, int32_t account, int32_t instrument) noexcept nogil:
        cdef int32_t index = account * self.n_instruments + instrument
        if self.positions[index].touched != self.epoch:
            self.positions[index].touched = self.epoch
            self.touched_positions[self.n_touched_positions].account = account
            self.touched_positions[self.n_touched_positions].item = instrument
            self.n_touched_positions += 1

    cdef void _flush_touched(self) noexcept nogil:
        cdef int32_t i
        cdef Touched t
        cdef Balance *b
        cdef Position *p
        cdef EventRecord *e
        for i in range(self.n_touched_balances):
            t = self.touched_balances[i]
            b = &self.balances[t.account * self.n_assets + t.item]
            e = self._emit(EV_BALANCE)
            e.account = t.account
            e.instrument = t.item
            e.total = b.total
            e.locked = b.locked
        for i in range(self.n_touched_positions):
            t = self.touched_positions[i]
            p = &self.positions[t.account * self.n_instruments + t.item]
            e = self._emit(EV_POSITION)
            e.account = t.account
            e.instrument = t.item
            e.net_qty = p.net_qty
            e.cost = p.cost
            e.realized_pnl = p.realized_pnl

    cdef EventRecord *_emit(self, uint8_t type) noexcept nogil:
        cdef EventRecord *grown
        cdef EventRecord *e
        if self.n_events == self.event_capacity:
            grown = <EventRecord *>realloc(
                self.events, 2 * self.event_capacity * sizeof(EventRecord))
            if grown == NULL:
                abort()
            self.events = grown
            self.event_capacity *= 2
        e = &self.events[self.n_events]
        self.n_events += 1
        memset(e, 0, sizeof(EventRecord))
        e.seq = self.cmd.seq
        e.ts_ns = self.cmd.ts_ns
        e.recv_ns = self.cmd.recv_ns
        e.tag = self.cmd.tag
        e.type = type
        e.cmd_type = self.cmd.type
        return e

    cdef EventRecord *_emit_order(self, uint8_t type, Slot s) noexcept nogil:
        cdef Order *o = &self.orders[s]
        cdef EventRecord *e = self._emit(type)
        e.order_id = o.order_id
        e.account = o.account
        e.instrument = o.instrument
        e.side = o.side
        e.order_type = o.order_type
        e.tif = o.tif
        e.stp = stp_of(o)
        e.price = o.price
        e.qty = o.leaves + o.filled
        e.leaves = o.leaves
        e.filled = o.filled
        e.filled_quote = o.filled_quote
        e.status = o.status
        e.reason = reason_of(o)
        if is_post_only(o):
            e.flags = FLAG_POST_ONLY
        # closing events (the hot ones) leave the order's cold detail alone
        if type != EV_CANCELED and type != EV_EXPIRED:
            e.expire_ns = self.details[s].expire_ns
        if o.coid_len:
            e.coid_len = o.coid_len
            memcpy(e.coid, self.details[s].coid, o.coid_len)
        return e

    cdef uint16_t _reject(self, uint16_t result) noexcept nogil:
        cdef const CommandRecord *c = self.cmd
        cdef EventRecord *e = self._emit(EV_REJECTED)
        self.reject_counts[result % COUNTED_RESULTS] += 1
        e.result = result
        e.status = STATUS_REJECTED
        e.account = c.account
        e.instrument = c.instrument
        e.order_id = c.order_id
        e.side = c.side
        e.order_type = c.order_type
        e.tif = c.tif
        e.stp = c.stp
        e.price = c.price
        e.qty = c.qty
        e.coid_len = min(c.coid_len, <uint8_t>COID_CAPACITY)
        memcpy(e.coid, c.coid, e.coid_len)
        return result

    # -- QUERIES (cold: tests, snapshots, tools) --

    def balance(self, int32_t account, int32_t asset):
        """(total, locked) of an account's asset."""
        self._check_account(account)
        self._check_asset(asset)
        cdef Balance *b = &self.balances[account * self.n_assets + asset]
        return b.total, b.locked

    def position(self, int32_t account, int32_t instrument):
        """(net_qty, cost, realized_pnl) of an account in an instrument."""
        self._check_account(account)
        self._check_instrument(instrument)
        cdef Position *p = &self.positions[account * self.n_instruments + instrument]
        return p.net_qty, p.cost, p.realized_pnl

    def fees_collected_in(self, int32_t asset):
        self._check_asset(asset)
        return self.fees_collected[asset]

    def net_deposits_in(self, int32_t asset):
        self._check_asset(asset)
        return self.net_deposits[asset]

    def reference_price(self, int32_t instrument):
        self._check_instrument(instrument)
        return self.instruments[instrument].reference_price

    def kill_switch(self, int32_t account):
        self._check_account(account)
        return bool(self.accounts[account].killed)

    def open_orders(self, int32_t account):
        """Order ids of the account's open orders, oldest first."""
        self._check_account(account)
        out = []
        cdef Slot s = self.accounts[account].head
        while s >= 0:
            out.append(self.orders[s].order_id)
            s = self.links[s].next
        return out

    def order(self, OrderId order_id):
        """An open or recently closed order as a dict, or None."""
        cdef Slot s = self._find_id(order_id)
        if s < 0:
            return None
        cdef Order *o = &self.orders[s]
        cdef OrderDetail *detail = &self.details[s]
        return dict(
            order_id=o.order_id, account=o.account, instrument=o.instrument, side=o.side,
            order_type=o.order_type, tif=o.tif, price=o.price, qty=o.leaves + o.filled,
            leaves=o.leaves, filled=o.filled, filled_quote=o.filled_quote,
            locked=self._hold(s, o.leaves) if is_open(o) else 0, status=o.status,
            expire_ns=detail.expire_ns, client_order_id=detail.coid[:o.coid_len].decode(),
            post_only=is_post_only(o), stp=stp_of(o), reason=reason_of(o),
        )

    def book(self, int32_t instrument, uint8_t side):
        """Levels of one side, best first: [(price, total, [order ids in FIFO order])]."""
        self._check_instrument(instrument)
        cdef Ladder *ladder = book_side(&self.instruments[instrument], side)
        cdef int32_t i
        cdef Level *level
        cdef Slot s
        out = []
        for i in range(ladder.size - 1, -1, -1):
            level = &self.levels[ladder.levels[i]]
            if level.count == 0:
                continue
            ids = []
            s = level.head
            while s >= 0:
                ids.append(self.orders[s].order_id)
                s = self.orders[s].next
            out.append((level.price, level.total, ids))
        return out

    def counters(self):
        """For metrics: commands applied by CommandType value, rejections by
        Result value (nonzero ones only), trades; counted since this process
        started."""
        cdef int i
        return (
            {i: self.command_counts[i] for i in range(COUNTED_COMMAND_TYPES)
             if self.command_counts[i]},
            {i: self.reject_counts[i] for i in range(COUNTED_RESULTS) if self.reject_counts[i]},
            self.next_trade_id - 1,
        )

    def next_timer(self):
        """When the core next acts on time alone (ns): the earliest GTD expiry or
        dead man's switch deadline; 0 when none. The runtime sends a tick then,
        so what fires is a journaled command."""
        cdef Nanos expiry = self.expiries[0].expire_ns if self.expiry_size else 0
        if expiry == 0 or (self.next_cancel_after and self.next_cancel_after < expiry):
            return self.next_cancel_after
        return expiry

    def state_ints(self):
        """The whole state as a canonical list of integers (see engine.state_hash)."""
        return self.state_array().tolist()

    def state_array(self):
        """The integers of `state_ints` as an int64 array, gathered without the
        GIL: cheap enough for the loop to take with every snapshot."""
        cdef int64_t n
        with nogil:
            n = self._state(NULL)
        out = numpy.empty(n, dtype=numpy.int64)
        cdef int64_t[::1] view = out
        if n:
            with nogil:
                self._state(&view[0])
        return out

    cdef int64_t _state(self, int64_t *out) noexcept nogil:
        """Write the state integers to out (unless NULL); return how many."""
        cdef int64_t n = 0, count_at
        cdef int32_t a, k, i, j, levels
        cdef uint8_t side
        cdef Ladder *ladder
        cdef Level *level
        cdef Slot s
        cdef Order *o

        state_put(out, &n, self.next_order_id)
        state_put(out, &n, self.next_trade_id)
        for k in range(self.n_assets):
            state_put(out, &n, self.fees_collected[k])
            state_put(out, &n, self.net_deposits[k])
        for a in range(1, self.n_accounts + 1):
            if not self.accounts[a].exists:
                continue
            state_put(out, &n, a)
            state_put(out, &n, self.accounts[a].killed)
            state_put(out, &n, self.accounts[a].cancel_after_ns)
            for k in range(self.n_assets):
                state_put(out, &n, self.balances[a * self.n_assets + k].total)
                state_put(out, &n, self.balances[a * self.n_assets + k].locked)
            for k in range(self.n_instruments):
                state_put(out, &n, self.positions[a * self.n_instruments + k].net_qty)
                state_put(out, &n, self.positions[a * self.n_instruments + k].cost)
                state_put(out, &n, self.positions[a * self.n_instruments + k].realized_pnl)
        for i in range(self.n_instruments):
            state_put(out, &n, self.instruments[i].reference_price)
            for side in range(SIDE_BUY, SIDE_SELL + 1):
                ladder = book_side(&self.instruments[i], side)
                count_at = n
                state_put(out, &n, 0)  # levels with orders, set below
                levels = 0
                for j in range(ladder.size - 1, -1, -1):  # best first
                    level = &self.levels[ladder.levels[j]]
                    if level.count == 0:
                        continue
                    levels += 1
                    state_put(out, &n, level.price)
                    state_put(out, &n, level.total)
                    state_put(out, &n, level.count)
                    s = level.head
                    while s >= 0:
                        o = &self.orders[s]
                        state_put(out, &n, o.order_id)
                        state_put(out, &n, o.account)
                        state_put(out, &n, o.leaves)
                        state_put(out, &n, o.filled)
                        state_put(out, &n, o.filled_quote)
                        state_put(out, &n, self._hold(s, o.leaves))
                        state_put(out, &n, self.details[s].expire_ns)
                        s = o.next
                if out != NULL:
                    out[count_at] = levels
        state_put(out, &n, self.retired_size)
        for k in range(self.retired_size):
            s = self.retired[(self.retired_head + k) % self.retired_capacity]
            state_put(out, &n, self.orders[s].order_id)
        return n

    # -- SNAPSHOT (cold: between batches, and at start-up) --

    def snapshot(self):
        """The whole state, as a dict of integers and bytes, for `restore` into a
        fresh core of the same shape and configuration. Only copies memory (what
        the pool has used, the live price levels), so it can run between batches."""
        cdef int32_t i, j
        cdef uint64_t k
        cdef uint8_t side
        cdef Ladder *ladder
        ladders, live = [], []
        for i in range(self.n_instruments):
            for side in (SIDE_BUY, SIDE_SELL):
                ladder = book_side(&self.instruments[i], side)
                ladders.append(_bytes(ladder.levels, ladder.size * sizeof(int32_t)))
                for j in range(ladder.size):
                    live.append(_bytes(&self.levels[ladder.levels[j]], sizeof(Level)))
        coid_slots = [self.coid_slots[k] for k in range(self.coid_mask + 1)
                      if self.coid_slots[k] >= 0]
        return dict(
            shape=list(self.shape()),
            next_order_id=self.next_order_id, next_trade_id=self.next_trade_id,
            last_seq=self.last_seq, epoch=self.epoch,
            free_head=self.free_head, pool_used=self.pool_used,
            orders=_bytes(self.orders, self.pool_used * sizeof(Order)),
            details=_bytes(self.details, self.pool_used * sizeof(OrderDetail)),
            links=_bytes(self.links, self.pool_used * sizeof(AccountLink)),
            ladders=ladders, levels=b"".join(live),
            reference_prices=[self.instruments[i].reference_price
                              for i in range(self.n_instruments)],
            accounts=_bytes(self.accounts, (self.n_accounts + 1) * sizeof(Account)),
            balances=_bytes(self.balances, (self.n_accounts + 1) * self.n_assets * sizeof(Balance)),
            positions=_bytes(self.positions,
                             (self.n_accounts + 1) * self.n_instruments * sizeof(Position)),
            fees_collected=_bytes(self.fees_collected, self.n_assets * sizeof(Amount)),
            net_deposits=_bytes(self.net_deposits, self.n_assets * sizeof(Amount)),
            retired=b"".join(_bytes(&self.retired[(self.retired_head + i) % self.retired_capacity],
                                    sizeof(Slot)) for i in range(self.retired_size)),
            expiries=_bytes(self.expiries, self.expiry_size * sizeof(Expiry)),
            coid_slots=coid_slots,
        )

    def shape(self):
        """What a snapshot must agree on to be restored here."""
        return (self.n_accounts, self.n_assets, self.n_instruments, self.order_capacity,
                self.retired_capacity, self.max_open_orders)

    def restore(self, dict snap):
        """Load a `snapshot` into this core, which must be freshly configured.

        Raises ValueError when the snapshot does not fit this core; the order-id
        and client-order-id indexes are rebuilt from the pool.
        """
        cdef int32_t i, j, n = 0, lv
        cdef uint8_t side
        cdef Slot s, pool_used = snap["pool_used"]
        cdef Ladder *ladder
        cdef const unsigned char[::1] levels = snap["levels"]
        cdef const unsigned char[::1] ladder_bytes
        cdef unsigned char *free_mark
        if self.epoch or self.pool_used:
            raise ValueError("restore needs a fresh core")
        if tuple(snap["shape"]) != self.shape():
            raise ValueError(f"snapshot shape {snap['shape']} does not match {self.shape()}")
        if not 0 <= pool_used <= self.order_capacity:
            raise ValueError("snapshot pool size out of range")
        if len(snap["ladders"]) != 2 * self.n_instruments:
            raise ValueError("snapshot ladders do not match the instruments")
        _load(self.orders, snap["orders"], pool_used * sizeof(Order))
        _load(self.details, snap["details"], pool_used * sizeof(OrderDetail))
        _load(self.links, snap["links"], pool_used * sizeof(AccountLink))
        _load(self.accounts, snap["accounts"], (self.n_accounts + 1) * sizeof(Account))
        _load(self.balances, snap["balances"],
              (self.n_accounts + 1) * self.n_assets * sizeof(Balance))
        _load(self.positions, snap["positions"],
              (self.n_accounts + 1) * self.n_instruments * sizeof(Position))
        _load(self.fees_collected, snap["fees_collected"], self.n_assets * sizeof(Amount))
        _load(self.net_deposits, snap["net_deposits"], self.n_assets * sizeof(Amount))
        retired = snap["retired"]
        if (len(retired) > <Py_ssize_t>(self.retired_capacity * sizeof(Slot))
                or len(retired) % sizeof(Slot)):
            raise ValueError("snapshot retired list does not fit")
        self.retired_head = 0
        self.retired_size = len(retired) // sizeof(Slot)
        _load(self.retired, retired, len(retired))
        for i in range(self.retired_size):
            if not 0 <= self.retired[i] < pool_used:
                raise ValueError("snapshot retired slot out of range")
        expiries = snap["expiries"]
        if (len(expiries) > <Py_ssize_t>(2 * self.order_capacity * sizeof(Expiry))
                or len(expiries) % sizeof(Expiry)):
            raise ValueError("snapshot expiries do not fit")
        self.expiry_size = len(expiries) // sizeof(Expiry)
        _load(self.expiries, expiries, len(expiries))

        # live levels keep their indexes (orders name them); the rest are free
        free_mark = <unsigned char *>calloc(self.level_capacity, 1)
        if free_mark == NULL:
            raise MemoryError()
        try:
            for i in range(self.n_instruments):
                for side in (SIDE_BUY, SIDE_SELL):
                    ladder = book_side(&self.instruments[i], side)
                    ladder_bytes = snap["ladders"][2 * i + side - SIDE_BUY]
                    if (ladder_bytes.shape[0] % sizeof(int32_t)
                            or ladder_bytes.shape[0]
                            > <Py_ssize_t>(self.level_capacity * sizeof(int32_t))):
                        raise ValueError("snapshot ladder does not fit")
                    ladder.size = ladder_bytes.shape[0] // sizeof(int32_t)
                    _load(ladder.levels, ladder_bytes, ladder.size * sizeof(int32_t))
                    for j in range(ladder.size):
                        lv = ladder.levels[j]
                        if not 0 <= lv < self.level_capacity or free_mark[lv]:
                            raise ValueError("snapshot level index out of range")
                        if (n + 1) * sizeof(Level) > <size_t>levels.shape[0]:
                            raise ValueError("snapshot levels are short")
                        memcpy(&self.levels[lv], &levels[n * sizeof(Level)], sizeof(Level))
                        free_mark[lv] = 1
                        n += 1
                self.instruments[i].reference_price = snap["reference_prices"][i]
            if n * sizeof(Level) != <size_t>levels.shape[0]:
                raise ValueError("snapshot has levels no ladder names")
            self.level_free_head = -1
            for lv in range(self.level_capacity - 1, -1, -1):
                if not free_mark[lv]:
                    self._free_level(lv)
        finally:
            free(free_mark)

        self.next_order_id = snap["next_order_id"]
        self.next_trade_id = snap["next_trade_id"]
        self.last_seq = snap["last_seq"]
        self.epoch = snap["epoch"]
        self.free_head = snap["free_head"]
        self.pool_used = pool_used
        # every used slot not on the free list is an order someone may name
        free_mark = <unsigned char *>calloc(max(pool_used, 1), 1)
        if free_mark == NULL:
            raise MemoryError()
        try:
            s = self.free_head
            while s >= 0:
                if s >= pool_used or free_mark[s]:
                    raise ValueError("snapshot free list is broken")
                free_mark[s] = 1
                s = self.orders[s].next
            for s in range(pool_used):
                if not free_mark[s]:
                    self._insert_id(self.orders[s].order_id, s)
        finally:
            free(free_mark)
        for s in snap["coid_slots"]:
            if not 0 <= s < pool_used:
                raise ValueError("snapshot client order id slot out of range")
            self._insert_coid(s)
        self._find_next_cancel_after()

    def _check_account(self, int32_t account):
        if not 1 <= account <= self.n_accounts:
            raise ValueError("account out of range")

    def _check_asset(self, int32_t asset):
        if not 0 <= asset < self.n_assets:
            raise ValueError("asset out of range")

    def _check_instrument(self, int32_t instrument):
        if not 0 <= instrument < self.n_instruments:
            raise ValueError("instrument out of range")


cdef inline void state_put(int64_t *out, int64_t *n, int64_t value) noexcept nogil:
    if out != NULL:
        out[n[0]] = value
    n[0] += 1


cdef bytes _bytes(const void *p, size_t n):
    return PyBytes_FromStringAndSize(<const char *>p, n)


cdef void _load(void *dst, const unsigned char[::1] src, size_t n) except *:
    if <size_t>src.shape[0] != n:
        raise ValueError(f"snapshot field is {src.shape[0]} bytes, expected {n}")
    if n:
        memcpy(dst, &src[0], n)


def record_layout():
    """Offsets and sizes of the wire records, for the numpy dtypes to be checked against."""
    cdef CommandRecord c
    cdef EventRecord e
    cdef char *cb = <char *>&c
    cdef char *eb = <char *>&e
    command = dict(
        seq=<char *>&c.seq - cb, ts_ns=<char *>&c.ts_ns - cb, recv_ns=<char *>&c.recv_ns - cb,
        tag=<char *>&c.tag - cb, deadline_ns=<char *>&c.deadline_ns - cb,
        order_id=<char *>&c.order_id - cb, price=<char *>&c.price - cb, qty=<char *>&c.qty - cb,
        expire_ns=<char *>&c.expire_ns - cb, amount=<char *>&c.amount - cb,
        account=<char *>&c.account - cb, instrument=<char *>&c.instrument - cb,
        type=<char *>&c.type - cb, side=<char *>&c.side - cb,
        order_type=<char *>&c.order_type - cb, tif=<char *>&c.tif - cb,
        post_only=<char *>&c.post_only - cb, stp=<char *>&c.stp - cb,
        coid_len=<char *>&c.coid_len - cb, coid=<char *>&c.coid - cb,
    )
    event = dict(
        seq=<char *>&e.seq - eb, ts_ns=<char *>&e.ts_ns - eb, recv_ns=<char *>&e.recv_ns - eb,
        tag=<char *>&e.tag - eb,
        order_id=<char *>&e.order_id - eb, price=<char *>&e.price - eb, qty=<char *>&e.qty - eb,
        leaves=<char *>&e.leaves - eb, filled=<char *>&e.filled - eb,
        filled_quote=<char *>&e.filled_quote - eb, expire_ns=<char *>&e.expire_ns - eb,
        trade_id=<char *>&e.trade_id - eb, maker_order_id=<char *>&e.maker_order_id - eb,
        maker_leaves=<char *>&e.maker_leaves - eb, taker_fee=<char *>&e.taker_fee - eb,
        maker_fee=<char *>&e.maker_fee - eb, total=<char *>&e.total - eb,
        locked=<char *>&e.locked - eb, net_qty=<char *>&e.net_qty - eb,
        cost=<char *>&e.cost - eb, realized_pnl=<char *>&e.realized_pnl - eb,
        account=<char *>&e.account - eb, instrument=<char *>&e.instrument - eb,
        maker_account=<char *>&e.maker_account - eb, result=<char *>&e.result - eb,
        type=<char *>&e.type - eb, cmd_type=<char *>&e.cmd_type - eb, side=<char *>&e.side - eb,
        order_type=<char *>&e.order_type - eb, tif=<char *>&e.tif - eb, stp=<char *>&e.stp - eb,
        status=<char *>&e.status - eb, reason=<char *>&e.reason - eb,
        flags=<char *>&e.flags - eb, coid_len=<char *>&e.coid_len - eb,
        coid=<char *>&e.coid - eb,
    )
    return (sizeof(CommandRecord), command), (sizeof(EventRecord), event)


@cython.binding(False)  # a plain function: cheaper to call than a bound one
def pack_command(int64_t recv_ns, int32_t account, uint8_t type, int32_t instrument=0,
                 int64_t order_id=0, int64_t price=0, int64_t qty=0, int64_t expire_ns=0,
                 int64_t amount=0, uint8_t side=0, uint8_t order_type=0, uint8_t tif=0,
                 uint8_t post_only=0, uint8_t stp=0, bytes coid=b""):
    """A command record as a gateway enters it, in a new bytearray: seq, ts_ns,
    tag and deadline_ns are 0 (the sequencer and the gateway stamp them). A
    client order id is kept to COID_CAPACITY bytes; its length, up to 255,
    tells the core when it was longer."""
    cdef bytearray out = bytearray(sizeof(CommandRecord))
    cdef CommandRecord *c = <CommandRecord *><char *>out
    cdef Py_ssize_t n = len(coid)
    c.recv_ns = recv_ns
    c.order_id = order_id
    c.price = price
    c.qty = qty
    c.expire_ns = expire_ns
    c.amount = amount
    c.account = account
    c.instrument = instrument
    c.type = type
    c.side = side
    c.order_type = order_type
    c.tif = tif
    c.post_only = post_only
    c.stp = stp
    c.coid_len = <uint8_t>min(n, 255)
    memcpy(c.coid, <const char *>coid, min(n, <Py_ssize_t>COID_CAPACITY))
    return out


@cython.binding(False)
def event_tuples(const unsigned char[::1] batch):
    """The events of a batch as plain tuples, fields in record order (the
    gateways' walk reads them by index): a tuple is the cheapest object to
    index from Python. The client order id comes as text (replacement
    characters for bytes that are not UTF-8), "" when there is none."""
    cdef Py_ssize_t n = batch.shape[0] // sizeof(EventRecord), i
    if n * <Py_ssize_t>sizeof(EventRecord) != batch.shape[0]:
        raise ValueError(f"{batch.shape[0]} bytes is not a whole number of events")
    cdef const EventRecord *e
    cdef list out = [None] * n
    cdef const EventRecord *last = NULL  # a command's events share these four: made once
    seq = ts_ns = recv_ns = tag = None
    for i in range(n):
        e = <const EventRecord *>&batch[i * sizeof(EventRecord)]
        coid = (PyUnicode_DecodeUTF8(e.coid, min(e.coid_len, <uint8_t>COID_CAPACITY), "replace")
                if e.coid_len else "")
        if last == NULL or e.seq != last.seq:
            seq = e.seq
        if last == NULL or e.ts_ns != last.ts_ns:
            ts_ns = e.ts_ns
        if last == NULL or e.recv_ns != last.recv_ns:
            recv_ns = e.recv_ns
        if last == NULL or e.tag != last.tag:
            tag = e.tag
        last = e
        out[i] = (
            seq, ts_ns, recv_ns, tag, e.order_id, e.price, e.qty, e.leaves, e.filled,
            e.filled_quote, e.expire_ns, e.trade_id, e.maker_order_id, e.maker_leaves,
            e.taker_fee, e.maker_fee, e.total, e.locked, e.net_qty, e.cost, e.realized_pnl,
            e.account, e.instrument, e.maker_account, e.result, e.type, e.cmd_type, e.side,
            e.order_type, e.tif, e.stp, e.status, e.reason, e.flags, e.coid_len, coid,
        )
    return out
