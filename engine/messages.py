"""Commands and events as msgspec Structs: the one vocabulary of every protocol.

Values are integers in the core's units: prices in ticks, quantities in lots,
amounts in an asset's minor units, times in nanoseconds. Account ids start at
1; assets and instruments are indexes into the venue configuration.
"""

import enum

import msgspec

from ext import core


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(enum.StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    GTD = "gtd"


class SelfTradePrevention(enum.StrEnum):
    CANCEL_NEWEST = "cancel_newest"
    CANCEL_OLDEST = "cancel_oldest"
    CANCEL_BOTH = "cancel_both"


class OrderStatus(enum.StrEnum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class CancelReason(enum.StrEnum):
    USER = "user"
    MASS = "mass"
    KILL_SWITCH = "kill_switch"
    SELF_TRADE = "self_trade"
    UNFILLED = "unfilled"  # the rest of an IOC or market order
    FOK_UNFILLABLE = "fok_unfillable"
    CANCEL_ALL_AFTER = "cancel_all_after"  # the account's dead man's switch fired


def _codes(enum_type, core_enum, prefix):
    """Map each member to the core's integer code of the same name."""
    to_code = {m: int(getattr(core_enum, prefix + m.name)) for m in enum_type}
    return to_code, {code: m for m, code in to_code.items()}


SIDE_CODE, SIDE_OF = _codes(Side, core.Side, "SIDE_")
TYPE_CODE, TYPE_OF = _codes(OrderType, core.OrderType, "TYPE_")
TIF_CODE, TIF_OF = _codes(TimeInForce, core.TimeInForce, "TIF_")
STP_CODE, STP_OF = _codes(SelfTradePrevention, core.SelfTradePrevention, "STP_")
STATUS_CODE, STATUS_OF = _codes(OrderStatus, core.OrderStatus, "STATUS_")
REASON_CODE, REASON_OF = _codes(CancelReason, core.CancelReason, "REASON_")

# Stable public error codes: the core's Result names.
ERROR_CODES = [r.name for r in core.Result if r != core.Result.OK]


# -- COMMANDS --


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="command"):
    """Base of everything the engine applies."""


class PlaceOrder(Command, tag="place"):
    account: int
    instrument: int
    side: Side
    type: OrderType
    qty: int
    price: int = 0  # 0 for market orders
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_NEWEST
    client_order_id: str = ""
    expire_ns: int = 0  # GTD only


class CancelOrder(Command, tag="cancel"):
    """Names the order by order_id, or by client_order_id when order_id is 0."""

    account: int
    order_id: int = 0
    client_order_id: str = ""


class AmendOrder(Command, tag="amend"):
    """New price and/or new total quantity; 0 keeps the current value.

    The order keeps its queue priority when only its quantity goes down.
    """

    account: int
    order_id: int = 0
    client_order_id: str = ""
    price: int = 0
    qty: int = 0


class MassCancel(Command, tag="mass_cancel"):
    account: int
    instrument: int = -1  # -1: every instrument
    side: Side | None = None  # None: both sides


class Deposit(Command, tag="deposit"):
    account: int
    asset: int
    amount: int


class Withdraw(Command, tag="withdraw"):
    account: int
    asset: int
    amount: int


class SetKillSwitch(Command, tag="kill_switch"):
    """On: cancel every open order of the account and refuse new ones until off."""

    account: int
    on: bool


class CancelAllAfter(Command, tag="cancel_all_after"):
    """Dead man's switch: cancel every open order of the account unless it
    sends another CancelAllAfter within timeout_ns. 0 disarms."""

    account: int
    timeout_ns: int


class Tick(Command, tag="tick"):
    """Carries only the sequencer's time: fires due GTD expiries and dead man's
    switches."""


COMMAND_NAMES = {
    int(core.CommandType.CMD_PLACE): "place",
    int(core.CommandType.CMD_CANCEL): "cancel",
    int(core.CommandType.CMD_AMEND): "amend",
    int(core.CommandType.CMD_MASS_CANCEL): "mass_cancel",
    int(core.CommandType.CMD_DEPOSIT): "deposit",
    int(core.CommandType.CMD_WITHDRAW): "withdraw",
    int(core.CommandType.CMD_KILL_SWITCH): "kill_switch",
    int(core.CommandType.CMD_TICK): "tick",
    int(core.CommandType.CMD_CANCEL_ALL_AFTER): "cancel_all_after",
}


# -- EVENTS --


class Event(msgspec.Struct, frozen=True, tag_field="event"):
    seq: int  # of the command that produced it
    ts_ns: int  # the sequencer's time of that command


class OrderEvent(Event):
    """Base of the events about one order."""

    order_id: int
    account: int
    instrument: int
    side: Side


class OrderAccepted(OrderEvent, tag="accepted"):
    """Always precedes the order's trades."""

    type: OrderType
    tif: TimeInForce
    stp: SelfTradePrevention
    price: int
    qty: int
    post_only: bool
    expire_ns: int
    client_order_id: str


class OrderRejected(Event, tag="rejected"):
    command: str
    code: str
    account: int
    instrument: int
    order_id: int
    client_order_id: str


class Trade(Event, tag="trade"):
    trade_id: int
    instrument: int
    price: int
    qty: int
    taker_side: Side
    taker_order_id: int
    taker_account: int
    taker_leaves: int
    taker_filled: int
    maker_order_id: int
    maker_account: int
    maker_leaves: int
    taker_fee: int  # quote minor units
    maker_fee: int


class OrderCanceled(OrderEvent, tag="canceled"):
    reason: CancelReason
    leaves: int  # the quantity that was canceled
    filled: int
    client_order_id: str


class OrderExpired(OrderEvent, tag="expired"):
    leaves: int
    filled: int
    client_order_id: str


class OrderAmended(OrderEvent, tag="amended"):
    price: int
    qty: int
    leaves: int
    filled: int
    priority_kept: bool
    client_order_id: str


class MassCanceled(Event, tag="mass_canceled"):
    account: int
    instrument: int
    side: Side | None
    count: int


class BalanceChanged(Event, tag="balance"):
    """Emitted once per command for every balance the command changed."""

    account: int
    asset: int
    total: int
    locked: int


class PositionChanged(Event, tag="position"):
    account: int
    instrument: int
    net_qty: int
    cost: int  # entry cost of the open position, ticks x lots
    realized_pnl: int  # quote minor units


class OrderState(OrderEvent, tag="order_state"):
    """The answer to a repeated placement: the original order as it is now."""

    type: OrderType
    tif: TimeInForce
    status: OrderStatus
    price: int
    qty: int
    leaves: int
    filled: int
    filled_quote: int  # sum of price x qty over its fills, ticks x lots
    client_order_id: str
    reason: CancelReason | None = None  # why it was canceled, when it was


class KillSwitchChanged(Event, tag="kill_switch"):
    account: int
    on: bool


class CancelAllAfterSet(Event, tag="cancel_all_after"):
    """The account's dead man's switch was armed (deadline_ns), disarmed
    (deadline_ns 0), or fired: it canceled `count` orders."""

    account: int
    deadline_ns: int
    fired: bool
    count: int
