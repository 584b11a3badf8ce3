"""The public shapes every JSON/MessagePack protocol shares: order-entry
parameters in, orders, fills, balances, positions and book levels out.

Parameters are checked and turned into command records here (decimal strings
to ticks and lots, exactly, or a `RequestError` with a stable code); the core
checks everything else and answers with its own codes. Outgoing values are
decimal strings, symbols and lower-case enum names, as API.md specifies.
"""

import functools
import re
import struct
import time
import zlib
from typing import Annotated

import msgspec

from engine import messages as m
from engine.config import InstrumentSpec, VenueConfig
from engine.records import COMMAND_DTYPE
from engine.views import OrderView
from ext import core, decimal

# a command record is made by core.pack_command; the gateway sets the tag last
TAG = struct.Struct("<q")
TAG_OFFSET = COMMAND_DTYPE.fields["tag"][1]
_TYPE, _INSTRUMENT, _SIDE, _ORDER_TYPE, _TIF, _COID_LEN, _COID = (
    COMMAND_DTYPE.fields[name][1]
    for name in ("type", "instrument", "side", "order_type", "tif", "coid_len", "coid")
)
_INT32 = struct.Struct("<i")
_CMD = core.CommandType
CMD_PLACE, CMD_CANCEL, CMD_AMEND = int(_CMD.CMD_PLACE), int(_CMD.CMD_CANCEL), int(_CMD.CMD_AMEND)
CMD_MASS_CANCEL, CMD_CANCEL_ALL_AFTER = int(_CMD.CMD_MASS_CANCEL), int(_CMD.CMD_CANCEL_ALL_AFTER)
# looked up once: an enum member lookup costs several times a global's
MARKET, IOC, GTC = m.OrderType.MARKET, m.TimeInForce.IOC, m.TimeInForce.GTC
CHECKSUM_LEVELS = 10  # the book checksum covers this many levels a side
MAX_BATCH = 20

MESSAGES = {
    "INVALID_COMMAND": "the command is not valid",
    "UNKNOWN_ACCOUNT": "unknown account",
    "UNKNOWN_INSTRUMENT": "unknown symbol",
    "INVALID_SIDE": "side must be buy or sell",
    "INVALID_ORDER_TYPE": "invalid order type for these parameters",
    "INVALID_TIF": "invalid time in force for this order type",
    "INVALID_STP": "invalid self-trade prevention mode",
    "INVALID_PRICE": "the price is not a positive multiple of the tick size within range",
    "INVALID_QUANTITY": "the quantity is not a positive multiple of the lot size, or (an "
    "amend) not above what has filled",
    "INVALID_EXPIRE_TIME": "expire_ts is required for gtd orders, in the future, and only for them",
    "INVALID_CLIENT_ORDER_ID": "client_order_id is 1-36 characters of [A-Za-z0-9_-]",
    "INVALID_TIMEOUT": "timeout_ms is 0 (disarm) or 1 ms to 1 day",
    "KILL_SWITCH_ACTIVE": "the account's kill switch is on",
    "QUANTITY_BELOW_MIN": "the quantity is below the instrument's minimum",
    "QUANTITY_ABOVE_MAX": "the quantity is above the instrument's maximum",
    "NOTIONAL_BELOW_MIN": "the notional is below the instrument's minimum",
    "NOTIONAL_ABOVE_MAX": "the notional is above the instrument's maximum",
    "PRICE_OUT_OF_BAND": "the price is outside the band around the reference price",
    "TOO_MANY_OPEN_ORDERS": "the account has too many open orders",
    "INSUFFICIENT_BALANCE": "insufficient available balance",
    "UNKNOWN_ORDER": "no such open order for this account",
    "DUPLICATE_CLIENT_ORDER_ID": "client_order_id is in use with different parameters",
    "POST_ONLY_WOULD_TAKE": "the post-only order would take liquidity",
    "CAPACITY_EXCEEDED": "the venue's order capacity is exhausted",
    "OVERLOADED": "the venue is overloaded; nothing was done, retry later",
    "DEADLINE_EXCEEDED": "the request reached the engine after its signed window; not applied",
}


