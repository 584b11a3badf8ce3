# The native matching and risk core: its types, wire records and engine API.
#
# Everything is an integer: prices in ticks, quantities in lots, asset amounts
# in minor units. Rejections are `Result` codes, never exceptions.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

ctypedef int64_t Price      # ticks of the instrument
ctypedef int64_t Qty        # lots of the instrument
ctypedef int64_t Amount     # minor units of an asset
ctypedef int64_t OrderId
ctypedef int64_t Nanos
ctypedef int32_t Slot       # index into the order pool; -1 is none

cdef enum:
    COID_CAPACITY = 36          # bytes of a client order id
    COUNTED_COMMAND_TYPES = 16  # command types counted for metrics (0..15)
    COUNTED_RESULTS = 600       # result codes counted for metrics (0..599)


cpdef enum Side:
    SIDE_BUY = 1
    SIDE_SELL = 2

cpdef enum OrderType:
    TYPE_LIMIT = 1
    TYPE_MARKET = 2

cpdef enum TimeInForce:
    TIF_GTC = 1
    TIF_IOC = 2
    TIF_FOK = 3
    TIF_GTD = 4

cpdef enum SelfTradePrevention:
    STP_CANCEL_NEWEST = 1
    STP_CANCEL_OLDEST = 2
    STP_CANCEL_BOTH = 3

cpdef enum OrderStatus:
    STATUS_NEW = 1
    STATUS_PARTIALLY_FILLED = 2
    STATUS_FILLED = 3
    STATUS_CANCELED = 4
    STATUS_REJECTED = 5
    STATUS_EXPIRED = 6

cpdef enum CommandType:
    CMD_PLACE = 1
    CMD_CANCEL = 2
    CMD_AMEND = 3
    CMD_MASS_CANCEL = 4
    CMD_DEPOSIT = 5
    CMD_WITHDRAW = 6
    CMD_KILL_SWITCH = 7
    CMD_TICK = 8
    CMD_CANCEL_ALL_AFTER = 9

cpdef enum EventType:
    EV_ACCEPTED = 1
    EV_REJECTED = 2
    EV_TRADE = 3
    EV_CANCELED = 4
    EV_EXPIRED = 5
    EV_AMENDED = 6
    EV_MASS_CANCELED = 7
    EV_BALANCE = 8
    EV_POSITION = 9
    EV_ORDER_STATE = 10
    EV_KILL_SWITCH = 11
    EV_CANCEL_ALL_AFTER = 12

cpdef enum CancelReason:
    REASON_USER = 1
    REASON_MASS = 2
    REASON_KILL_SWITCH = 3
    REASON_SELF_TRADE = 4
    REASON_UNFILLED = 5      # the rest of an IOC or market order
    REASON_FOK_UNFILLABLE = 6
    REASON_CANCEL_ALL_AFTER = 7    # the account's dead man's switch fired

cpdef enum EventFlag:
    FLAG_POST_ONLY = 1          # ACCEPTED, ORDER_STATE
    FLAG_PRIORITY_KEPT = 2      # AMENDED: the order kept its place in the queue
    FLAG_KILL_SWITCH_ON = 4     # KILL_SWITCH
    FLAG_RETRY = 8              # ORDER_STATE: answer to a repeated placement
    FLAG_LAST = 16              # any: the last event of its command
    FLAG_FIRED = 32             # CANCEL_ALL_AFTER: the timer ran out and canceled

# One code per rejection, grouped by the stage that raises it.
cpdef enum Result:
    OK = 0
    # validation of the command itself
    INVALID_COMMAND = 100
    UNKNOWN_ACCOUNT = 101
    UNKNOWN_INSTRUMENT = 102
    UNKNOWN_ASSET = 103
    INVALID_SIDE = 104
    INVALID_ORDER_TYPE = 105
    INVALID_TIF = 106
    INVALID_STP = 107
    INVALID_PRICE = 108
    INVALID_QUANTITY = 109
    INVALID_EXPIRE_TIME = 110
    INVALID_AMOUNT = 111
    INVALID_CLIENT_ORDER_ID = 112
    INVALID_TIMEOUT = 113
    # pre-trade risk
    KILL_SWITCH_ACTIVE = 200
    QUANTITY_BELOW_MIN = 201
    QUANTITY_ABOVE_MAX = 202
    NOTIONAL_BELOW_MIN = 203
    NOTIONAL_ABOVE_MAX = 204
    PRICE_OUT_OF_BAND = 205
    TOO_MANY_OPEN_ORDERS = 206
    INSUFFICIENT_BALANCE = 207
    # order state
    UNKNOWN_ORDER = 300
    DUPLICATE_CLIENT_ORDER_ID = 301
    POST_ONLY_WOULD_TAKE = 302
    # capacity
    CAPACITY_EXCEEDED = 400
    # the venue itself: raised before the core, by the runtime or a gateway
    OVERLOADED = 500            # the command ring is full: nothing was done, retry later
    DEADLINE_EXCEEDED = 501     # sequenced after its deadline (the signature's window): not applied


