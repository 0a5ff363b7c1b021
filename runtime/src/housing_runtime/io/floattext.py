"""float32 predictions as text, byte for byte what numpy's ``astype(str)`` writes, fast.

numpy formats each float32 with Dragon4 one element at a time, which is a third of the CLI's
time. Here the shortest digits are found for a whole array at once, in float64 arithmetic,
and the text is assembled as a byte matrix.

What numpy writes for a finite float32 x (the format this module reproduces):
- positional when 1e-4 <= |x| < 1e6 (x's exact value), else scientific: numpy's own rule;
- the digits are the shortest that round back to x, and of those the closest to x;
- positional keeps at least one digit after the point ("3.0"), strips trailing zeros.

Shortest digits, for positional x. With e = floor(log10 |x|), the closest p-significant-digit
decimal is D / 10^k with k = p - 1 - e and D = round(|x| 10^k). It rounds back to x iff it lies
strictly inside x's rounding interval (lo, hi), the midpoints to x's float32 neighbours
(exact in float64: each has 25 significant bits), that is iff lo 10^k < D < hi 10^k. Those
products are computed in float64 within a few ulps (10^-e is rounded once for e > 0, each
product once), so the comparison with the integer D decides exactly unless D is within
BOUND_MARGIN of a bound. p runs from 1 to 9 (9 digits always round back); the first p that
rounds back is the shortest, and D the closest decimal of that length.

Everything this arithmetic cannot decide exactly goes to numpy, element by element: values
outside the positional range and zeros; powers of two (their interval is lopsided, so a
farther decimal on the wide side may round back when the closest does not); candidates
within a few ulps of a bound, where half-even rounding decides; and near-ties between two
closest decimals in an interval wide enough to hold one. On predictions those are rare, so
the fast path carries nearly all rows; a chunk where they are not (zeros, 0/1 labels, huge
values) is left to numpy whole, which is then the faster.

Why not orjson (a runtime requirement, whose OPT_SERIALIZE_NUMPY writes a float32 array 2.5x
faster than the compiled formatter): its digits are the same, its format is not. Compared on
every float32 in [1e-4, 1e6), both signs (558,160,338 values): the same text for all but
float32(1e-4) itself, which lies just below 1e-4 (numpy "1e-04", orjson "0.0001"). Outside
that range numpy writes scientific and orjson positional, or both scientific with exponents
written differently:

    float32        numpy (the documented output)   orjson
    9.001455e-05   9.001455e-05                    0.00009001455
    1e-05          1e-05                           0.00001
    1.5e-07        1.5e-07                         1.5e-7
    1e+06          1e+06                           1000000.0
    1.2345679e+08  1.2345679e+08                   123456790.0

(the same for zeros, "-0.0", and exponents of two digits: 1e-30, 3.4028235e+38). A
prediction can take any of these values: the models are linear and unclipped, and 7 of a
million predictions spread about 2 (normal, sd 1.2) fall within 1e-4 of zero. So the output
would change; the formatter stays.
"""

from __future__ import annotations

import numpy as np

# numpy's positional range for float32 (scientific outside it): exact float32 values compare
# with these float64 constants as with the exact powers of ten (no float64 lies between).
POWERS = 10.0 ** np.arange(-4, 7)
POSITIONAL_LOW, POSITIONAL_HIGH = POWERS[0], POWERS[-1]
LOWEST_EXPONENT = -4
MAX_DIGITS = 9  # every float32 round-trips with 9 significant digits
INT_DIGITS = 6  # |x| < 1e6
FRAC_DIGITS = 12  # |x| >= 1e-4 with 9 digits: 0.000123456789
WIDEST_NUMPY = 15  # '-1.17549435e-38', the longest float32 numpy writes
# Scaled bounds this close to the integer D, relatively, go to numpy: several times the
# float64 error of the products that compute them (module docstring).
BOUND_MARGIN = 8 * float(np.finfo(np.float64).eps)
# A scaled value this close to .5 has two nearly equally close decimals: numpy decides.
TIE_MARGIN = 1e-6
# Both closest decimals of a near-tie are 0.5 away (within TIE_MARGIN): in a scaled interval
# narrower than this, neither can be inside.
TIE_WIDTH = 0.9
# A chunk where at least this share of rows needs numpy is formatted by numpy alone.
NUMPY_SHARE = 0.5
# Below this many values numpy's own formatting is the faster (one server request's rows).
SMALL_ARRAY = 1024
# Rows formatted per pass: each pass's arrays stay in the CPU cache.
CHUNK_ROWS = 1 << 15
# Two ASCII digits per uint16 ("00" to "99"), in memory order.
DIGIT_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), np.uint16)
INT64_POW10 = 10 ** np.arange(19, dtype=np.int64)


