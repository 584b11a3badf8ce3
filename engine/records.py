"""numpy views of the core's fixed-size records, and conversion to and from the
msgspec vocabulary. The conversions are for tools and tests; the hot path
moves records without looking at them."""

import numpy as np

from engine import messages as m
from ext import core

COID_CAPACITY = 36

COMMAND_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("ts_ns", "<i8"),
        ("recv_ns", "<i8"),
        ("tag", "<i8"),
        ("deadline_ns", "<i8"),
        ("order_id", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("expire_ns", "<i8"),
        ("amount", "<i8"),
        ("account", "<i4"),
        ("instrument", "<i4"),
        ("type", "u1"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("post_only", "u1"),
        ("stp", "u1"),
        ("coid_len", "u1"),
        ("_pad0", "u1"),
        ("coid", f"S{COID_CAPACITY}"),
        ("_pad1", "V4"),
    ]
)

EVENT_DTYPE = np.dtype(
    [
        ("seq", "<i8"),
        ("ts_ns", "<i8"),
        ("recv_ns", "<i8"),
        ("tag", "<i8"),
        ("order_id", "<i8"),
        ("price", "<i8"),
        ("qty", "<i8"),
        ("leaves", "<i8"),
        ("filled", "<i8"),
        ("filled_quote", "<i8"),
        ("expire_ns", "<i8"),
        ("trade_id", "<i8"),
        ("maker_order_id", "<i8"),
        ("maker_leaves", "<i8"),
        ("taker_fee", "<i8"),
        ("maker_fee", "<i8"),
        ("total", "<i8"),
        ("locked", "<i8"),
        ("net_qty", "<i8"),
        ("cost", "<i8"),
        ("realized_pnl", "<i8"),
        ("account", "<i4"),
        ("instrument", "<i4"),
        ("maker_account", "<i4"),
        ("result", "<u2"),
        ("type", "u1"),
        ("cmd_type", "u1"),
        ("side", "u1"),
        ("order_type", "u1"),
        ("tif", "u1"),
        ("stp", "u1"),
        ("status", "u1"),
        ("reason", "u1"),
        ("flags", "u1"),
        ("coid_len", "u1"),
        ("coid", f"S{COID_CAPACITY}"),
        ("_pad", "V4"),
    ]
)

# A command as the journal stores it (ext/core.pxd JournalFrame).
FRAME_DTYPE = np.dtype([("length", "<u4"), ("crc", "<u4"), ("command", COMMAND_DTYPE)])

_CMD = core.CommandType
_EV = core.EventType
_FLAG_LAST = int(core.EventFlag.FLAG_LAST)
_LAST_FLAGS_AT = EVENT_DTYPE.fields["flags"][1] - core.EVENT_SIZE  # the last event's flags


def encode_command(command: m.Command, out: np.ndarray, seq: int, ts_ns: int, recv_ns: int = 0):
    """Fill a one-record COMMAND_DTYPE array from a command Struct.

    A client order id longer than the record holds keeps its full length in
    coid_len, so the core rejects it instead of matching a truncated id.
    """
    out.view(np.uint8)[:] = 0
    out["seq"] = seq
    out["ts_ns"] = ts_ns
    out["recv_ns"] = recv_ns
    match command:
        case m.PlaceOrder():
            out["type"] = _CMD.CMD_PLACE
            out["account"] = command.account
            out["instrument"] = command.instrument
            out["side"] = m.SIDE_CODE[command.side]
            out["order_type"] = m.TYPE_CODE[command.type]
            out["tif"] = m.TIF_CODE[command.tif]
            out["stp"] = m.STP_CODE[command.stp]
            out["post_only"] = command.post_only
            out["price"] = command.price
            out["qty"] = command.qty
            out["expire_ns"] = command.expire_ns
            _set_coid(out, command.client_order_id)
        case m.CancelOrder() | m.AmendOrder():
            is_amend = isinstance(command, m.AmendOrder)
            out["type"] = _CMD.CMD_AMEND if is_amend else _CMD.CMD_CANCEL
            out["account"] = command.account
            out["order_id"] = command.order_id
            if is_amend:
                out["price"] = command.price
                out["qty"] = command.qty
            _set_coid(out, command.client_order_id)
        case m.MassCancel():
            out["type"] = _CMD.CMD_MASS_CANCEL
            out["account"] = command.account
            out["instrument"] = command.instrument
            out["side"] = 0 if command.side is None else m.SIDE_CODE[command.side]
        case m.Deposit() | m.Withdraw():
            is_deposit = isinstance(command, m.Deposit)
            out["type"] = _CMD.CMD_DEPOSIT if is_deposit else _CMD.CMD_WITHDRAW
            out["account"] = command.account
            out["instrument"] = command.asset
            out["amount"] = command.amount
        case m.SetKillSwitch():
            out["type"] = _CMD.CMD_KILL_SWITCH
            out["account"] = command.account
            out["amount"] = int(command.on)
        case m.CancelAllAfter():
            out["type"] = _CMD.CMD_CANCEL_ALL_AFTER
            out["account"] = command.account
            out["amount"] = command.timeout_ns
        case m.Tick():
            out["type"] = _CMD.CMD_TICK
        case _:
            raise TypeError(f"not a command: {command!r}")


