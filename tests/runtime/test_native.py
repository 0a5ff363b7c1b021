"""The compiled fast paths (runtime/src/housing_runtime/io/native.c) change nothing but speed.

What users rely on: the same input gives the same output bytes, or the same one-line error,
whether the library is built or not. Checked three ways, against code nobody here wrote where
possible:
- each number the C parser accepts, numpy's loadtxt (CSV) or Python's json (JSON Lines) also
  accepts, with bit-identical float64 values; plain numbers are accepted (else the fast path
  would be dead code);
- the readers give identical rows, or identical errors, with the library and without it, on
  generated files with corrupted lines, for any chunk size;
- the CLI writes identical bytes both ways (the formatter itself is checked against numpy in
  tests/runtime/test_floattext.py, value by value).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import REPO, write_synthetic_artifacts
from housing_runtime import validate
from housing_runtime.errors import UserError
from housing_runtime.io import json_values, lines, native, readers
from pipeline import config

FEATURES = config.FEATURE_NAMES
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_the_library_is_built_and_loaded():
    """make all builds it (the editable install compiles native.c); a silent fallback would hide a broken build."""
    assert native.LIB is not None, f"{native.LIBRARY} is not built or does not load; reinstall the runtime (make all)"


def same_bits(a: float, b: float) -> bool:
    return np.float64(a).view(np.int64) == np.float64(b).view(np.int64)


# ---- Numbers ---------------------------------------------------------------------------


def c_csv_field(field: str) -> float | None:
    got = native.parse_csv(field.encode("ascii"), 0, np.zeros(1, np.intc), 1)
    return None if got is None else float(got[0][0, 0])


def loadtxt_field(field: str) -> float | None:
    """What the Python path reads: numpy's loadtxt, one column."""
    try:
        arr = np.loadtxt([field], delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    return float(arr[0, 0]) if arr.shape == (1, 1) else None


def c_json_value(literal: str) -> float | None:
    got = native.parse_jsonl(f'{{"a": {literal}, "b": 1}}'.encode("ascii"), 0, b"a\0b\0", 2, 1)
    return None if got is None else float(got[0][0, 0])


def json_value(literal: str) -> float | None:
    """What the Python path reads: json, then the records' conversion to float64."""
    try:
        record = json_values.parse_json(f'{{"a": {literal}, "b": 1}}', "line 1")
        return float(validate.record_values([record], ("a", "b"), lambda i: "line 1")[0, 0])
    except UserError:
        return None


NUMBER_CHARS = "0123456789+-.eE"
# Exponents of up to 25 digits: beyond any float, and beyond the C parser's own cap (1e5).
decimal = st.from_regex(r"[+-]?[0-9]{0,25}(\.[0-9]{0,25})?([eE][+-]?[0-9]{1,25})?", fullmatch=True)
json_number = st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,25})?", fullmatch=True)
written = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda v: f"{v:.9g}"),
    st.integers(-(10**30), 10**30).map(str),
)
anything = st.text(alphabet=NUMBER_CHARS + " _xinfa,\"'", max_size=14)


def assert_accepted_as_python_reads_it(text: str, c_parse, python_parse) -> None:
    """If the C parser takes ``text``, the Python path takes it too, to the same float64 bits."""
    ours = c_parse(text)
    if ours is not None:
        theirs = python_parse(text)
        assert theirs is not None and same_bits(ours, theirs), (text, ours, theirs)


@SETTINGS
@given(st.one_of(decimal, written, anything))
def test_every_csv_field_the_c_parser_accepts_loadtxt_reads_to_the_same_float64(field):
    assert_accepted_as_python_reads_it(field, c_csv_field, loadtxt_field)


@SETTINGS
@given(st.one_of(json_number, written, anything))
def test_every_json_number_the_c_parser_accepts_json_reads_to_the_same_float64(literal):
    assert_accepted_as_python_reads_it(literal, c_json_value, json_value)


@pytest.mark.parametrize(
    "field",
    [
        "8.3252",
        "-122.23",
        "41.0",
        "0",
        "-0",
        "+1.5",
        ".5",
        "5.",
        "1e5",
        "2.5E-3",
        "6.984126984126984",
        "123456789012345678901234567890",
        "1e-320",
        "0.000000000000000000000000001",
        "17976931348623157e292",
    ],
)
def test_plain_numbers_take_the_fast_path(field):
    assert c_csv_field(field) is not None
    assert same_bits(c_csv_field(field), loadtxt_field(field))