class RequestError(Exception):
    """A request refused at the gateway, before the engine: stable code, message."""

    def __init__(self, code: str, message: str, **details):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


def refusal_times(recv_ns: int) -> dict:
    """The timestamps of an order command refused before the engine (whose
    two are 0: it never saw it)."""
    return {"gateway_in_ns": recv_ns, "engine_in_ns": 0, "engine_out_ns": 0,
            "gateway_out_ns": time.time_ns()}  # fmt: skip


def error_of(code: str, refusal: "RequestError | None" = None) -> dict:
    """An error's body: a gateway refusal's own words and details (its
    `retry_after_ms`...), else the code's message."""
    if refusal is None:
        return {"code": code, "message": MESSAGES.get(code, code)}
    return {"code": code, "message": refusal.message, **refusal.details}


def result_name(result: int) -> str:
    return core.Result(result).name


# -- parameters in --


class PlaceParams(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str
    side: m.Side
    type: m.OrderType
    qty: str
    price: str | None = None  # absent for market orders
    tif: m.TimeInForce | None = None  # gtc for limit orders, ioc for market orders
    post_only: bool = False
    client_order_id: str = ""
    stp: m.SelfTradePrevention = m.SelfTradePrevention.CANCEL_NEWEST
    expire_ts: int | None = None  # ms since the epoch, gtd only


class OrderRef(msgspec.Struct, forbid_unknown_fields=True):
    order_id: str | None = None
    client_order_id: str | None = None


class AmendParams(OrderRef, forbid_unknown_fields=True):
    price: str | None = None
    qty: str | None = None  # the new total quantity (filled + leaves)


class CancelAllParams(msgspec.Struct, forbid_unknown_fields=True):
    symbol: str | None = None
    side: m.Side | None = None


TEXT_CACHE = 1 << 16  # decimal texts remembered per instrument and kind


class Instruments:
    """Symbol lookup and the decimal conversions of every instrument. Prices
    and quantities repeat all day, so their texts are remembered."""

    def __init__(self, config: VenueConfig, specs: list[InstrumentSpec]):
        self.specs = specs
        self.by_symbol = {spec.symbol: spec for spec in specs}
        self.asset_names = [a.name for a in config.assets]
        self.asset_decimals = [a.decimals for a in config.assets]
        self.by_asset = {a.name: i for i, a in enumerate(config.assets)}
        # per instrument, indexed like `specs`
        self.price_texts = [Remembered(spec.ticks_to_price) for spec in specs]
        self.qty_texts = [Remembered(spec.lots_to_qty) for spec in specs]
        self.notional_texts = [Remembered(spec.notional_to_text) for spec in specs]
        self.ticks_of = [Remembered(functools.partial(price_ticks, spec)) for spec in specs]
        self.lots_of = [Remembered(functools.partial(qty_lots, spec)) for spec in specs]

    def price(self, spec: InstrumentSpec, ticks: int) -> str:
        return self.price_texts[spec.index][ticks]

    def qty(self, spec: InstrumentSpec, lots: int) -> str:
        return self.qty_texts[spec.index][lots]

    def ticks(self, spec: InstrumentSpec, text: str) -> int:
        """price_ticks, remembered."""
        return self.ticks_of[spec.index][text]

    def lots(self, spec: InstrumentSpec, text: str) -> int:
        """qty_lots, remembered."""
        return self.lots_of[spec.index][text]

    def spec(self, symbol: str) -> InstrumentSpec:
        spec = self.by_symbol.get(symbol)
        if spec is None:
            raise RequestError("UNKNOWN_INSTRUMENT", f"unknown symbol {symbol!r}")
        return spec

    def amount(self, asset: int, units: int) -> str:
        return decimal.format(units, self.asset_decimals[asset])


class Remembered(dict):
    """Each key's conversion, made once: a hit is one dict lookup, without a
    Python call. A key that does not convert raises and is not kept; past
    TEXT_CACHE keys it starts afresh."""

    __slots__ = ("convert",)

    def __init__(self, convert):
        super().__init__()
        self.convert = convert

    def __missing__(self, key):
        value = self.convert(key)
        if len(self) >= TEXT_CACHE:
            self.clear()
        self[key] = value
        return value


def _steps(text: str, scale: int, step: int, code: str, what: str) -> int:
    try:
        return decimal.parse_steps(text, scale, step)
    except decimal.DecimalError as e:
        raise RequestError(code, f"{what}: {e}") from None


def price_ticks(spec: InstrumentSpec, text: str) -> int:
    return _steps(text, spec.price_scale, spec.tick_units, "INVALID_PRICE", "price")


def qty_lots(spec: InstrumentSpec, text: str) -> int:
    return _steps(text, spec.qty_scale, spec.lot_units, "INVALID_QUANTITY", "qty")


COID = re.compile(r"[A-Za-z0-9_-]{1,36}")


def coid_bytes(text: str) -> bytes:
    """A client order id as the record carries it; "" for none."""
    if text and COID.fullmatch(text) is None:
        raise RequestError("INVALID_CLIENT_ORDER_ID", MESSAGES["INVALID_CLIENT_ORDER_ID"])
    return text.encode()


MAX_INT64 = (1 << 63) - 1


def whole_number(text: str, high: int = MAX_INT64) -> bool:
    """ASCII digits (str.isdigit also takes "²" and "١"), at most 19 of them,
    of a number 0..high."""
    return text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= high


def order_id_of(ref: OrderRef) -> tuple[int, bytes]:
    """(order_id, client_order_id bytes) naming one order: exactly one of the two."""
    if (ref.order_id is None) == (ref.client_order_id is None):
        raise RequestError("INVALID_PARAMS", "name the order by order_id or client_order_id")
    if ref.order_id is not None:
        if not whole_number(ref.order_id) or int(ref.order_id) == 0:  # 0: no order
            raise RequestError("UNKNOWN_ORDER", "order_id is a decimal string")
        return int(ref.order_id), b""
    if not ref.client_order_id:
        raise RequestError("INVALID_CLIENT_ORDER_ID", MESSAGES["INVALID_CLIENT_ORDER_ID"])
    return 0, coid_bytes(ref.client_order_id)


def place_record(instruments: Instruments, p: PlaceParams, account: int,
                 recv_ns: int) -> bytearray:  # fmt: skip
    spec = instruments.spec(p.symbol)
    qty = instruments.lots(spec, p.qty)
    if p.type == MARKET:
        if p.price is not None:
            raise RequestError("INVALID_PRICE", "market orders take no price")
        price = 0
        tif = p.tif or IOC
    else:
        if p.price is None:
            raise RequestError("INVALID_PRICE", "limit orders need a price")
        price = instruments.ticks(spec, p.price)
        tif = p.tif or GTC
    if p.expire_ts is not None and not 0 < p.expire_ts <= MAX_INT64 // 1_000_000:
        raise RequestError("INVALID_EXPIRE_TIME", MESSAGES["INVALID_EXPIRE_TIME"])
    expire_ns = 0 if p.expire_ts is None else p.expire_ts * 1_000_000
    return core.pack_command(  # positional: recv_ns, account, type, instrument, order_id...
        recv_ns, account, CMD_PLACE, spec.index, 0, price, qty, expire_ns, 0,
        m.SIDE_CODE[p.side], m.TYPE_CODE[p.type], m.TIF_CODE[tif], p.post_only,
        m.STP_CODE[p.stp], coid_bytes(p.client_order_id),
    )  # fmt: skip


def spend_order(limiter, account: int):
    """A new order on the account's order budget (`limiter`, a RateLimiter),
    or RATE_LIMITED."""
    refused = limiter.spend_order(account)
    if refused is not None:
        raise RequestError("RATE_LIMITED", "this account is over its order rate limit",
                           retry_after_ms=refused.retry_after_ms)  # fmt: skip


# A batch's orders, each decoded alone (`batch_records`), so that one of the
# wrong shape is refused in its place; documented as placements
BatchOrders = list[Annotated[msgspec.Raw, msgspec.Meta(
    extra_json_schema={"$ref": "#/components/schemas/PlaceParams"})]]  # fmt: skip


def batch_records(instruments: Instruments, limiter, account: int, orders: list[msgspec.Raw],
                  decode, recv_ns: int) -> list:  # fmt: skip
    """The records of up to MAX_BATCH placements (each decoded with
    `decode(raw)` into PlaceParams), in order. An order refused here (its
    shape, a bad value, the rate limit) is a RequestError in its place and
    does not stop the others. The batch spends the account's order budget
    (`limiter`, a RateLimiter) at once when the budget holds all of it, else
    order by order."""
    if not 1 <= len(orders) <= MAX_BATCH:
        raise RequestError("INVALID_PARAMS", f"a batch holds 1 to {MAX_BATCH} orders")
    budgeted = limiter.spend_order(account, len(orders)) is None
    items = []
    for raw in orders:
        try:
            if not budgeted:
                spend_order(limiter, account)
            try:
                order = decode(raw)
            except msgspec.ValidationError as e:
                raise RequestError("INVALID_PARAMS", str(e)) from None
            items.append(place_record(instruments, order, account, recv_ns))
        except RequestError as e:
            items.append(e)
    return items


def placement_of(record) -> bytes | None:
    """The client order id of a placement's command record; None for any other
    record (or a refusal in its place)."""
    if isinstance(record, RequestError) or record[_TYPE] != CMD_PLACE:
        return None
    return bytes(record[_COID : _COID + record[_COID_LEN]])


def placement_terms(record) -> tuple[int, int, int]:
    """(side, order type, time in force) of a placement's command record."""
    return record[_SIDE], record[_ORDER_TYPE], record[_TIF]


def instrument_of(record) -> int:
    return _INT32.unpack_from(record, _INSTRUMENT)[0]


def cancel_record(ref: OrderRef, account: int, recv_ns: int) -> bytearray:
    order_id, coid = order_id_of(ref)
    return core.pack_command(recv_ns, account, CMD_CANCEL, order_id=order_id, coid=coid)


def amend_record(instruments: Instruments, p: AmendParams, instrument: int, account: int,
                 recv_ns: int) -> bytearray:  # fmt: skip
    """`instrument` is the amended order's (for its tick and lot); -1 if unknown."""
    order_id, coid = order_id_of(p)
    if p.price is None and p.qty is None:
        raise RequestError("INVALID_PARAMS", "an amend changes price, qty or both")
    if instrument < 0:
        raise RequestError("UNKNOWN_ORDER", MESSAGES["UNKNOWN_ORDER"])
    spec = instruments.specs[instrument]
    price = 0 if p.price is None else instruments.ticks(spec, p.price)
    qty = 0 if p.qty is None else instruments.lots(spec, p.qty)
    # in the record 0 means "unchanged": a zero asked for is refused here
    if price == 0 and p.price is not None:
        raise RequestError("INVALID_PRICE", MESSAGES["INVALID_PRICE"])
    if qty == 0 and p.qty is not None:
        raise RequestError("INVALID_QUANTITY", MESSAGES["INVALID_QUANTITY"])
    return core.pack_command(recv_ns, account, CMD_AMEND, order_id=order_id, price=price,
                             qty=qty, coid=coid)  # fmt: skip


def mass_cancel_record(instruments: Instruments, p: CancelAllParams, account: int,
                       recv_ns: int) -> bytearray:  # fmt: skip
    instrument = -1 if p.symbol is None else instruments.spec(p.symbol).index
    side = 0 if p.side is None else m.SIDE_CODE[p.side]
    return core.pack_command(recv_ns, account, CMD_MASS_CANCEL, instrument, side=side)


MAX_CANCEL_AFTER_MS = core.MAX_CANCEL_AFTER_NS // 1_000_000  # the longest dead man's switch


def cancel_all_after_record(timeout_ms: int, account: int, recv_ns: int) -> bytearray:
    return core.pack_command(recv_ns, account, CMD_CANCEL_ALL_AFTER,
                             amount=timeout_ms * 1_000_000)  # fmt: skip


# -- values out --


class Order(msgspec.Struct, omit_defaults=True):
    order_id: str
    symbol: str
    side: m.Side
    type: m.OrderType
    tif: m.TimeInForce
    qty: str
    filled_qty: str
    leaves_qty: str
    filled_notional: str  # quote asset
    status: m.OrderStatus
    post_only: bool
    ts_ns: int  # of the last change
    price: str | None = None
    client_order_id: str | None = None
    expire_ts: int | None = None
    cancel_reason: m.CancelReason | None = None
    reject_code: str | None = None  # a refused placement on the `orders` stream


class Fill(msgspec.Struct):
    trade_id: str
    order_id: str
    client_order_id: str | None
    symbol: str
    side: m.Side
    price: str
    qty: str
    fee: str
    fee_asset: str
    liquidity: str  # maker | taker
    ts_ns: int


class Balance(msgspec.Struct):
    asset: str
    total: str
    available: str
    locked: str


class Position(msgspec.Struct):
    symbol: str
    net_qty: str
    avg_entry_price: str | None  # 4 decimals finer than the tick, truncated; None when flat
    entry_cost: str  # quote asset, exact
    realized_pnl: str  # quote asset


def order_out(instruments: Instruments, o: OrderView) -> Order:
    i = o.instrument
    qty = instruments.qty_texts[i]
    return Order(  # positional, in the field order (several times cheaper than by name)
        str(o.order_id), instruments.specs[i].symbol, m.SIDE_OF[o.side], m.TYPE_OF[o.type],
        m.TIF_OF[o.tif], qty[o.qty], qty[o.filled], qty[o.leaves],
        instruments.notional_texts[i][o.filled_quote], m.STATUS_OF[o.status], o.post_only,
        o.ts_ns, instruments.price_texts[i][o.price] if o.price else None,
        o.client_order_id or None, o.expire_ns // 1_000_000 if o.expire_ns else None,
        m.REASON_OF.get(o.reason), o.reject_code or None,
    )  # fmt: skip


def fill_out(instruments: Instruments, o: OrderView, trade_id: int, price: int, qty: int,
             fee: int, maker: bool, ts_ns: int) -> Fill:  # fmt: skip
    spec = instruments.specs[o.instrument]
    return Fill(  # positional, in the field order
        str(trade_id), str(o.order_id), o.client_order_id or None, spec.symbol,
        m.SIDE_OF[o.side], instruments.price(spec, price), instruments.qty(spec, qty),
        spec.quote_to_text(fee), instruments.asset_names[spec.quote_asset],
        "maker" if maker else "taker", ts_ns,
    )  # fmt: skip


def balance_out(instruments: Instruments, asset: int, total: int, locked: int) -> Balance:
    amount = instruments.amount
    return Balance(instruments.asset_names[asset], amount(asset, total),
                   amount(asset, total - locked), amount(asset, locked))  # fmt: skip


def position_out(instruments: Instruments, instrument: int, net: int, cost: int,
                 pnl: int) -> Position:  # fmt: skip
    spec = instruments.specs[instrument]
    average = None
    if net:
        extra = 10**4  # finer than the tick, so an average between ticks still shows
        average = decimal.format(abs(cost) * spec.tick_units * extra // abs(net),
                                 spec.price_scale + 4)  # fmt: skip
    return Position(
        symbol=spec.symbol, net_qty=decimal.format(net * spec.lot_units, spec.qty_scale),
        avg_entry_price=average, entry_cost=spec.quote_to_text(cost * spec.quote_per_tick_lot),
        realized_pnl=spec.quote_to_text(pnl),
    )  # fmt: skip


def levels_out(instruments: Instruments, spec: InstrumentSpec, levels) -> list[tuple[str, str]]:
    price, qty = instruments.price, instruments.qty
    return [(price(spec, p), qty(spec, q)) for p, q in levels]


def book_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """CRC32 of the top CHECKSUM_LEVELS levels a side, as sent: for each rank,
    the bid's price and qty then the ask's, every value joined by ':'."""
    parts = []
    for i in range(CHECKSUM_LEVELS):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    return zlib.crc32(":".join(parts).encode())