def command_record(command: m.Command, tag: int = 0, recv_ns: int = 0) -> bytes:
    """One command as the record a gateway puts in the command ring (the
    sequencer stamps seq and ts_ns)."""
    out = np.zeros(1, dtype=COMMAND_DTYPE)
    encode_command(command, out, 0, 0, recv_ns)
    out["tag"] = tag
    return out.tobytes()


def _set_coid(out, client_order_id: str):
    raw = client_order_id.encode()
    out["coid_len"] = min(len(raw), 255)
    out["coid"] = raw[:COID_CAPACITY]


def _coid(r, dtype) -> str:
    # from the raw bytes: numpy's fixed-width strings drop trailing NULs
    start = dtype.fields["coid"][1]
    return r.tobytes()[start : start + int(r["coid_len"])].decode(errors="replace")


def whole_commands(events: bytes) -> tuple[bytes, bytes]:
    """The events of whole commands, and those of the last one if it is cut
    off: a reader of a ring the engine writes into as room frees up may take
    a command's first events before its last."""
    if not events or events[_LAST_FLAGS_AT] & _FLAG_LAST:  # the common case, at once
        return events, b""
    last = np.flatnonzero(np.frombuffer(events, EVENT_DTYPE)["flags"] & _FLAG_LAST)
    cut = (int(last[-1]) + 1) * core.EVENT_SIZE if len(last) else 0
    return events[:cut], events[cut:]


def decode_events(raw: bytes) -> list[m.Event]:
    """EventRecords as emitted by the core, in order, as msgspec Structs."""
    records = np.frombuffer(raw, dtype=EVENT_DTYPE)
    return [decode_event(r) for r in records]