# Where the C parser changes method: 19 digits kept exactly (a 20th would overflow uint64),
# 2^53 for Clinger's path, exponents beyond its cap, and the longest number it takes itself.
BOUNDARY_FIELDS = [
    "9999999999999999999",
    "99999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709551617",
    "36893488147419103232.5",
    "0.18446744073709551616",
    "9007199254740993",
    "9007199254740992e22",
    "1e18446744073709551617",
    "1e-18446744073709551615",
    "1e100000",
    "1e-100000",
    "4.9e-324",
    "2.4703282292062328e-324",
    "1.7976931348623158e308",
    "1." + "0" * 62,
    "0." + "0" * 61 + "1",
    "4503599627370496.5",
    "4503599627370497.5",
    "18014398509481985.0",
    "1.0000000000000001110223024625156540",
    "0.1000000000000000055511151231257827",
    "9223372036854775807.5",
    "1.8446744073709551615",
    "0.0000000000000000001",
    "9.999999999999999999",
]


@pytest.mark.parametrize("field", BOUNDARY_FIELDS)
def test_numbers_at_the_c_parsers_limits_read_as_loadtxt_reads_them(field):
    assert_accepted_as_python_reads_it(field, c_csv_field, loadtxt_field)
    assert_accepted_as_python_reads_it(field.lstrip("+"), c_json_value, json_value)


def many_fields(strings: list[str]) -> np.ndarray:
    """Each string as a one-column CSV row, parsed by the C parser in one call."""
    got = native.parse_csv("\n".join(strings).encode("ascii"), 0, np.zeros(1, np.intc), len(strings))
    assert got is not None and len(got[0]) == len(strings)
    return got[0][:, 0]


def midpoint_text(low: float, decimals: int) -> str | None:
    """The exact midpoint of low and the next float64, in positional notation, if it has at
    most ``decimals`` decimals and 19 digits."""
    mid = (Fraction(low) + Fraction(float(np.nextafter(low, np.inf)))) / 2
    for q in range(1, decimals + 1):
        scaled = mid * 10**q
        if scaled.denominator == 1:
            digits = str(scaled.numerator)
            return digits[:-q] + "." + digits[-q:] if q < len(digits) <= 19 else None
    return None


def test_17_digit_decimals_and_exact_ties_read_as_python_reads_them():
    """Full-precision values (pandas' and repr's 17 digits) take exact_quotient, not
    strtod_l; midpoints between two float64 round half to even, as float() does."""
    rng = np.random.default_rng(20261201)
    x = 10.0 ** rng.uniform(-19, 6, 100_000) * rng.choice([-1, 1], 100_000)
    ties = [midpoint_text(v, 19) for v in rng.uniform(1.0, 2.0**54, 20_000).tolist()]
    for strings in (list(map(repr, x.tolist())), [t for t in ties if t]):
        assert len(strings) > 10_000
        theirs = np.array(list(map(float, strings)))
        np.testing.assert_array_equal(many_fields(strings).view(np.int64), theirs.view(np.int64))


def test_19_digit_decimals_and_decimals_beside_powers_of_two_read_as_python_reads_them():
    """Where (double)m / 10^q lands an ulp off and exact_quotient must step: 19-digit mantissas
    (m > 2^53 is rounded before the division), and values a fraction of an ulp either side of
    a power of two, whose lower neighbour is half as far as its upper one."""
    rng = np.random.default_rng(7)
    mantissas = rng.integers(10**18, 10**19 - 1, 100_000, dtype=np.uint64).astype(str).tolist()
    decimals = rng.integers(1, 20, 100_000).tolist()
    strings = [m[:-q] + "." + m[-q:] if q < 19 else "0." + m for m, q in zip(mantissas, decimals, strict=True)]
    getcontext().prec = 40
    for k in range(-10, 60):
        power, below = Decimal(2) ** k, Decimal(2) ** (k - 53)
        for fraction in ("0.26", "0.49", "0.5", "0.51", "0.74", "0.99", "1.01", "1.49", "1.51"):
            for x in (power - Decimal(fraction) * below, power + Decimal(fraction) * below * 2):
                text = format(x.normalize(), "f")
                digits = text.replace(".", "").lstrip("0")
                if "." in text and len(digits) <= 19 and len(text.split(".")[1]) <= 19:
                    strings.append(text)
                rounded = f"{x:.{19 - len(str(int(x)))}f}" if x >= 1 else None
                if rounded and len(rounded.split(".")[1]) >= 1:
                    strings.append(rounded)
    theirs = np.array(list(map(float, strings)))
    np.testing.assert_array_equal(many_fields(strings).view(np.int64), theirs.view(np.int64))