def shortest_digits(t: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D, p and whether each row was decided exactly, for |x| 10^-e = t with the rounding
    interval scaled alike (module docstring)."""
    digits = np.zeros(t.size, np.float64)
    length = np.zeros(t.size, np.int64)
    doubtful = np.zeros(t.size, bool)
    for p in range(1, MAX_DIGITS + 1):
        factor = 10.0 ** (p - 1)
        scaled, low, high = t * factor, t_lo * factor, t_hi * factor
        d = np.rint(scaled)
        margin = BOUND_MARGIN * scaled
        undecided = length == 0
        # A near-tie matters only where an interval about 1 wide could hold either decimal:
        # in a narrower one both lie outside whichever rint picks (x.5, x.25 stay fast).
        near_tie = (np.abs(scaled - np.floor(scaled) - 0.5) < TIE_MARGIN) & (high - low > TIE_WIDTH)
        doubtful |= undecided & ((np.abs(d - low) <= margin) | (np.abs(d - high) <= margin) | near_tie)
        found = undecided & (d > low) & (d < high)
        digits = np.where(found, d, digits)
        length = np.where(found, p, length)
        if length.all():
            break
    return digits.astype(np.int64), length, ~doubtful & (length > 0)


def digit_bytes(v: np.ndarray) -> np.ndarray:
    """(rows, 18) ASCII digits of int64 v < 10^18, zero-padded.

    In float64, two digits at a time: the halves (< 10^8 and < 10^10) are exact, and
    floor(part / 100) of a correctly rounded quotient is exact for integers this small."""
    pairs = np.empty((v.size, 9), np.uint16)
    high, low = np.divmod(v, 10**10)
    for part, last, count in ((low.astype(np.float64), 8, 5), (high.astype(np.float64), 3, 4)):
        for j in range(last, last - count, -1):
            quotient = np.floor(part / 100)
            pairs[:, j] = DIGIT_PAIRS[(part - quotient * 100).astype(np.intp)]
            part = quotient
    return pairs.view(np.uint8)


def positional_rows(x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Byte matrix and mask of kept bytes for -?int.frac, where v = |x| 10^12 in its shortest
    digits: numpy's positional text, sign, integer digits without leading zeros (at least
    one), the point, fraction digits without trailing zeros (at least one)."""
    digits = digit_bytes(v)
    rows = np.empty((x.size, 2 + INT_DIGITS + FRAC_DIGITS), np.uint8)
    rows[:, 0] = ord("-")
    rows[:, 1 : 1 + INT_DIGITS] = digits[:, :INT_DIGITS]
    rows[:, 1 + INT_DIGITS] = ord(".")
    rows[:, 2 + INT_DIGITS :] = digits[:, INT_DIGITS:]
    nonzero = digits != ord("0")
    # Leading zeros of the integer part: all but its last digit may go.
    leading = np.argmax(np.c_[nonzero[:, : INT_DIGITS - 1], np.ones(x.size, bool)], axis=1)
    # Trailing zeros of the fraction: all but its first digit may go.
    trailing = np.argmax(np.c_[nonzero[:, :INT_DIGITS:-1], np.ones(x.size, bool)], axis=1)
    keep = np.empty(rows.shape, bool)
    keep[:, 0] = np.signbit(x)
    keep[:, 1 : 1 + INT_DIGITS] = np.arange(INT_DIGITS) >= leading[:, None]
    keep[:, 1 + INT_DIGITS] = True
    keep[:, 2 + INT_DIGITS :] = np.arange(FRAC_DIGITS) < (FRAC_DIGITS - trailing)[:, None]
    return rows, keep


def numpy_rows(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's own text for each x, as a byte matrix and mask: the exact fallback."""
    text = x.astype(str).astype(f"S{WIDEST_NUMPY}")
    rows = np.zeros((x.size, width), np.uint8)
    rows[:, :WIDEST_NUMPY] = text.view(np.uint8).reshape(x.size, WIDEST_NUMPY)
    return rows, np.arange(width) < np.char.str_len(text)[:, None]


def numpy_join(x: np.ndarray, separator: str) -> str:
    """numpy's own text, value by value: the reference, and the faster path for few values."""
    return "".join(v + separator for v in x.astype(str).tolist())


def join_chunk(x: np.ndarray, sep: np.ndarray, separator: str) -> bytes:
    magnitude = np.abs(x)
    a = magnitude.astype(np.float64)
    # Powers of two (zero mantissa bits) have a lopsided rounding interval: numpy decides.
    fast = (a >= POSITIONAL_LOW) & (a < POSITIONAL_HIGH) & ((magnitude.view(np.uint32) & 0x7FFFFF) != 0)
    if not fast.mean() > 1 - NUMPY_SHARE:  # zeros, labels, huge values: numpy's join is faster
        return numpy_join(x, separator).encode("ascii")
    magnitude = np.where(fast, magnitude, np.float32(1.5))
    a = magnitude.astype(np.float64)
    below = np.nextafter(magnitude, np.float32(0)).astype(np.float64)
    above = np.nextafter(magnitude, np.float32(np.inf)).astype(np.float64)
    e = np.searchsorted(POWERS, a, side="right") - 1 + LOWEST_EXPONENT  # floor(log10 a)
    unscale = 10.0**-e  # exact for e <= 0, rounded once for e > 0
    d, p, decided = shortest_digits(a * unscale, (a + below) / 2 * unscale, (a + above) / 2 * unscale)
    fast &= decided
    if not fast.mean() > 1 - NUMPY_SHARE:
        return numpy_join(x, separator).encode("ascii")
    # |x| 10^12 = D 10^(12 - k), k = p - 1 - e: 13 - p + e is in [0, 17] on the fast rows.
    v = d * INT64_POW10[np.clip(13 - p + e, 0, 18)]
    rows, keep = positional_rows(x, np.where(fast, v, 0))
    slow = np.flatnonzero(~fast)
    if slow.size:
        rows[slow], keep[slow] = numpy_rows(x[slow], rows.shape[1])
    rows = np.hstack([rows, np.broadcast_to(sep, (x.size, sep.size))])
    keep = np.hstack([keep, np.ones((x.size, sep.size), bool)])
    return rows[keep].tobytes()


def join_float32(values: np.ndarray, separator: str) -> str:
    """Each value as numpy's str of it, each followed by ``separator``: the same text as
    ``"".join(v + separator for v in values.astype(str))``, for finite float32 values."""
    x = np.asarray(values, dtype=np.float32).reshape(-1)
    if x.size < SMALL_ARRAY:  # the array passes cost more than numpy's per-value formatting here
        return numpy_join(x, separator)
    sep = np.frombuffer(separator.encode("ascii"), np.uint8)
    with np.errstate(all="ignore"):  # nan and inf take numpy's path; their casts need no warning
        chunks = [join_chunk(x[i : i + CHUNK_ROWS], sep, separator) for i in range(0, x.size, CHUNK_ROWS)]
    return b"".join(chunks).decode("ascii")
