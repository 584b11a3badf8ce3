"""Exact decimal strings <-> scaled integers, for the edges of the venue.

`parse("50000.25", 2)` is 5000025. Nothing is ever rounded: a value with
more significant decimals than the scale, an exponent, a sign where none is
allowed, white space, or anything that is not a plain decimal is refused with
a `DecimalError` saying why. Trailing zeros beyond the scale are exact and
accepted ("1.500" at scale 2).
"""

from libc.stdint cimport int64_t, uint64_t

cdef uint64_t _INT64_MAX = 9223372036854775807ULL


class DecimalError(ValueError):
    """A string that is not an exact decimal at the requested scale."""


cdef str _parse(const unsigned char[:] s, int scale, bint signed, int64_t *out):
    # returns None on success, or why the text was refused
    cdef Py_ssize_t n = s.shape[0], i = 0
    cdef bint negative = False
    cdef uint64_t value = 0
    cdef int int_digits = 0, frac_digits = 0
    cdef unsigned char ch
    if n == 0:
        return "empty"
    if s[0] == b'-':
        if not signed:
            return "negative not allowed"
        negative = True
        i = 1
    while i < n and b'0' <= s[i] <= b'9':
        if value > (_INT64_MAX - (s[i] - 48)) // 10:
            return "out of range"
        value = value * 10 + (s[i] - 48)
        int_digits += 1
        i += 1
    if int_digits == 0:
        return "no digits before the point"
    if i < n and s[i] == b'.':
        i += 1
        while i < n and b'0' <= s[i] <= b'9':
            ch = s[i]
            if frac_digits < scale:
                if value > (_INT64_MAX - (ch - 48)) // 10:
                    return "out of range"
                value = value * 10 + (ch - 48)
            elif ch != b'0':
                return "more decimals than the scale allows"
            frac_digits += 1
            i += 1
        if frac_digits == 0:
            return "no digits after the point"
    if i != n:
        return "not a plain decimal"
    while frac_digits < scale:
        if value > _INT64_MAX // 10:
            return "out of range"
        value *= 10
        frac_digits += 1
    out[0] = -<int64_t>value if negative else <int64_t>value
    return None


def parse(text, int scale, bint signed=False):
    """The integer number of 10**-scale units in text (str or bytes)."""
    cdef int64_t value = 0
    if scale < 0 or scale > 18:
        raise ValueError("scale must be within 0..18")
    if isinstance(text, str):
        if not text.isascii():
            raise DecimalError(f"{text!r}: not a plain decimal")
        data = text.encode()
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = text
    else:
        raise DecimalError(f"{text!r}: not a string")
    why = _parse(data, scale, signed, &value)
    if why is not None:
        raise DecimalError(f"{text!r}: {why}")
    return value


def parse_steps(text, int scale, int64_t step):
    """The number of whole steps (ticks, lots) in a positive decimal.

    step is in 10**-scale units; a value that is not an exact multiple of it is
    refused, never rounded.
    """
    value = parse(text, scale)
    if value % step:
        raise DecimalError(f"{text!r}: not a multiple of the step")
    return value // step


def format(int64_t value, int scale):
    """The shortest exact decimal string of value * 10**-scale."""
    if scale < 0 or scale > 18:
        raise ValueError("scale must be within 0..18")
    sign = "-" if value < 0 else ""
    digits = str(abs(value)).rjust(scale + 1, "0")
    if scale == 0:
        return sign + digits
    whole, frac = digits[:-scale], digits[-scale:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else sign + whole
