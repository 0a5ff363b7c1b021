"""CSV with a header naming the 8 features in any order -> ``Batch``es in model feature order.
Plain numeric chunks go through the compiled parser; anything else through numpy's, which
names the first bad line and column."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from typing import IO

import numpy as np

from housing_runtime import validate
from housing_runtime.errors import UserError, shown
from housing_runtime.io import native
from housing_runtime.io.lines import block_rows, line_blocks, read_line, without_blank_lines
from housing_runtime.validate import Batch


def column_order(header: list[str], features: tuple[str, ...]) -> list[int]:
    """Index in ``header`` of each feature; a one-line error for any column problem."""
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise UserError(f"duplicate column {shown(name)} (column {i}); each feature must appear once")
        seen.add(name)
        if not name:
            raise UserError(f"column {i} has an empty name; expected the features {', '.join(features)}")
        if name not in features:
            raise UserError(f"unknown column {shown(name)} (column {i}); expected exactly {', '.join(features)}")
    missing = [f for f in features if f not in seen]
    if missing:
        raise UserError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"expected exactly {', '.join(features)}"
        )
    return [names.index(f) for f in features]


def parse_header(line: str, line_no: int) -> list[str]:
    try:
        return next(csv.reader([line]))
    except csv.Error as err:
        raise UserError(f"line {line_no}: the CSV header cannot be parsed ({err})") from None


def read_csv(stream: IO[str], features: tuple[str, ...], chunk_rows: int, lines_before: int = 0) -> Iterator[Batch]:
    """CSV with a header naming the features (any order). ``lines_before``: lines already
    consumed from the stream (by format detection), for line numbers."""
    line_no = lines_before + 1
    header_line = read_line(stream, line_no)
    while header_line and not header_line.strip():
        line_no += 1
        header_line = read_line(stream, line_no)
    if not header_line:
        raise UserError("input is empty; expected a CSV header naming the 8 features, then rows")
    header = parse_header(header_line, line_no)
    order = column_order(header, features)
    dest = np.empty(len(order), np.intc)
    dest[order] = np.arange(len(order))  # header column -> feature position

    def python_parse(chunk: list[str], first_line_no: int):
        lines, row_name = without_blank_lines(chunk, first_line_no)
        values = parse_csv_chunk(lines, row_name, len(header))
        if values is None:  # whitespace-only lines (or a real fault, which the strict pass names)
            lines, row_name = without_blank_lines(chunk, first_line_no, strict=True)
            values = parse_csv_chunk(lines, row_name, len(header), locate=True)
            assert values is not None  # with locate, a failure raises instead
        return (values[:, order], row_name) if lines else None

    def native_parse(text: bytes, at: int, max_rows: int):
        return native.parse_csv(text, at, dest, max_rows)

    rows_seen = 0
    for body, first_line_no in line_blocks(stream, line_no + 1):
        for values, row_name in block_rows(body, first_line_no, chunk_rows, native_parse, python_parse):

            def where(row: int, col: int, row_name=row_name) -> str:
                return f"{row_name(row)}, column {shown(header[order[col]].strip())}"

            rows_seen += len(values)
            yield Batch(validate.to_float32(values, where), row_name)
    if rows_seen == 0:
        raise UserError("the CSV has a header but no rows; nothing to predict")


def parse_csv_chunk(
    lines: list[str], row_name: Callable[[int], str], n_cols: int, locate: bool = False
) -> np.ndarray | None:
    """Fast path: numpy's C parser. On a failure, None; or with ``locate``, rescan the lines to
    raise an error naming the exact line."""
    if not lines:
        return np.empty((0, n_cols))
    try:
        try:
            # The lines themselves, unjoined, and no quote handling: a third faster.
            arr = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
        except ValueError:  # perhaps quoted numbers ("1.5"), which CSV writers may emit
            if any(line.count('"') % 2 for line in lines):
                raise  # an unterminated quote: a field may not run on to the next line
            arr = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments=None, quotechar='"')
    except ValueError as err:
        if not locate:
            return None
        locate_csv_error(lines, row_name, n_cols)
        # numpy is stricter than float() (it refuses '1_000', for one): report its own words.
        raise UserError(f"{row_name(0)}-{row_name(len(lines) - 1)}: {shown(str(err))}") from None
    if arr.shape[1] != n_cols:
        if not locate:
            return None
        locate_csv_error(lines, row_name, n_cols)
        raise UserError(f"rows have {arr.shape[1]} fields, expected {n_cols} (one per header column)")
    return arr


def locate_csv_error(lines: list[str], row_name: Callable[[int], str], n_cols: int) -> None:
    """Slow path, only after the fast parser failed: raise a UserError for the first bad line."""
    for row, line in enumerate(lines):
        if line.count('"') % 2:
            raise UserError(f"{row_name(row)}: a quote is not closed on its line; a field may not span lines")
        try:
            fields = next(csv.reader([line]))
        except csv.Error as err:
            raise UserError(f"{row_name(row)}: cannot be parsed as CSV ({err})") from None
        if len(fields) != n_cols:
            raise UserError(f"{row_name(row)} has {len(fields)} fields, expected {n_cols} (ragged row)")
        for col, value in enumerate(fields, start=1):
            if not parses_as_number(value):
                raise UserError(f"{row_name(row)}, column {col}: {shown(value.strip())} is not a number")


def parses_as_number(value: str) -> bool:
    """What the fast path's parser accepts (stricter than float(): no '1_000', no '')."""
    if not value.strip():
        return False
    try:
        np.loadtxt([value], dtype=np.float64, comments=None)
    except ValueError:
        return False
    return True
