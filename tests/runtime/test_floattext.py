"""The predictions' text (housing_runtime.io.floattext, and the compiled formatter in
housing_runtime.io.native that the CLI and server use when it is built) is byte for byte
numpy's astype(str).

The claim users rely on: the CLI's output is the same bytes it was when numpy formatted each
value. Checked on whole bands of consecutive float32 values where the format changes (the
positional range's ends, powers of ten and two, around every digit count), on random bit
patterns of every class (zero, subnormal, inf, nan, either sign), and with Hypothesis.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from housing_runtime.io import floattext, native

# Consecutive float32 values checked on each side of each landmark.
BAND = 1 << 14
LANDMARKS = [
    1e-4,
    1e-3,
    0.01,
    0.1,
    0.5,
    1.0,
    2.0,
    3.0,
    9.999999,
    10.0,
    100.0,
    1000.0,
    8388608.0 / 64,
    1e4,
    1e5,
    999999.0,
    1e6,
    16777216.0,
    1.17549435e-38,
    3.4028235e38,
]


def numpy_text(x: np.ndarray, separator: str) -> str:
    return "".join(v + separator for v in x.astype(str).tolist())


def assert_same_text(x: np.ndarray, separator: str = "\n") -> None:
    """join_float32, its array machinery on its own (join_float32 leaves arrays under
    SMALL_ARRAY values to numpy), and the compiled formatter all give numpy's text."""
    theirs = numpy_text(x, separator)
    sep = np.frombuffer(separator.encode("ascii"), np.uint8)
    with np.errstate(all="ignore"):
        chunked = b"".join(
            floattext.join_chunk(x[i : i + floattext.CHUNK_ROWS], sep, separator)
            for i in range(0, x.size, floattext.CHUNK_ROWS)
        ).decode("ascii")
    assert native.LIB is not None, "the compiled formatter is not built; reinstall the runtime (make all)"
    for ours in (floattext.join_float32(x, separator), chunked, native.join_float32(x, separator)):
        compare(ours, theirs, separator)


def compare(ours: str, theirs: str, separator: str) -> None:
    if ours != theirs:
        pairs = zip(ours.split(separator), theirs.split(separator), strict=False)  # lengths may differ too
        wrong = [(a, b) for a, b in pairs if a != b][:5]
        pytest.fail(f"the text differs from numpy's (first differing values, ours vs numpy's): {wrong}")


def band(value: float) -> np.ndarray:
    """BAND consecutive float32 values below and above ``value``, both signs."""
    centre = int(np.float32(value).view(np.uint32))
    bits = np.arange(max(centre - BAND, 0), min(centre + BAND, 0x7F800000), dtype=np.uint32)
    x = bits.view(np.float32)
    return np.concatenate([x, -x])


@pytest.mark.parametrize("landmark", LANDMARKS)
def test_every_value_around_where_the_format_changes_matches_numpy(landmark):
    assert_same_text(band(landmark))


def test_every_power_of_two_and_its_neighbours_match_numpy():
    """Powers of two have a lopsided rounding interval (the compiled formatter decides them)."""
    centres = np.arange(1, 255, dtype=np.int64) << 23
    bits = (centres[:, None] + np.arange(-256, 256)).reshape(-1).astype(np.uint32)
    x = bits.view(np.float32)
    assert_same_text(np.concatenate([x, -x]))


def test_random_bit_patterns_of_every_class_match_numpy():
    rng = np.random.default_rng(20261201)
    x = rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45], np.float32)
    assert_same_text(np.concatenate([x, specials]))


def test_predictions_in_this_datas_range_match_numpy_with_either_separator():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(200_000) * 1.2 + 2.0).astype(np.float32)
    for separator in ("\n", ", "):
        assert_same_text(x, separator)


def test_every_digit_count_from_one_to_nine_is_met():
    x = np.array(
        [
            2.5,
            1.25,
            3.125,
            0.0625,
            1.1,
            1.23,
            1.234,
            1.2345,
            1.23456,
            1.234567,
            1.2345678,
            0.123456789,
            123456.79,
            0.00012345679,
        ],
        np.float32,
    )
    assert_same_text(x)
    assert_same_text(x[:0])
    assert floattext.join_float32(x[:0], "\n") == ""


@settings(max_examples=300, deadline=None)
@given(arrays(np.float32, st.integers(0, 200), elements=st.floats(width=32)))
def test_any_float32_array_matches_numpy(x):
    assert_same_text(x)
