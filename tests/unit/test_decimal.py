import pytest

from ext.decimal import DecimalError, format, parse, parse_steps


@pytest.mark.parametrize(
    ("text", "scale", "value"),
    [
        ("0", 2, 0), ("1", 0, 1), ("50000.25", 2, 5000025), ("0.001", 3, 1),
        ("1.500", 2, 150), ("007.1", 1, 71), ("9223372036854775807", 0, 2**63 - 1),
        (b"12.5", 1, 125), ("0.000000000000000001", 18, 1),
    ],
)  # fmt: skip
def test_parse_exact(text, scale, value):
    assert parse(text, scale) == value


@pytest.mark.parametrize(
    "text",
    ["", " 1", "1 ", "1.", ".5", "+1", "-1", "1e3", "1E-2", "0x10", "1,5", "1.2.3", "nan",
     "inf", "１", "1_000", "1.001", "9223372036854775808", "92233720368547758.08"],
)  # fmt: skip
def test_parse_refuses(text):
    with pytest.raises(DecimalError):
        parse(text, 2)


def test_parse_signed_only_when_allowed():
    assert parse("-1.25", 2, signed=True) == -125
    with pytest.raises(DecimalError, match="negative"):
        parse("-1.25", 2)


def test_parse_refuses_non_strings():
    for value in (1, 1.5, None, ["1"]):
        with pytest.raises(DecimalError):
            parse(value, 2)


def test_steps_must_be_exact_multiples():
    assert parse_steps("0.05", 2, 5) == 1
    assert parse_steps("1.25", 2, 5) == 25
    with pytest.raises(DecimalError, match="multiple"):
        parse_steps("0.07", 2, 5)


@pytest.mark.parametrize(
    ("value", "scale", "text"),
    [(5000025, 2, "50000.25"), (150, 2, "1.5"), (100, 2, "1"), (1, 3, "0.001"), (0, 4, "0"),
     (-125, 2, "-1.25"), (7, 0, "7")],
)  # fmt: skip
def test_format_round_trips(value, scale, text):
    assert format(value, scale) == text
    assert parse(text, scale, signed=True) == value