def decode_event(r) -> m.Event:
    kind = int(r["type"])
    seq, ts = int(r["seq"]), int(r["ts_ns"])
    coid = _coid(r, EVENT_DTYPE)
    if kind == _EV.EV_ACCEPTED:
        return m.OrderAccepted(
            seq, ts, int(r["order_id"]), int(r["account"]), int(r["instrument"]),
            m.SIDE_OF[r["side"]], m.TYPE_OF[r["order_type"]], m.TIF_OF[r["tif"]],
            m.STP_OF[r["stp"]], int(r["price"]), int(r["qty"]),
            bool(r["flags"] & core.EventFlag.FLAG_POST_ONLY), int(r["expire_ns"]), coid,
        )  # fmt: skip
    if kind == _EV.EV_REJECTED:
        return m.OrderRejected(
            seq, ts, m.COMMAND_NAMES.get(int(r["cmd_type"]), "unknown"),
            core.Result(int(r["result"])).name, int(r["account"]), int(r["instrument"]),
            int(r["order_id"]), coid,
        )  # fmt: skip
    if kind == _EV.EV_TRADE:
        return m.Trade(
            seq, ts, int(r["trade_id"]), int(r["instrument"]), int(r["price"]), int(r["qty"]),
            m.SIDE_OF[r["side"]], int(r["order_id"]), int(r["account"]), int(r["leaves"]),
            int(r["filled"]), int(r["maker_order_id"]), int(r["maker_account"]),
            int(r["maker_leaves"]), int(r["taker_fee"]), int(r["maker_fee"]),
        )  # fmt: skip
    if kind == _EV.EV_CANCELED:
        return m.OrderCanceled(
            seq, ts, int(r["order_id"]), int(r["account"]), int(r["instrument"]),
            m.SIDE_OF[r["side"]], m.REASON_OF[r["reason"]], int(r["leaves"]), int(r["filled"]),
            coid,
        )  # fmt: skip
    if kind == _EV.EV_EXPIRED:
        return m.OrderExpired(
            seq, ts, int(r["order_id"]), int(r["account"]), int(r["instrument"]),
            m.SIDE_OF[r["side"]], int(r["leaves"]), int(r["filled"]), coid,
        )  # fmt: skip
    if kind == _EV.EV_AMENDED:
        return m.OrderAmended(
            seq, ts, int(r["order_id"]), int(r["account"]), int(r["instrument"]),
            m.SIDE_OF[r["side"]], int(r["price"]), int(r["qty"]), int(r["leaves"]),
            int(r["filled"]), bool(r["flags"] & core.EventFlag.FLAG_PRIORITY_KEPT), coid,
        )  # fmt: skip
    if kind == _EV.EV_MASS_CANCELED:
        side = m.SIDE_OF.get(int(r["side"]))
        return m.MassCanceled(seq, ts, int(r["account"]), int(r["instrument"]), side, int(r["qty"]))
    if kind == _EV.EV_BALANCE:
        return m.BalanceChanged(
            seq, ts, int(r["account"]), int(r["instrument"]), int(r["total"]), int(r["locked"])
        )
    if kind == _EV.EV_POSITION:
        return m.PositionChanged(
            seq, ts, int(r["account"]), int(r["instrument"]), int(r["net_qty"]), int(r["cost"]),
            int(r["realized_pnl"]),
        )  # fmt: skip
    if kind == _EV.EV_ORDER_STATE:
        return m.OrderState(
            seq, ts, int(r["order_id"]), int(r["account"]), int(r["instrument"]),
            m.SIDE_OF[r["side"]], m.TYPE_OF[r["order_type"]], m.TIF_OF[r["tif"]],
            m.STATUS_OF[r["status"]], int(r["price"]), int(r["qty"]), int(r["leaves"]),
            int(r["filled"]), int(r["filled_quote"]), coid, m.REASON_OF.get(int(r["reason"])),
        )  # fmt: skip
    if kind == _EV.EV_KILL_SWITCH:
        on = bool(r["flags"] & core.EventFlag.FLAG_KILL_SWITCH_ON)
        return m.KillSwitchChanged(seq, ts, int(r["account"]), on)
    if kind == _EV.EV_CANCEL_ALL_AFTER:
        fired = bool(r["flags"] & core.EventFlag.FLAG_FIRED)
        return m.CancelAllAfterSet(seq, ts, int(r["account"]), int(r["expire_ns"]), fired,
                                   int(r["qty"]))  # fmt: skip
    raise ValueError(f"unknown event type {kind}")


def decode_command(r) -> m.Command:
    """The command Struct of one COMMAND_DTYPE record (its stamps are not part of it)."""
    kind = int(r["type"])
    account = int(r["account"])
    coid = _coid(r, COMMAND_DTYPE)
    if kind == _CMD.CMD_PLACE:
        return m.PlaceOrder(
            account=account, instrument=int(r["instrument"]), side=m.SIDE_OF[r["side"]],
            type=m.TYPE_OF[r["order_type"]], qty=int(r["qty"]), price=int(r["price"]),
            tif=m.TIF_OF[r["tif"]], post_only=bool(r["post_only"]), stp=m.STP_OF[r["stp"]],
            client_order_id=coid, expire_ns=int(r["expire_ns"]),
        )  # fmt: skip
    if kind == _CMD.CMD_CANCEL:
        return m.CancelOrder(account, int(r["order_id"]), coid)
    if kind == _CMD.CMD_AMEND:
        return m.AmendOrder(account, int(r["order_id"]), coid, int(r["price"]), int(r["qty"]))
    if kind == _CMD.CMD_MASS_CANCEL:
        side = m.SIDE_OF.get(int(r["side"]))
        return m.MassCancel(account, int(r["instrument"]), side)
    if kind in (_CMD.CMD_DEPOSIT, _CMD.CMD_WITHDRAW):
        cls = m.Deposit if kind == _CMD.CMD_DEPOSIT else m.Withdraw
        return cls(account, int(r["instrument"]), int(r["amount"]))
    if kind == _CMD.CMD_KILL_SWITCH:
        return m.SetKillSwitch(account, bool(r["amount"]))
    if kind == _CMD.CMD_CANCEL_ALL_AFTER:
        return m.CancelAllAfter(account, int(r["amount"]))
    if kind == _CMD.CMD_TICK:
        return m.Tick()
    raise ValueError(f"unknown command type {kind}")
