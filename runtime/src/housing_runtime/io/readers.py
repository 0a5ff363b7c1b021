"""The input formats and their readers: a file or stream -> ``validate.Batch``es of float32 rows
in model feature order. Each format is a module of its own (``csv_rows``, ``jsonl``,
``json_document``; ``detect`` opens the input and tells them apart). Readers turn text into
numbers and say where each came from; ``housing_runtime.validate`` decides what is acceptable."""

from __future__ import annotations

from housing_runtime.io.csv_rows import read_csv
from housing_runtime.io.json_document import read_json_document
from housing_runtime.io.jsonl import read_jsonl

INPUT_FORMATS = ("auto", "csv", "jsonl", "json")
READERS = {"csv": read_csv, "jsonl": read_jsonl, "json": read_json_document}
