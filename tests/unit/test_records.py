"""The numpy dtypes of the wire records match the C structs byte for byte."""

import numpy as np

from engine.records import COMMAND_DTYPE, EVENT_DTYPE, FRAME_DTYPE, encode_command
from ext import core


def test_record_layouts_match_the_c_structs():
    (command_size, command), (event_size, event) = core.record_layout()
    assert COMMAND_DTYPE.itemsize == command_size == core.COMMAND_SIZE
    assert EVENT_DTYPE.itemsize == event_size == core.EVENT_SIZE
    for name, offset in command.items():
        assert COMMAND_DTYPE.fields[name][1] == offset, name
    for name, offset in event.items():
        assert EVENT_DTYPE.fields[name][1] == offset, name
    assert command_size % 8 == 0 and event_size % 8 == 0
    assert FRAME_DTYPE.itemsize == core.FRAME_SIZE == 8 + command_size


def test_events_carry_the_command_stamps():
    from engine import config
    from engine import messages as m
    from engine.engine import Engine

    engine = Engine(config.demo())
    records = np.zeros(1, dtype=COMMAND_DTYPE)
    records["seq"], records["ts_ns"], records["recv_ns"], records["tag"] = 41, 1234, 1200, 77
    records["type"] = core.CommandType.CMD_CANCEL
    records["account"], records["order_id"] = 1, 999
    (event,) = engine.apply_batch(records)
    assert (event["seq"], event["ts_ns"], event["recv_ns"], event["tag"]) == (41, 1234, 1200, 77)
    assert event["result"] == core.Result.UNKNOWN_ORDER
    assert engine.seq == 41
    assert engine.apply(m.Tick(), ts_ns=2000) == [] and engine.seq == 42


def test_client_order_ids_survive_the_records_byte_for_byte():
    from engine import config
    from engine import messages as m
    from engine.engine import Engine

    engine = Engine(config.demo())
    order = m.PlaceOrder(account=1, instrument=0, side=m.Side.BUY, type=m.OrderType.LIMIT,
                         price=4_999_000, qty=1, client_order_id="a\x00")  # fmt: skip
    (accepted, _) = engine.apply(order, ts_ns=1)
    assert accepted.client_order_id == "a\x00"


def test_a_packed_command_reads_back_field_for_field():
    fields = dict(recv_ns=1_700_000_000_000_000_000, account=7, instrument=2, order_id=2**62,
                  price=-5, qty=9_000_000_000, expire_ns=3, amount=-4, side=2, order_type=1,
                  tif=3, post_only=True, stp=2)  # fmt: skip
    record = core.pack_command(type=core.CommandType.CMD_AMEND, coid=b"c-1", **fields)
    assert isinstance(record, bytearray) and len(record) == core.COMMAND_SIZE
    (read,) = np.frombuffer(bytes(record), dtype=COMMAND_DTYPE)
    for name, value in fields.items():
        assert read[name] == value, name
    assert read["type"] == core.CommandType.CMD_AMEND
    assert (read["seq"], read["ts_ns"], read["tag"], read["deadline_ns"]) == (0, 0, 0, 0)
    assert (read["coid_len"], bytes(read["coid"])) == (3, b"c-1")
    # a longer client order id: the bytes that fit, and its length to refuse it by
    (read,) = np.frombuffer(bytes(core.pack_command(1, 1, 1, coid=b"x" * 300)), COMMAND_DTYPE)
    assert (read["coid_len"], bytes(read["coid"])) == (255, b"x" * 36)


def test_unknown_command_type_is_rejected():
    from engine import config
    from engine.engine import Engine

    engine = Engine(config.demo())
    records = np.zeros(1, dtype=COMMAND_DTYPE)
    records["type"] = 200
    (event,) = engine.apply_batch(records)
    assert event["result"] == core.Result.INVALID_COMMAND


def test_a_command_sequenced_after_its_deadline_is_not_applied():
    from engine import config
    from engine import messages as m
    from engine.engine import Engine

    engine = Engine(config.demo())
    order = m.PlaceOrder(account=1, instrument=0, side=m.Side.BUY, type=m.OrderType.LIMIT,
                         price=4_999_000, qty=1)  # fmt: skip
    records = np.zeros(2, dtype=COMMAND_DTYPE)
    for i, (ts, deadline) in enumerate([(1_000, 1_000), (1_001, 1_000)]):
        encode_command(order, records[i : i + 1], seq=i + 1, ts_ns=ts, recv_ns=900)
        records[i]["deadline_ns"] = deadline
    on_time, late = (
        e for e in engine.apply_batch(records) if e["type"] != core.EventType.EV_BALANCE
    )
    assert on_time["type"] == core.EventType.EV_ACCEPTED
    assert late["type"] == core.EventType.EV_REJECTED
    assert late["result"] == core.Result.DEADLINE_EXCEEDED
    assert (late["recv_ns"], late["expire_ns"], late["ts_ns"]) == (900, 1_000, 1_001)
    assert len(engine.core.book(0, 1)[0][2]) == 1


def test_a_cut_off_command_waits_for_its_last_event():
    from engine import config
    from engine import messages as m
    from engine.engine import Engine
    from engine.records import command_record, whole_commands

    engine = Engine(config.demo())
    commands = [m.PlaceOrder(account=a, instrument=0, side=side, type=m.OrderType.LIMIT,
                             price=5_000_000, qty=1)
                for a, side in ((1, m.Side.SELL), (2, m.Side.BUY))]  # fmt: skip
    records = np.frombuffer(b"".join(map(command_record, commands)), COMMAND_DTYPE).copy()
    records["seq"] = [1, 2]
    events = engine.apply_batch(records).tobytes()  # the second one trades: many events
    first = np.flatnonzero(np.frombuffer(events, EVENT_DTYPE)["seq"] == 2)[0]
    cut = (first + 2) * core.EVENT_SIZE  # two events into the second command
    whole, rest = whole_commands(events[:cut])
    assert (len(whole), len(rest)) == (first * core.EVENT_SIZE, 2 * core.EVENT_SIZE)
    whole, rest = whole_commands(rest + events[cut:])
    assert whole == events[first * core.EVENT_SIZE :] and rest == b""
    assert whole_commands(b"") == (b"", b"")


def test_event_tuples_give_every_field_of_every_event_in_record_order():
    from engine import views

    rng = np.random.default_rng(7)
    events = np.zeros(500, dtype=EVENT_DTYPE)
    names = [n for n in EVENT_DTYPE.names if n not in ("coid", "_pad")]
    for name in names:
        info = np.iinfo(EVENT_DTYPE[name])
        events[name] = rng.integers(info.min, info.max, len(events), endpoint=True)
    for name in ("seq", "ts_ns", "recv_ns", "tag"):  # runs of equal values, as a command's
        events[name] = rng.integers(-2, 2, len(events)) * 10**15
    coids = [b"", b"abc", b"\xff-not-utf8", b"x" * EVENT_DTYPE["coid"].itemsize]
    for i, event in enumerate(events):
        coid = coids[i % len(coids)]
        event["coid"], event["coid_len"] = coid, len(coid)
    events["coid_len"][3] = 255  # a length beyond what the record holds
    tuples = core.event_tuples(events.tobytes())
    assert len(tuples) == len(events) and len(names) + 1 == len(tuples[0]) == views.E_COID + 1
    for i, (event, got) in enumerate(zip(events, tuples, strict=True)):
        assert got[:-1] == tuple(int(event[name]) for name in names), i
        coid = coids[i % len(coids)]
        assert got[views.E_COID] == coid.decode(errors="replace"), i
    assert core.event_tuples(b"") == []
