"""Input readers: a file or stream -> float64 chunks of shape (k, 8) in model feature order.

Pure functions of their stream, so the tests call them directly. Values are checked by
``pipeline.runtime.validate``; readers only say where each value came from.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from pipeline.errors import UserError
from pipeline.runtime.validate import first_non_finite, records_to_array

INPUT_FORMATS = ("auto", "csv", "jsonl", "json")


def column_order(header: list[str], features: tuple[str, ...]) -> list[int]:
    """Index in ``header`` of each feature; a one-line error for any column problem."""
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise UserError(f"duplicate column {name!r} (column {i}); each feature must appear once")
        seen.add(name)
        if not name:
            raise UserError(f"column {i} has an empty name; expected the features {', '.join(features)}")
        if name not in features:
            raise UserError(f"unknown column {name!r} (column {i}); expected exactly {', '.join(features)}")
    missing = [f for f in features if f not in seen]
    if missing:
        raise UserError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                        f"expected exactly {', '.join(features)}")
    return [names.index(f) for f in features]


def read_csv(stream: IO[str], features: tuple[str, ...], chunk_rows: int) -> Iterator[np.ndarray]:
    header_line = stream.readline()
    line_no = 1  # lines consumed so far, the header's included
    while header_line and not header_line.strip():
        header_line = stream.readline()
        line_no += 1
    if not header_line:
        raise UserError("input is empty; expected a CSV header naming the 8 features, then rows")
    header = next(csv.reader([header_line]))
    order = column_order(header, features)
    rows_seen = 0
    while True:
        lines = list(itertools.islice(stream, chunk_rows))
        if not lines:
            break
        chunk = parse_csv_chunk(lines, len(header), line_no)
        if chunk.shape[0]:
            bad = first_non_finite(chunk)
            if bad is not None:
                row, col = bad
                data_lines = [line_no + 1 + i for i, line in enumerate(lines) if line.strip()]
                raise UserError(f"line {data_lines[row]}, column {header[col].strip()!r}: {chunk[row, col]} "
                                "is not a finite number (NaN and infinity cannot be predicted)")
            rows_seen += chunk.shape[0]
            yield chunk[:, order]
        line_no += len(lines)
    if rows_seen == 0:
        raise UserError("the CSV has a header but no rows; nothing to predict")


def parse_csv_chunk(lines: list[str], n_cols: int, first_line_no: int) -> np.ndarray:
    """Fast path: numpy's C parser. On any error, rescan the chunk to name the exact line."""
    text = "".join(lines)
    if not text.strip():
        return np.empty((0, n_cols))
    try:
        arr = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2,
                         comments=None, quotechar='"')
    except ValueError as err:
        locate_csv_error(lines, n_cols, first_line_no)
        # numpy is stricter than float() (it refuses '1_000', for one): report its own words.
        raise UserError(f"lines {first_line_no + 1}-{first_line_no + len(lines)}: {err}") from None
    if arr.shape[1] != n_cols:
        locate_csv_error(lines, n_cols, first_line_no)
        raise UserError(f"rows have {arr.shape[1]} fields, expected {n_cols} (one per header column)")
    return arr


def locate_csv_error(lines: list[str], n_cols: int, first_line_no: int) -> None:
    """Slow path, only after the fast parser failed: raise a UserError for the first bad line."""
    for offset, fields in enumerate(csv.reader(lines)):
        line_no = first_line_no + 1 + offset
        if not fields or all(not f.strip() for f in fields) and len(fields) <= 1:
            continue  # blank line
        if len(fields) != n_cols:
            raise UserError(f"line {line_no} has {len(fields)} fields, expected {n_cols} (ragged row)")
        for col, value in enumerate(fields, start=1):
            if not parses_as_number(value):
                raise UserError(f"line {line_no}, column {col}: {value.strip()[:40]!r} is not a number")


def parses_as_number(value: str) -> bool:
    """What the fast path's parser accepts (stricter than float(): no '1_000', no '')."""
    if not value.strip():
        return False
    try:
        np.loadtxt([value], dtype=np.float64, comments=None)
    except ValueError:
        return False
    return True


def read_jsonl(stream: IO[str], features: tuple[str, ...], chunk_rows: int) -> Iterator[np.ndarray]:
    line_no = 0
    rows_seen = 0
    while True:
        lines = list(itertools.islice(stream, chunk_rows))
        if not lines:
            break
        records, numbers = [], []
        for offset, line in enumerate(lines, start=line_no + 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"line {offset}: bad JSON ({err.msg} at column {err.colno})") from None
            numbers.append(offset)
        line_no += len(lines)
        if records:
            chunk = records_to_array(records, features, lambda i, numbers=numbers: f"line {numbers[i]}")
            rows_seen += chunk.shape[0]
            yield chunk
    if rows_seen == 0:
        raise UserError("input is empty; expected JSON Lines, one object with the 8 features per line")


def read_json_document(stream: IO[str], features: tuple[str, ...], chunk_rows: int) -> Iterator[np.ndarray]:
    """A whole JSON document (loaded at once): a list of records or {"instances": [...]}."""
    text = stream.read()
    if not text.strip():
        raise UserError("input is empty; expected a JSON list of records or {\"instances\": [...]}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"bad JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if isinstance(doc, dict) and set(doc) == {"instances"}:
        doc = doc["instances"]
    if not isinstance(doc, list):
        keys = f" with keys {', '.join(list(doc)[:5])}" if isinstance(doc, dict) else ""
        raise UserError(f"expected a JSON list of records or {{\"instances\": [...]}}, got {type(doc).__name__}{keys}")
    if not doc:
        raise UserError("the JSON input has no records; nothing to predict")
    for start in range(0, len(doc), chunk_rows):
        yield records_to_array(doc[start:start + chunk_rows], features,
                               lambda i, start=start: f"record {start + i + 1}")


def detect_format(path: str, stream: io.BufferedReader) -> str:
    """By extension; for stdin or an unknown extension, by the first bytes."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    head = stream.peek(65536)[:65536].lstrip()
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        first_line = head.split(b"\n", 1)[0]
        try:
            obj = json.loads(first_line)
        except ValueError:
            return "json"  # a pretty-printed document spans several lines
        return "json" if isinstance(obj, dict) and "instances" in obj else "jsonl"
    return "csv"


def open_input(path: str) -> io.BufferedReader:
    if path == "-":
        stdin = sys.stdin.buffer
        return stdin if isinstance(stdin, io.BufferedReader) else io.BufferedReader(stdin)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"input file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"input {path} is a directory; pass a CSV or JSON file, or - for stdin") from None
    except PermissionError:
        raise UserError(f"input file {path} is not readable (permission denied)") from None


READERS = {"csv": read_csv, "jsonl": read_jsonl, "json": read_json_document}