# -- WIRE RECORDS -------------------------------------------------------------
# Fixed-size, naturally aligned; `engine.records` mirrors them as numpy dtypes
# and a test checks every offset.

cdef struct CommandRecord:
    int64_t seq             # stamped by the sequencer
    int64_t ts_ns           # stamped by the sequencer: the only clock the core reads
    int64_t recv_ns         # gateway receive time, copied to the events
    int64_t tag             # the gateway's (which session, which request), copied to the events
    int64_t deadline_ns     # 0, or the latest sequencer time the command may be applied at
    int64_t order_id        # CANCEL / AMEND target (0: use client_order_id)
    int64_t price           # ticks; AMEND: 0 keeps the price
    int64_t qty             # lots (total order quantity); AMEND: 0 keeps it
    int64_t expire_ns       # GTD only
    int64_t amount          # DEPOSIT / WITHDRAW: minor units; KILL_SWITCH: 1 on, 0 off;
    #                         CANCEL_ALL_AFTER: the timeout in ns, 0 disarms
    int32_t account
    int32_t instrument      # DEPOSIT / WITHDRAW: the asset; MASS_CANCEL: -1 for all
    uint8_t type            # CommandType
    uint8_t side            # MASS_CANCEL: 0 for both
    uint8_t order_type
    uint8_t tif
    uint8_t post_only
    uint8_t stp
    uint8_t coid_len
    uint8_t _pad0
    char coid[COID_CAPACITY]
    uint8_t _pad1[4]

cdef struct EventRecord:
    int64_t seq             # of the command that produced the event
    int64_t ts_ns
    int64_t recv_ns
    int64_t tag
    int64_t order_id        # the order; TRADE: the taker
    int64_t price           # order price; TRADE: execution price
    int64_t qty             # order quantity; TRADE: fill; MASS_CANCELED, CANCEL_ALL_AFTER: count
    int64_t leaves          # open quantity after the event; TRADE: the taker's
    int64_t filled          # cumulative filled quantity; TRADE: the taker's
    int64_t filled_quote    # cumulative sum of price * qty (ticks x lots)
    int64_t expire_ns       # ACCEPTED, AMENDED, ORDER_STATE; CANCEL_ALL_AFTER the deadline
    int64_t trade_id
    int64_t maker_order_id
    int64_t maker_leaves
    int64_t taker_fee       # quote minor units
    int64_t maker_fee
    int64_t total           # BALANCE
    int64_t locked          # BALANCE
    int64_t net_qty         # POSITION, lots, signed
    int64_t cost            # POSITION: entry cost of the open position (ticks x lots)
    int64_t realized_pnl    # POSITION, quote minor units
    int32_t account         # TRADE: the taker's
    int32_t instrument      # BALANCE: the asset
    int32_t maker_account
    uint16_t result         # REJECTED: the Result code
    uint8_t type            # EventType
    uint8_t cmd_type
    uint8_t side
    uint8_t order_type
    uint8_t tif
    uint8_t stp
    uint8_t status          # of the order after the event
    uint8_t reason          # CANCELED: CancelReason
    uint8_t flags           # see EVENT_FLAG_*
    uint8_t coid_len
    char coid[COID_CAPACITY]
    uint8_t _pad[4]


cdef struct JournalFrame:
    # One command on disk.
    uint32_t length         # of the payload: sizeof(CommandRecord)
    uint32_t crc            # CRC32 of the payload (the polynomial of zlib.crc32)
    CommandRecord command   # its seq is the frame's sequence number


# -- CORE STATE (private to the engine) ---------------------------------------

cdef enum:
    ORDER_POST_ONLY = 1         # Order.flags
    ORDER_OPEN = 2              # in its account's open-order list
    ORDER_STP_SHIFT = 2         # bits 2-3: its SelfTradePrevention
    ORDER_REASON_SHIFT = 4      # bits 4-7: its CancelReason once canceled

cdef struct Order:
    # One cache line: everything matching, cancel and the book touch. What an
    # order holds is not stored: it is a function of its limit and leaves
    # (MatchingCore._hold).
    OrderId order_id
    Price price                 # as placed (0 for market orders)
    Qty leaves
    Qty filled                  # the order quantity is leaves + filled
    int64_t filled_quote        # sum of price x qty over its fills (ticks x lots)
    int32_t account
    Slot prev                   # FIFO within the price level
    Slot next
    int32_t level               # -1 when not in the book
    uint16_t instrument
    uint8_t side
    uint8_t order_type
    uint8_t tif
    uint8_t status
    uint8_t flags               # ORDER_POST_ONLY | ORDER_OPEN | stp, reason (see the shifts)
    uint8_t coid_len

