"""FIX timestamps written and read back agree with the standard library."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gateways.fix.session import parse_timestamp_ms, utc_timestamp


@given(st.integers(0, 4_102_444_800 * 10**9))  # to 2100
def test_timestamps_round_trip(ns):
    text = utc_timestamp(ns)
    expected = datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y%m%d-%H:%M:%S")
    assert text == f"{expected}.{ns // 10**6 % 1000:03d}"
    assert parse_timestamp_ms(text.encode()) == ns // 10**6


def test_malformed_timestamps_are_refused():
    for text in (b"", b"20261124", b"2026112x-17:00:00", b"20261124-25:00:00",
                 b"20261324-17:00:00", b"20261124 17:00:00"):  # fmt: skip
        assert parse_timestamp_ms(text) is None
