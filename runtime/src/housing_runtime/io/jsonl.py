"""JSON Lines, one object of the 8 features per line -> ``Batch``es in model feature order.
Plain chunks take the compiled parser or one loads_json per chunk; anything else is parsed
line by line, which names the exact line and fault."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import IO

import numpy as np

from housing_runtime import validate
from housing_runtime.errors import UserError
from housing_runtime.io import native
from housing_runtime.io.json_values import loads_json, parse_json
from housing_runtime.io.lines import block_rows, line_blocks, without_blank_lines
from housing_runtime.validate import Batch


def fast_json_lines(lines: list[str], n_keys: int) -> list | None:
    """Each line's JSON object, by one loads_json over the chunk as an array, or None.

    Kept only when it gives one object of ``n_keys`` distinct keys per line and the text holds
    exactly ``n_keys`` colons per line: then no key was given twice (json would silently keep
    the last) and no value spans lines (that needs a nested value, which validation refuses).
    On None the caller parses line by line, which names the exact line and fault."""
    # Each line must start with { and end with }: with the counts below, no value spans lines.
    if set(map(operator.itemgetter(0), lines)) != {"{"} or set(map(operator.itemgetter(-1), lines)) != {"}"}:
        return None
    text = "[" + ",".join(lines) + "]"
    try:
        records = loads_json(text)
    except UserError:
        return None
    # Checked by map and set, at C speed: this runs on every row.
    if (
        isinstance(records, list)
        and len(records) == len(lines)
        and set(map(type, records)) == {dict}
        and set(map(len, records)) == {n_keys}
        and text.count(":") == n_keys * len(lines)
    ):
        return records
    return None


def fast_json_values(lines: list[str], features: tuple[str, ...]) -> np.ndarray | None:
    """The chunk's values by the fast path, or None if anything in it is not plainly valid
    (the slow path then names the first fault, with the same words whatever the chunking)."""
    if not lines:
        return np.empty((0, len(features)))
    records = fast_json_lines(lines, len(features))
    if records is None:
        return None
    try:
        return validate.record_values(records, features, lambda i: f"line {i}")
    except UserError:
        return None


def read_jsonl(stream: IO[str], features: tuple[str, ...], chunk_rows: int, lines_before: int = 0) -> Iterator[Batch]:
    keys = "".join(f + "\0" for f in features).encode("ascii") if all(map(str.isascii, features)) else None

    def python_parse(chunk: list[str], first_line_no: int):
        lines, row_name = without_blank_lines(chunk, first_line_no)
        values = fast_json_values(lines, features)
        if values is None:  # whitespace-only lines, or a fault that the line-by-line pass names
            lines, row_name = without_blank_lines(chunk, first_line_no, strict=True)
            values = fast_json_values(lines, features)
            if values is None:
                records = [parse_json(line, row_name(i)) for i, line in enumerate(lines)]
                values = validate.record_values(records, features, row_name)
        return (values, row_name) if lines else None

    def native_parse(text: bytes, at: int, max_rows: int):
        assert keys is not None  # block_rows gets this parser only when there are keys
        return native.parse_jsonl(text, at, keys, len(features), max_rows)

    rows_seen = 0
    for body, first_line_no in line_blocks(stream, lines_before + 1):
        for values, row_name in block_rows(
            body, first_line_no, chunk_rows, native_parse if keys else None, python_parse
        ):

            def where(row: int, col: int, row_name=row_name) -> str:
                return f"{row_name(row)}, field {features[col]!r}"

            rows_seen += len(values)
            yield Batch(validate.to_float32(values, where), row_name)
    if rows_seen == 0:
        raise UserError("input is empty; expected JSON Lines, one object with the 8 features per line")