def test_the_longest_number_the_c_parser_takes_is_exact_and_a_longer_one_is_left_to_python():
    longest = "1." + "0" * 61 + "1"
    assert len(longest) == 64 and same_bits(c_csv_field(longest), loadtxt_field(longest))
    assert c_csv_field(longest + "1") is None and c_csv_field("1." + "0" * 200) is None


@pytest.mark.parametrize(
    "field", ["", " 1", "1 ", "1_000", "0x10", "nan", "inf", "1e999", "1e", ".", "+", '"1.5"', "1.2.3", "1,2"]
)
def test_anything_unusual_is_left_to_the_python_path(field):
    assert c_csv_field(field) is None


@pytest.mark.parametrize(
    "literal", ["01", ".5", "5.", "+1", "1e999", "NaN", "Infinity", "true", "null", '"1"', "1" * 16, "-"]
)
def test_json_the_c_parser_leaves_to_json(literal):
    assert c_json_value(literal) is None


PLAIN_RECORD = "{" + ", ".join(f'"{f}": {i}.5' for i, f in enumerate(FEATURES)) + "}"
FEATURE_KEYS = "".join(f + "\0" for f in FEATURES).encode("ascii")


def c_json_line(line: str) -> np.ndarray | None:
    got = native.parse_jsonl(line.encode("ascii"), 0, FEATURE_KEYS, len(FEATURES), 1)
    return None if got is None else got[0][0]


def test_a_plain_record_takes_the_fast_path_in_feature_order():
    np.testing.assert_array_equal(c_json_line(PLAIN_RECORD), np.arange(8) + 0.5)
    reversed_record = "{" + ", ".join(f'"{f}": {i}.5' for i, f in reversed(list(enumerate(FEATURES)))) + "}"
    np.testing.assert_array_equal(c_json_line(reversed_record), np.arange(8) + 0.5)


@pytest.mark.parametrize(
    "line",
    [
        PLAIN_RECORD.replace('"HouseAge"', '"MedInc"'),  # a key twice (and one missing)
        PLAIN_RECORD.replace('"HouseAge"', '"Rooms"'),  # an unknown key
        PLAIN_RECORD.replace('"MedInc"', '"\\u004dedInc"'),  # an escape (json reads it as MedInc)
        PLAIN_RECORD.replace(', "Longitude": 7.5', ""),  # a key missing
        PLAIN_RECORD[:-1] + ', "x": 1}',  # a key too many
        PLAIN_RECORD[:-1] + ",}",  # a trailing comma
        PLAIN_RECORD.replace(", ", " ", 1),  # a comma missing
        " " + PLAIN_RECORD,
        PLAIN_RECORD + " ",  # space outside the braces
        PLAIN_RECORD + "}",
        PLAIN_RECORD + " }",
        PLAIN_RECORD + "{}",  # junk after the object
        PLAIN_RECORD.replace("0.5", '"0.5"'),
        PLAIN_RECORD.replace("0.5", "[0.5]"),
        PLAIN_RECORD.replace("0.5", "true"),
        PLAIN_RECORD.replace("0.5", "null"),
        "{}",
        "[]",
        "",
        PLAIN_RECORD[:-1],
    ],
)
def test_any_record_that_is_not_plain_is_left_to_json(line):
    assert c_json_line(line) is None


def test_json_minus_zero_is_the_integer_zero_as_in_python():
    """json reads -0 as the int 0, so +0.0; -0.0 stays negative."""
    assert same_bits(c_json_value("-0"), 0.0) and same_bits(json_value("-0"), 0.0)
    assert same_bits(c_json_value("-0.0"), -0.0) and same_bits(json_value("-0.0"), -0.0)