cdef struct OrderDetail:
    # What only placement, retries, expiry and order events read.
    Price limit                 # the worst price it may trade at (market: the protection price)
    Nanos expire_ns
    Price orig_price            # as first placed, to recognise a retried placement
    Qty orig_qty
    char coid[COID_CAPACITY]

cdef struct AccountLink:
    Slot prev                   # the account's open orders, oldest first
    Slot next

cdef struct IdEntry:
    OrderId order_id            # 0: empty
    Slot slot

cdef struct Level:
    Price price
    Qty total
    int32_t count
    Slot head
    Slot tail

cdef struct Ladder:
    # Level indices sorted so the best price is last: bids ascending, asks
    # descending. Emptied levels behind the top stay (count 0) until they reach
    # the top or the level pool is compacted, so cancel never searches.
    int32_t *levels
    int32_t size

cdef struct Instrument:
    int32_t base_asset
    int32_t quote_asset
    int64_t quote_per_tick_lot  # quote minor units of one tick x one lot
    int64_t base_per_lot        # base minor units of one lot
    Qty min_qty
    Qty max_qty
    Amount min_notional
    Amount max_notional
    Price max_price
    Price reference_price       # last trade, or the configured start
    int64_t band_bps            # allowed distance from the reference price
    Ladder bids
    Ladder asks

cdef struct Account:
    int64_t maker_bps
    int64_t taker_bps
    int32_t open_count
    Nanos cancel_after_ns       # dead man's switch deadline; 0 when disarmed
    Slot head                   # oldest open order
    Slot tail
    uint8_t exists
    uint8_t killed

cdef struct Balance:
    Amount total
    Amount locked
    int64_t touched             # MatchingCore.epoch of the last command that touched it

cdef struct Position:
    Qty net_qty
    int64_t cost
    Amount realized_pnl
    int64_t touched             # as Balance.touched

cdef struct Touched:
    int32_t account
    int32_t item                # an asset (balances) or an instrument (positions)

cdef struct Expiry:
    Nanos expire_ns
    OrderId order_id


cdef class Ring:
    cdef char *buffer
    cdef object memory              # shared memory the ring lives in, or None (owns buffer)
    cdef uint64_t *head             # consumer position, own cache line; head[1]: sleeping
    cdef uint64_t *tail             # producer position, own cache line
    cdef char *slots
    cdef readonly uint64_t capacity
    cdef uint64_t mask
    cdef readonly Py_ssize_t slot_size

    cdef inline char *slot(self, uint64_t position) noexcept nogil


