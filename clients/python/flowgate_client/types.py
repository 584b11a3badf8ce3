"""Typed answers of the REST API (the shapes of docs/openapi.json).

Decimals stay strings, exactly as the venue sent them (`decimal.Decimal(x)`
when arithmetic is needed); fields a newer venue adds are ignored.
"""

import msgspec


class Order(msgspec.Struct, frozen=True):
    order_id: str
    symbol: str
    side: str
    type: str
    tif: str
    qty: str
    filled_qty: str
    leaves_qty: str
    filled_notional: str
    status: str
    post_only: bool
    ts_ns: int
    price: str | None = None
    client_order_id: str | None = None
    expire_ts: int | None = None
    cancel_reason: str | None = None


class Fill(msgspec.Struct, frozen=True):
    trade_id: str
    order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    price: str
    qty: str
    fee: str
    fee_asset: str
    liquidity: str
    ts_ns: int


class Timestamps(msgspec.Struct, frozen=True):
    gateway_in_ns: int
    engine_in_ns: int
    engine_out_ns: int
    gateway_out_ns: int


class OrderResult(msgspec.Struct, frozen=True):
    """An order after matching, with its immediate fills; `retry` when the
    venue answered a repeated placement with the original order;
    `priority_kept` on an amend's: whether the order kept its queue place."""

    order: Order
    timestamps: Timestamps
    fills: list[Fill] = []
    retry: bool = False
    priority_kept: bool | None = None


class Error(msgspec.Struct, frozen=True):
    code: str
    message: str


class BatchEntry(msgspec.Struct, frozen=True):
    order: Order | None = None
    fills: list[Fill] = []
    error: Error | None = None


class BatchResult(msgspec.Struct, frozen=True):
    results: list[BatchEntry]
    timestamps: Timestamps


class Deadline(msgspec.Struct, frozen=True):
    deadline_ns: int  # 0: disarmed
    timestamps: Timestamps


class Balance(msgspec.Struct, frozen=True):
    asset: str
    total: str
    available: str
    locked: str


class Position(msgspec.Struct, frozen=True):
    symbol: str
    net_qty: str
    avg_entry_price: str | None
    entry_cost: str
    realized_pnl: str


class Instrument(msgspec.Struct, frozen=True):
    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_qty: str
    max_qty: str
    min_notional: str
    max_notional: str


class Book(msgspec.Struct, frozen=True):
    symbol: str
    seq: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


class Trade(msgspec.Struct, frozen=True):
    trade_id: str
    price: str
    qty: str
    taker_side: str
    ts_ns: int


class FillsPage(msgspec.Struct, frozen=True):
    fills: list[Fill]
    next_cursor: str | None