# ---- Readers: the same rows or the same error, with the library and without ------------


def test_the_long_line_check_counts_characters_exactly():
    text = "\n".join(["abc", "x" * 100, "y" * 101, "z"]).encode("ascii")
    assert native.first_long_line(text, 101) is None
    assert native.first_long_line(text, 100) == 2
    assert native.first_long_line(b"x" * 100, 99) == 0 and native.first_long_line(b"", 0) is None


def test_a_line_exactly_at_the_cap_is_read_and_one_over_it_is_refused(monkeypatch):
    monkeypatch.setattr(lines, "MAX_LINE_CHARS", 100)
    plain = ",".join(["1.5"] * 8)
    at_cap = ",".join(["1." + "1" * 10] * 7 + ["1." + "1" * (100 - 7 * 13 - 2)])
    assert len(at_cap) == 100
    header = ",".join(FEATURES)
    read_at_cap = both_ways(monkeypatch, "\n".join([header, plain, at_cap, plain]) + "\n", "csv", 2, cap=100)
    assert_same(*read_at_cap)
    assert not isinstance(read_at_cap[0], str) and len(read_at_cap[0][0]) == 3
    over = both_ways(monkeypatch, "\n".join([header, plain, at_cap + "1", plain]) + "\n", "csv", 2, cap=100)
    assert over[0] == over[1] == "line 3 is longer than 100 characters; one line holds one house's 8 values"


def read_all(text: str, fmt: str, chunk_rows: int) -> np.ndarray | str:
    """The reader's rows as one array, or its error message."""
    stream = io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8-sig", newline=None)
    try:
        batches = [
            (b.X, [b.row_name(i) for i in range(len(b.X))]) for b in readers.READERS[fmt](stream, FEATURES, chunk_rows)
        ]
    except UserError as err:
        return str(err)
    return np.vstack([X for X, _ in batches]), [name for _, names in batches for name in names]


def both_ways(
    monkeypatch, text: str, fmt: str, chunk_rows: int, block_chars: int | None = None, cap: int | None = None
):
    """The reader's result with the library and without it, at the given block size and line cap."""

    def settings(pure: bool) -> None:
        monkeypatch.undo()
        if block_chars is not None:
            monkeypatch.setattr(lines, "BLOCK_CHARS", block_chars)
        if cap is not None:
            monkeypatch.setattr(lines, "MAX_LINE_CHARS", cap)
        if pure:
            monkeypatch.setattr(native, "LIB", None)

    settings(pure=False)
    with_library = read_all(text, fmt, chunk_rows)
    settings(pure=True)
    without = read_all(text, fmt, chunk_rows)
    monkeypatch.undo()
    return with_library, without


def assert_same(a, b) -> None:
    """The same error, or the same rows bit for bit (-0.0 is not 0.0) and the same line names."""
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        assert a[0].dtype == b[0].dtype == np.float32 and a[0].shape == b[0].shape
        np.testing.assert_array_equal(a[0].view(np.uint32), b[0].view(np.uint32))
        assert a[1] == b[1]


value_text = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr), st.integers(-(10**6), 10**6).map(str)
)
# What one line may turn into: each is valid for one path or both, or an error for both.
LINE_MUTATIONS = ["", "   ", "{}", "1,2", "nan", "1e39", '"1.5"', "0x10", " 2.5", "2.5 ", "-0", "1e999", "01"]


@st.composite
def table_text(draw, fmt: str):
    n = draw(st.integers(1, 25))
    order = draw(st.permutations(range(8)))
    rows = [[draw(value_text) for _ in range(8)] for _ in range(n)]
    if fmt == "csv":
        lines = [",".join(FEATURES[i] for i in order)] + [",".join(row[i] for i in order) for row in rows]
    else:
        spacing = draw(st.sampled_from([(": ", ", "), (":", ","), (" : ", " ,\t")]))
        lines = ["{" + spacing[1].join(f'"{FEATURES[i]}"{spacing[0]}{row[i]}' for i in order) + "}" for row in rows]
    for _ in range(draw(st.integers(0, 2))):  # a mutated line, or a mutated value in one
        at = draw(st.integers(1 if fmt == "csv" else 0, len(lines) - 1))
        bad = draw(st.sampled_from(LINE_MUTATIONS))
        if draw(st.booleans()):
            lines[at] = bad
        else:
            col = draw(st.integers(0, 7))
            value = rows[at - (fmt == "csv")][order[col]]
            lines[at] = lines[at].replace(value, bad, 1)
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


