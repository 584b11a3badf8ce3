"""The data dictionary reads and checks messages as a QuickFIX acceptor does,
here with the venue's own dialect (docs/FIX44-flowgate.xml): each fault is the
SessionRejectReason and the field QuickFIX would name."""

import pytest

from ext.fix import encode
from gateways.fix import dictionary as d
from gateways.fix.session import DIALECT

SCHEMA = d.DataDictionary(DIALECT)
ORDER = [(11, "a1"), (55, "BTC-USDT"), (54, 1), (38, "0.01"), (40, 2), (44, "50000"), (59, 1)]


def check(fields: list, msg_type: str = "D", raw: bytes | None = None):
    raw = raw or encode(msg_type, "A", "FLOWGATE", 2, "20261124-00:00:00.000", fields)
    message = SCHEMA.read(raw)
    SCHEMA.validate(message)
    return message


def test_a_sound_order_passes_and_comes_back_in_tag_order():
    message = check(list(reversed(ORDER)))
    assert [tag for tag, _ in SCHEMA.body_fields(message)] == [11, 38, 40, 44, 54, 55, 59]


@pytest.mark.parametrize(("fields", "reason", "tag"), [
    ([f for f in ORDER if f[0] != 11], d.REQUIRED_TAG_MISSING, 11),
    ([*ORDER, (54, 2)], d.TAG_REPEATED, 54),
    ([(t, 7) if t == 54 else (t, v) for t, v in ORDER], d.VALUE_INCORRECT, 54),
    ([(t, "+1") if t == 38 else (t, v) for t, v in ORDER], d.INCORRECT_DATA_FORMAT, 38),
    ([*ORDER, (9999, "x")], d.INVALID_TAG_NUMBER, 9999),
    ([*ORDER, (37, "1")], d.TAG_NOT_DEFINED_FOR_MESSAGE, 37),
])  # fmt: skip
def test_faults_are_named_as_quickfix_names_them(fields, reason, tag):
    with pytest.raises(d.Invalid) as fault:
        check(fields)
    assert (fault.value.reason, fault.value.tag) == (reason, tag)
    assert str(fault.value) == d.REJECT_TEXT[reason]


def test_header_after_body_and_unknown_types_are_refused():
    good = encode("D", "A", "FLOWGATE", 2, "20261124-00:00:00.000", ORDER)
    moved = good.replace(b"\x0134=2", b"", 1).replace(b"\x0110=", b"\x0134=2\x0110=", 1)
    with pytest.raises(d.Invalid) as fault:
        check([], raw=moved)
    assert (fault.value.reason, fault.value.tag) == (d.TAG_OUT_OF_ORDER, 34)
    with pytest.raises(d.Invalid) as fault:
        check([], msg_type="*")
    assert fault.value.reason == d.INVALID_MSG_TYPE