cdef class MatchingCore:
    cdef readonly int32_t n_accounts, n_assets, n_instruments
    cdef readonly int32_t order_capacity, retired_capacity
    cdef readonly int32_t max_open_orders
    cdef Order *orders
    cdef OrderDetail *details
    cdef AccountLink *links
    cdef Slot free_head         # slots given back, reused first
    cdef Slot pool_used         # slots handed out at least once: the rest are untouched
    cdef Level *levels
    cdef int32_t level_capacity, level_free_head
    cdef Instrument *instruments
    cdef Account *accounts
    cdef Balance *balances
    cdef Position *positions
    cdef Amount *fees_collected
    cdef Amount *net_deposits
    # order id -> slot: one bucket per id modulo the table size, holding the
    # slot (-1: none; the slot's order says which id it is); an order whose
    # bucket a newer id takes moves to old_ids (linear probing, Robin Hood order)
    cdef Slot *ids
    cdef IdEntry *old_ids
    cdef uint64_t id_mask
    cdef int64_t n_old_ids
    # (account, client order id) -> slot
    cdef uint64_t *coid_hashes
    cdef Slot *coid_slots
    cdef uint64_t coid_mask
    # closed orders kept for exactly-once retries, oldest first
    cdef Slot *retired
    cdef int32_t retired_head, retired_size
    cdef Expiry *expiries       # binary min-heap of GTD orders
    cdef int32_t expiry_size
    cdef Nanos next_cancel_after    # earliest armed dead man's switch; 0 when none
    # balances and positions changed by the current command, in order
    cdef Touched *touched_balances
    cdef int32_t n_touched_balances
    cdef Touched *touched_positions
    cdef int32_t n_touched_positions
    cdef EventRecord *events
    cdef readonly int64_t n_events
    cdef int64_t event_capacity
    cdef readonly OrderId next_order_id
    cdef readonly int64_t next_trade_id
    cdef readonly int64_t last_seq
    cdef int64_t epoch              # commands applied; marks what a command touched
    # for metrics only: not state (not snapshotted, not hashed)
    cdef int64_t command_counts[COUNTED_COMMAND_TYPES]
    cdef int64_t reject_counts[COUNTED_RESULTS]
    cdef const CommandRecord *cmd    # the command being applied

    # -- COMMANDS --
    @staticmethod
    cdef Py_ssize_t _count(const unsigned char[::1] records) except -1
    cdef void apply_record(self, const CommandRecord *cmd) noexcept nogil
    cdef int64_t _apply_one(self, CommandRecord *c) noexcept
    cdef inline bint _known_account(self, int32_t account) noexcept nogil
    cdef inline void _band(self, Instrument *ins, Price *lo, Price *hi) noexcept nogil
    cdef uint16_t _place(self) noexcept nogil
    cdef uint16_t _cancel(self) noexcept nogil
    cdef uint16_t _amend(self) noexcept nogil
    cdef uint16_t _mass_cancel(self) noexcept nogil
    cdef uint16_t _transfer(self) noexcept nogil
    cdef uint16_t _kill_switch(self) noexcept nogil
    cdef uint16_t _cancel_all_after(self) noexcept nogil
    cdef void _fire_cancel_all_after(self) noexcept nogil
    cdef void _find_next_cancel_after(self) noexcept nogil
    cdef int64_t _state(self, int64_t *out) noexcept nogil
    cdef int64_t _cancel_account_orders(self, int32_t account, int32_t instrument,
                                        uint8_t side, uint8_t reason) noexcept nogil
    cdef void _expire_due(self) noexcept nogil

    # -- MATCHING --
    cdef bint _match(self, Slot taker) noexcept nogil
    cdef bint _fok_fillable(self, Slot taker) noexcept nogil
    cdef void _fill(self, Slot taker, Slot maker, Price price, Qty qty) noexcept nogil
    cdef void _settle(self, Slot s, Qty qty, Amount notional, Amount fee,
                      Price price) noexcept nogil
    cdef void _update_position(self, int32_t account, int32_t instrument, Qty delta,
                               Price price) noexcept nogil
    cdef void _finish(self, Slot s, uint8_t status, uint8_t reason) noexcept nogil
    cdef void _rest(self, Slot s) noexcept nogil

    # -- BOOK --
    cdef bint _would_take(self, Instrument *ins, uint8_t side, Price limit) noexcept nogil
    cdef int32_t _level_at(self, Instrument *ins, uint8_t side, Price price) noexcept nogil
    cdef void _unlink(self, Slot s) noexcept nogil
    cdef void _trim(self, Ladder *ladder) noexcept nogil
    cdef void _compact_levels(self) noexcept nogil
    cdef inline void _free_level(self, int32_t lv) noexcept nogil

    # -- RISK --
    cdef Price _limit(self, Slot s) noexcept nogil
    cdef Amount _hold(self, Slot s, Qty leaves) noexcept nogil
    cdef Amount _available(self, int32_t account, int32_t asset) noexcept nogil

    # -- ORDERS, INDEXES, EVENTS --
    cdef Slot _allocate(self) noexcept nogil
    cdef void _retire(self, Slot s) noexcept nogil
    cdef Slot _forget_oldest(self) noexcept nogil
    cdef inline void _free_slot(self, Slot s) noexcept nogil
    cdef void _release(self, Slot s) noexcept nogil
    cdef inline Slot _find_id(self, OrderId order_id) noexcept nogil
    cdef inline void _insert_id(self, OrderId order_id, Slot s) noexcept nogil
    cdef inline void _remove_id(self, OrderId order_id, Slot s) noexcept nogil
    cdef inline uint64_t _old_home(self, OrderId order_id) noexcept nogil
    cdef inline uint64_t _old_distance(self, uint64_t i) noexcept nogil
    cdef Slot _find_old_id(self, OrderId order_id) noexcept nogil
    cdef void _insert_old_id(self, IdEntry entry) noexcept nogil
    cdef void _remove_old_id(self, OrderId order_id) noexcept nogil
    cdef Slot _find_coid(self, int32_t account, const char *coid, uint8_t n,
                         uint64_t h) noexcept nogil
    cdef void _insert_coid(self, Slot s) noexcept nogil
    cdef void _remove_coid(self, Slot s) noexcept nogil
    cdef Slot _target(self) noexcept nogil
    cdef void _push_expiry(self, Slot s) noexcept nogil
    cdef inline void _sift_up(self, Expiry item) noexcept nogil
    cdef void _touch_balance(self, int32_t account, int32_t asset) noexcept nogil
    cdef void _touch_position(self, int32_t account, int32_t instrument) noexcept nogil
    cdef void _flush_touched(self) noexcept nogil
    cdef EventRecord *_emit(self, uint8_t type) noexcept nogil
    cdef EventRecord *_emit_order(self, uint8_t type, Slot s) noexcept nogil
    cdef uint16_t _reject(self, uint16_t result) noexcept nogil
