"""The FIX codec against simplefix, the reference: random messages built by
simplefix are read identically, written byte for byte the same, whatever the
chunks they arrive in; garbled and faulty messages are reported as FIX
asks."""

import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

from ext.fix import FixError, FixReader, encode

HEADER = {8, 9, 10, 35, 49, 56, 34, 52}
# simplefix reads these as raw data fields and their lengths; our dialect has none
_reference_parser = simplefix.FixParser()
RAW = set(_reference_parser.raw_len_tags) | set(_reference_parser.raw_data_tags)
text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=24)
bodies = st.dictionaries(st.integers(1, 9999).filter(lambda t: t not in HEADER | RAW),
                         text | st.integers(-(10**12), 10**12), max_size=25)  # fmt: skip


def reference(msg_type, sender, target, seq, sending_time, body) -> bytes:
    message = simplefix.FixMessage()
    for tag, value in ((8, "FIX.4.4"), (35, msg_type), (34, seq), (49, sender), (52, sending_time),
                       (56, target)):  # fmt: skip
        message.append_pair(tag, value, header=True)
    for tag, value in body.items():
        message.append_pair(tag, value)
    return message.encode()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["D", "8", "F", "G", "0", "A", "AE"]), text, text, st.integers(1, 10**9),
       text, bodies, st.lists(st.integers(1, 400), max_size=4))  # fmt: skip
def test_messages_read_and_write_as_simplefix_does(msg_type, sender, target, seq, sending_time,
                                                   body, cuts):  # fmt: skip
    wire = reference(msg_type, sender, target, seq, sending_time, body)
    assert encode(msg_type, sender, target, seq, sending_time, list(body.items())) == wire

    parser = simplefix.FixParser()
    parser.append_buffer(wire)
    expected = {int(tag): value for tag, value in parser.get_message().pairs
                if int(tag) not in (8, 9, 10)}  # fmt: skip
    stream = wire * 2
    reader, got, at = FixReader(), [], 0
    for cut in sorted(cuts) + [len(stream)]:  # the same bytes in arbitrary chunks
        got += reader.feed(stream[at:cut])
        at = max(at, cut)
    assert got == [expected, expected]


def test_a_stream_without_a_message_end_is_cut_off_not_kept():
    reader = FixReader()
    errors = []
    for _ in range(7):  # a header promising a body whose CheckSum never comes
        errors += reader.feed(b"8=FIX.4.4\x019=5\x0135=A\x01" + b"A" * 30_000)
    assert [e.too_large for e in errors] == [True, True]  # each time 64 KiB piled up
    good = encode("0", "A", "B", 1, "20261124-00:00:00", [])
    # (the first good one ends the garbled frame still pending, as QuickFIX reads it)
    assert reader.feed(good + good)[-1] == {35: b"0", 49: b"A", 56: b"B", 34: b"1",
                                            52: b"20261124-00:00:00"}  # fmt: skip


def test_garbled_messages_are_skipped_and_the_next_one_is_read():
    good = encode("0", "A", "B", 1, "20261124-00:00:00", [])
    bad_checksum = good[:-4] + (b"000" if good[-4:-1] != b"000" else b"001") + b"\x01"
    length = int(good.split(b"\x01")[1][2:])
    bad_length = good.replace(b"9=%d" % length, b"9=%d" % (length - 1), 1)  # 10= not there
    for bad in (bad_checksum, bad_length, b"garbage\x01", b"8=FIX.4.4\x019=x\x01"):
        out = FixReader().feed(bad + good)
        assert isinstance(out[0], FixError) and out[0].garbled
        assert out[-1] == {35: b"0", 49: b"A", 56: b"B", 34: b"1", 52: b"20261124-00:00:00"}


def frame(body: bytes) -> bytes:
    head = b"8=FIX.4.4\x019=" + str(len(body)).encode() + b"\x01"
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


def test_faulty_fields_come_back_with_their_reject_reason_and_seq():
    cases = [
        (b"35=D\x0134=7\x0155=\x01", 4, 55),  # a tag without a value
        (b"35=D\x0134=7\x0155=X\x0155=Y\x01", 13, 55),  # repeated
        (b"35=D\x0134=7\x01x5=1\x01", 0, None),  # tag not a number
    ]
    for body, reason, tag in cases:
        (error,) = FixReader().feed(frame(body))
        assert isinstance(error, FixError) and not error.garbled
        assert (error.reason, error.tag) == (reason, tag)
        assert error.fields.get(34) in (b"7", None)


def test_extra_header_fields_take_their_place_in_tag_order():
    raw = encode("D", "A", "B", 3, "t1", [(11, "x")], ((122, "t0"), (43, "Y")))
    (message,) = FixReader().feed(raw)
    assert list(message) == [35, 34, 43, 49, 52, 56, 122, 11]
    assert (message[43], message[122]) == (b"Y", b"t0")


def test_msgtype_not_third_is_garbled():
    good = encode("0", "A", "B", 2, "20261124-00:00:00", [])
    out = FixReader().feed(frame(b"34=7\x0135=D\x01") + good)
    assert isinstance(out[0], FixError) and out[0].garbled
    assert out[1][34] == b"2"


def test_a_bodylength_too_long_swallows_up_to_the_next_checksum_as_quickfix_reads():
    first, second, third = (encode("0", "A", "B", seq, "20261124-00:00:00", [])
                            for seq in (1, 2, 3))  # fmt: skip
    length = first.split(b"\x01")[1]
    too_long = first.replace(length, b"9=%d" % (int(length[2:]) + 20), 1)
    reader = FixReader()
    assert reader.feed(too_long) == []  # CheckSum not reached yet: wait for more
    out = reader.feed(second + third)
    assert [type(m) for m in out] == [FixError, dict]
    assert out[0].garbled and out[1][34] == b"3"


def test_another_fix_version_is_garbled_and_says_so():
    good = encode("0", "A", "B", 2, "20261124-00:00:00", [])
    other = good.replace(b"FIX.4.4", b"FIX.4.1", 1)
    out = FixReader().feed(other + good)
    assert out[0].garbled and out[0].other_version
    assert out[1][34] == b"2"


def test_keep_raw_gives_each_message_its_bytes():
    good = encode("0", "A", "B", 2, "20261124-00:00:00", [])
    reader = FixReader(keep_raw=True)
    out = reader.feed(b"junk" + good + frame(b"35=D\x0134=7\x0155=\x01"))
    assert len(out) == len(reader.raw) == 3
    assert reader.raw[0] is None and reader.raw[1] == good
    assert reader.raw[2] == frame(b"35=D\x0134=7\x0155=\x01")


def test_values_must_be_writable():
    for bad in (b"", "a\x01b", 1.5):
        try:
            encode("D", "A", "B", 1, "t", [(11, bad)])
        except (ValueError, TypeError):
            continue
        raise AssertionError(f"{bad!r} was written")
