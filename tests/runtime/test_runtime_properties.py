"""Property-based tests of the runtime's readers and validation (Hypothesis generates inputs):

- a valid CSV or JSON Lines input, in any column order, with any line endings, BOM and blank
  lines, predicts exactly what onnxruntime predicts on the same float32 rows;
- the same input with one value corrupted is refused with one line naming the corrupted line.

Each property holds with the compiled fast paths (runtime/src/housing_runtime/io/native.c) and without them.
In process (the readers are pure functions of a stream), so hundreds of examples take seconds;
tests/runtime/test_runtime_faults.py runs the CLI itself for the exit code and the absence of output.
"""

from __future__ import annotations

import io
import json

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import write_synthetic_artifacts
from housing_runtime.errors import UserError
from housing_runtime.io import native, readers
from housing_runtime.model import Predictor
from pipeline import config

FEATURES = config.FEATURE_NAMES
# Examples per property: enough to meet every branch of the readers many times, in seconds.
EXAMPLES = 150
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values a real file holds: finite float32 numbers, written as Python writes floats or ints.
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(float),
    st.integers(min_value=-(10**6), max_value=10**6),
)
rows = st.lists(st.lists(values, min_size=8, max_size=8), min_size=1, max_size=30)
endings = st.sampled_from(["\n", "\r\n", "\r"])


@pytest.fixture(autouse=True, params=["native", "python"])
def implementation(request, monkeypatch):
    """Every property, with the compiled parsers and with the pure-Python ones."""
    if request.param == "python":
        monkeypatch.setattr(native, "LIB", None)
    else:
        assert native.LIB is not None, "the compiled fast paths are not built; reinstall the runtime (make all)"
    return request.param


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    art = write_synthetic_artifacts(tmp_path_factory.mktemp("synthetic_artifacts"))
    return Predictor(art / config.ONNX_NAMES["uint8"])


def onnxruntime_predictions(predictor, X: np.ndarray) -> np.ndarray:
    """A default session on the same float32 rows: what the runtime must reproduce."""
    sess = ort.InferenceSession(str(predictor.path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})[0].reshape(-1)


def read(text: str, fmt: str) -> np.ndarray:
    """Text as the CLI reads it (universal newlines), through the reader, as one array."""
    stream = io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8-sig", newline=None)
    batches = list(readers.READERS[fmt](stream, FEATURES, 7))
    return np.vstack([b.X for b in batches])


def csv_text(table: list[list], order: list[int], ending: str, blank_every: int) -> str:
    header = ",".join(FEATURES[i] for i in order)
    lines = [header] + [",".join(repr(row[i]) for i in order) for row in table]
    if blank_every:
        lines = [x for i, line in enumerate(lines) for x in ([line, ""] if i % blank_every == 0 and i else [line])]
    return ending.join(lines) + ending


def jsonl_text(table: list[list], order: list[int], ending: str) -> str:
    return "".join(json.dumps({FEATURES[i]: row[i] for i in order}) + ending for row in table)


@SETTINGS
@given(table=rows, order=st.permutations(range(8)), ending=endings, blank_every=st.integers(0, 4), bom=st.booleans())
def test_a_valid_csv_predicts_what_onnxruntime_predicts(predictor, table, order, ending, blank_every, bom):
    text = ("\ufeff" if bom else "") + csv_text(table, list(order), ending, blank_every)
    X = read(text, "csv")
    expected = np.array(table, dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(predictor.predict(X), onnxruntime_predictions(predictor, expected))


@SETTINGS
@given(table=rows, order=st.permutations(range(8)), ending=endings)
def test_valid_json_lines_predict_what_onnxruntime_predicts(predictor, table, order, ending):
    X = read(jsonl_text(table, list(order), ending), "jsonl")
    expected = np.array(table, dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(X, expected)
    np.testing.assert_array_equal(predictor.predict(X), onnxruntime_predictions(predictor, expected))


# Corruptions of one value, as text: each makes the row unpredictable.
BAD_VALUES = ["", "abc", "nan", "inf", "-Infinity", "1e39", "-3.5e38", "1_000", "0x10", "1.2.3", "true"]


@SETTINGS
@given(
    table=rows,
    order=st.permutations(range(8)),
    data=st.data(),
    bad=st.sampled_from(BAD_VALUES),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
def test_one_corrupted_value_is_refused_naming_its_line(table, order, data, bad, fmt):
    row = data.draw(st.integers(0, len(table) - 1))
    col = data.draw(st.integers(0, 7))
    order = list(order)
    if fmt == "csv":
        lines = csv_text(table, order, "\n", 0).splitlines()
        fields = lines[row + 1].split(",")
        fields[col] = bad
        lines[row + 1] = ",".join(fields)
        text, line_no = "\n".join(lines) + "\n", row + 2
    else:
        lines = jsonl_text(table, order, "\n").splitlines()
        record = json.loads(lines[row])
        # As JSON: a string where a number belongs, or the number literal itself when JSON has one.
        literal = bad if bad in ("true", "1e39", "-3.5e38", "-Infinity") else json.dumps(bad)
        record[FEATURES[order[col]]] = "@"
        lines[row] = json.dumps(record).replace('"@"', literal)
        text, line_no = "\n".join(lines) + "\n", row + 1
    with pytest.raises(UserError) as caught:
        read(text, fmt)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert f"line {line_no}" in message, message


@SETTINGS
@given(table=rows, order=st.permutations(range(8)), data=st.data())
def test_a_duplicate_or_missing_key_is_refused_naming_its_line(table, order, data):
    row = data.draw(st.integers(0, len(table) - 1))
    lines = jsonl_text(table, list(order), "\n").splitlines()
    victim = data.draw(st.sampled_from(FEATURES))
    if data.draw(st.booleans()):
        lines[row] = lines[row][:-1] + f', "{victim}": 1.5}}'  # a key given twice
        match = "duplicate key"
    else:
        record = json.loads(lines[row])
        del record[victim]
        lines[row] = json.dumps(record)
        match = f"missing {victim}"
    with pytest.raises(UserError, match=match) as caught:
        read("\n".join(lines) + "\n", "jsonl")
    assert f"line {row + 1}" in str(caught.value)
