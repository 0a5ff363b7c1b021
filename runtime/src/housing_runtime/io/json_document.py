"""A whole JSON document (a list of records or {"instances": [...]}) -> ``Batch``es. It is
parsed whole, so its size is bounded (MAX_DOCUMENT_CHARS) and so is what parsing can allocate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from housing_runtime import validate
from housing_runtime.errors import UserError, shown_json
from housing_runtime.io.json_values import parse_json
from housing_runtime.validate import Batch

# A JSON document is parsed whole, at about 10x its size in memory: 16 MiB (about 100,000
# records) keeps that within a few times the streaming formats' peak. JSON Lines has no limit.
MAX_DOCUMENT_CHARS = 16 << 20
# A JSON document may hold at most one object or list per this many characters (see
# read_json_document): it bounds what parsing it whole can allocate.
CHARS_PER_CONTAINER = 40


def read_json_document(
    stream: IO[str], features: tuple[str, ...], chunk_rows: int, lines_before: int = 0
) -> Iterator[Batch]:
    """A whole JSON document (loaded at once): a list of records or {"instances": [...]}."""
    text = stream.read(MAX_DOCUMENT_CHARS + 1)
    if len(text) > MAX_DOCUMENT_CHARS:
        raise UserError(
            f"the JSON document is larger than {MAX_DOCUMENT_CHARS >> 20} MiB; "
            "send JSON Lines (one object per line), which streams"
        )
    if not text.strip():
        raise UserError('input is empty; expected a JSON list of records or {"instances": [...]}')
    # Parsed whole, a document costs memory per object, not per character: "[{},{},...]" is
    # 3 characters an object. A record of 8 numbers takes 60 or more, so allow one per 40.
    containers = text.count("{") + text.count("[")
    if containers > len(text) // CHARS_PER_CONTAINER + 2:
        raise UserError(
            f"the JSON document holds {containers} objects or lists in {len(text)} characters, "
            "too many for records of 8 numbers; send one record per 8 numbers, or JSON Lines"
        )
    doc = parse_json(text, "the JSON document")
    if isinstance(doc, dict) and set(doc) == {"instances"}:
        doc = doc["instances"]
    if not isinstance(doc, list):
        keys = f" with keys {', '.join(shown_json(k) for k in list(doc)[:5])}" if isinstance(doc, dict) else ""
        raise UserError(f'expected a JSON list of records or {{"instances": [...]}}, got {type(doc).__name__}{keys}')
    if not doc:
        raise UserError("the JSON input has no records; nothing to predict")
    for start in range(0, len(doc), chunk_rows):
        records = doc[start : start + chunk_rows]

        def record_name(row: int, start: int = start) -> str:
            return f"record {start + row + 1}"

        values = validate.record_values(records, features, record_name)

        def where(row: int, col: int, start: int = start) -> str:
            return f"record {start + row + 1}, field {features[col]!r}"

        yield Batch(validate.to_float32(values, where), record_name)