# Chunks of a few rows, and more rows than any block holds; blocks of a few characters (lines
# carried over block ends), and the real size.
chunk_sizes = st.one_of(st.integers(1, 9), st.just(10**9))
block_sizes = st.one_of(st.integers(17, 400), st.just(lines.BLOCK_CHARS))


@SETTINGS
@given(text=table_text("csv"), chunk_rows=chunk_sizes, block_chars=block_sizes)
def test_csv_reads_the_same_with_and_without_the_library(monkeypatch, text, chunk_rows, block_chars):
    assert_same(*both_ways(monkeypatch, text, "csv", chunk_rows, block_chars))


@SETTINGS
@given(text=table_text("jsonl"), chunk_rows=chunk_sizes, block_chars=block_sizes)
def test_json_lines_read_the_same_with_and_without_the_library(monkeypatch, text, chunk_rows, block_chars):
    assert_same(*both_ways(monkeypatch, text, "jsonl", chunk_rows, block_chars))


def test_plain_files_are_read_by_the_library(monkeypatch):
    """The fast path carries a plain file whole: counted by the calls that come back None."""
    rng = np.random.default_rng(3)
    table = rng.normal(size=(1000, 8)).round(4)
    csv_text = ",".join(FEATURES) + "\n" + "\n".join(",".join(map(repr, row)) for row in table.tolist()) + "\n"
    jsonl_text = "".join(json.dumps(dict(zip(FEATURES, row, strict=True))) + "\n" for row in table.tolist())
    for fmt, text, parse in (("csv", csv_text, "parse_csv"), ("jsonl", jsonl_text, "parse_jsonl")):
        calls = []
        real = getattr(native, parse)

        def counted(*args, real=real, calls=calls):
            calls.append(real(*args))
            return calls[-1]

        monkeypatch.setattr(native, parse, counted)
        X, _ = read_all(text, fmt, 64)
        monkeypatch.undo()
        np.testing.assert_array_equal(X, table.astype(np.float32))
        assert calls and all(c is not None for c in calls), fmt


# ---- The CLI: the same bytes ------------------------------------------------------------


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic_artifacts(tmp_path_factory.mktemp("synthetic_artifacts"))


def run_cli(args: list[str], pure: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, native.PURE_ENV: "1" if pure else "0"}
    return subprocess.run(
        [sys.executable, "-m", "housing_runtime", *args], cwd=REPO, env=env, capture_output=True, timeout=120
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_cli_writes_the_same_bytes_with_and_without_the_library(art, tmp_path, fmt):
    rng = np.random.default_rng(11)
    table = np.abs(rng.normal(size=(30_000, 8)) * [2, 12, 2, 0.5, 1000, 3, 2, 2] + [4, 28, 5, 1, 1400, 3, 35, 119])
    # Short decimals (Clinger's exact path) and full 17-digit reprs (strtod_l's), mixed.
    table = np.where(rng.random(table.shape) < 0.7, table.round(4), table)
    src = tmp_path / f"rows.{fmt}"
    if fmt == "csv":
        src.write_text(",".join(FEATURES) + "\n" + "\n".join(",".join(map(repr, r)) for r in table.tolist()) + "\n")
    else:
        src.write_text("".join(json.dumps(dict(zip(FEATURES, r, strict=True))) + "\n" for r in table.tolist()))
    for output in ("csv", "json"):
        args = ["--artifacts", str(art), "--input", str(src), "--format", output, "--chunk-rows", "4096"]
        fast, pure = run_cli(args, pure=False), run_cli(args, pure=True)
        assert fast.returncode == pure.returncode == 0, (fast.stderr, pure.stderr)
        assert fast.stdout == pure.stdout and len(fast.stdout) > 30_000 * 5
