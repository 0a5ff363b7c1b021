"""Input readers: a file or stream -> ``validate.Batch``es of float32 rows in model feature order.

Pure functions of their stream, so the tests call them directly. Readers turn text into numbers
and say where each came from; ``pipeline.runtime.validate`` decides what is acceptable.
Memory is bounded whatever the input: a line may hold at most MAX_LINE_CHARS characters and a
JSON document at most MAX_DOCUMENT_CHARS; beyond that is an error, not an allocation.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import operator
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from pipeline.errors import EnvironmentFault, UserError, shown, shown_json
from pipeline.runtime import native, validate
from pipeline.runtime.validate import Batch

INPUT_FORMATS = ("auto", "csv", "jsonl", "json")
# A CSV or JSON Lines line holds one house (8 numbers, about 100 characters): 1 MiB is far more
# than any real line, and bounds what a line without newlines (/dev/zero) can make us hold.
MAX_LINE_CHARS = 1 << 20
# A JSON document is parsed whole, at about 10x its size in memory: 16 MiB (about 100,000
# records) keeps that within a few times the streaming formats' peak. JSON Lines has no limit.
MAX_DOCUMENT_CHARS = 16 << 20
# Text is read this many characters at a time, and cut at the last line break in it.
BLOCK_CHARS = 1 << 22
# A JSON document may hold at most one object or list per this many characters (see
# read_json_document): it bounds what parsing it whole can allocate.
CHARS_PER_CONTAINER = 40
# Bytes looked at to tell CSV from JSON Lines from a JSON document.
PEEK_BYTES = 65536
UTF8_BOM = b"\xef\xbb\xbf"


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
        raise UserError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                        f"expected exactly {', '.join(features)}")
    return [names.index(f) for f in features]


def read_line(stream: IO[str], line_no: int) -> str:
    """The next line (with its newline; "" at the end), refusing one over MAX_LINE_CHARS."""
    line = stream.readline(MAX_LINE_CHARS + 2)
    if len(line.rstrip("\n")) > MAX_LINE_CHARS:
        raise too_long(line_no)
    return line


def too_long(line_no: int) -> UserError:
    return UserError(f"line {line_no} is longer than {MAX_LINE_CHARS} characters; one line holds one house's 8 values")


def line_blocks(stream: IO[str], first_line_no: int) -> Iterator[tuple[str, int]]:
    """The remaining text in blocks of whole lines, '\n'-separated without the last one's,
    each with its first line's number.

    Text is read BLOCK_CHARS at a time and cut at its last line break (one C call per block,
    not one per line); a line over MAX_LINE_CHARS is refused, wherever it falls."""
    carry, line_no, at_end = "", first_line_no, False
    while not at_end:
        block = stream.read(BLOCK_CHARS)
        at_end = not block
        if block:
            text = carry + block
            del block   # only the block's lines stay alive while they are parsed: memory
            cut = text.rfind("\n")
            if cut < 0:
                carry = text
                if len(carry) > MAX_LINE_CHARS:
                    raise too_long(line_no)
                continue
            body, carry = text[:cut], text[cut + 1:]
            del text
            n_lines = body.count("\n") + 1
            if len(carry) > MAX_LINE_CHARS:
                raise too_long(line_no + n_lines)
        elif carry:
            body, carry, n_lines = carry, "", 1
        else:
            return
        if len(body) > MAX_LINE_CHARS:
            long_line = first_long_line(body)
            if long_line is not None:
                raise too_long(line_no + long_line)
        yield body, line_no
        del body
        line_no += n_lines


def first_long_line(body: str) -> int | None:
    """The index of the first line of ``body`` over MAX_LINE_CHARS, if any."""
    if native.LIB is not None and body.isascii():
        return native.first_long_line(body.encode("ascii"), MAX_LINE_CHARS)
    return next((i for i, line in enumerate(body.split("\n")) if len(line) > MAX_LINE_CHARS), None)


# parse(text, at, max_rows) -> (float64 rows in feature order, next line's offset) or None.
NativeParse = Callable[[bytes, int, int], "tuple[np.ndarray, int] | None"]
# parse(lines, first_line_no) -> (float64 rows in feature order, row_name), or None if every
# line is blank; raises UserError naming the first bad line.
PythonParse = Callable[[list[str], int], "tuple[np.ndarray, Callable[[int], str]] | None"]


def block_rows(body: str, first_line_no: int, chunk_rows: int, native_parse: NativeParse | None,
               python_parse: PythonParse) -> Iterator[tuple[np.ndarray, Callable[[int], str]]]:
    """A block's rows, chunk_rows lines at a time: by the compiled parser while its chunks are
    plain, then, from the first chunk that is not, by the Python parser, which names faults.
    Chunks start at the same lines either way, so the first fault reported is the same."""
    at, line_no = 0, first_line_no
    if native_parse is not None and native.LIB is not None and body.isascii():
        text = body.encode("ascii")   # ASCII: byte offsets are character offsets
        while at <= len(text):
            parsed = native_parse(text, at, chunk_rows)
            if parsed is None:
                break
            values, at = parsed
            yield values, (lambda row, first=line_no: f"line {first + row}")
            line_no += len(values)
        else:
            return
    lines = body[at:].split("\n")
    for start in range(0, len(lines), chunk_rows):
        chunk = lines[start:start + chunk_rows]
        parsed = python_parse(chunk, line_no)
        if parsed is not None:
            yield parsed
        line_no += len(chunk)


def without_blank_lines(lines: list[str], first_line_no: int,
                        strict: bool = False) -> tuple[list[str], Callable[[int], str]]:
    """The lines that hold something, and how to name each by its line number in the input.

    Empty lines are found by one C-level scan; whitespace-only ones (rare) need a strip of
    every line, done only when ``strict`` (after a fast parse failed)."""
    if strict:
        kept = [i for i, line in enumerate(lines) if line.strip()]
    elif "" in lines:
        kept = [i for i, line in enumerate(lines) if line]
    else:
        return lines, lambda row: f"line {first_line_no + row}"
    return [lines[i] for i in kept], lambda row: f"line {first_line_no + kept[row]}"


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
    dest[order] = np.arange(len(order))      # header column -> feature position

    def python_parse(chunk: list[str], first_line_no: int):
        lines, row_name = without_blank_lines(chunk, first_line_no)
        values = parse_csv_chunk(lines, row_name, len(header))
        if values is None:  # whitespace-only lines (or a real fault, which the strict pass names)
            lines, row_name = without_blank_lines(chunk, first_line_no, strict=True)
            values = parse_csv_chunk(lines, row_name, len(header), locate=True)
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


def parse_csv_chunk(lines: list[str], row_name: Callable[[int], str], n_cols: int,
                    locate: bool = False) -> np.ndarray | None:
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


def object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json's object hook: a key given twice is ambiguous (json would keep the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise UserError(f"duplicate key {shown(key)} in a JSON object; each feature must appear once")
            seen.add(key)
    return obj


def parse_json(text: str, where: str):
    """json.loads with duplicate keys refused and every failure one clear line."""
    try:
        return json.loads(text, object_pairs_hook=object_without_duplicates)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: bad JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply; expected objects of 8 numbers") from None
    except ValueError as err:  # an integer with more digits than Python converts (sys.int_info)
        raise UserError(f"{where}: bad JSON ({shown(str(err))})") from None


def fast_json_lines(lines: list[str], n_keys: int) -> list | None:
    """Each line's JSON object, by one json.loads over the chunk as an array, or None.

    Kept only when it gives one object of ``n_keys`` distinct keys per line and the text holds
    exactly ``n_keys`` colons per line: then no key was given twice (json would silently keep
    the last) and no value spans lines (that needs a nested value, which validation refuses).
    On None the caller parses line by line, which names the exact line and fault."""
    # Each line must start with { and end with }: with the counts below, no value spans lines.
    if set(map(operator.itemgetter(0), lines)) != {"{"} or set(map(operator.itemgetter(-1), lines)) != {"}"}:
        return None
    text = "[" + ",".join(lines) + "]"
    try:
        records = json.loads(text)
    except (ValueError, RecursionError):
        return None
    # Checked by map and set, at C speed: this runs on every row.
    if (isinstance(records, list) and len(records) == len(lines) and set(map(type, records)) == {dict}
            and set(map(len, records)) == {n_keys} and text.count(":") == n_keys * len(lines)):
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
        return native.parse_jsonl(text, at, keys, len(features), max_rows)

    rows_seen = 0
    for body, first_line_no in line_blocks(stream, lines_before + 1):
        for values, row_name in block_rows(body, first_line_no, chunk_rows, native_parse if keys else None,
                                           python_parse):
            def where(row: int, col: int, row_name=row_name) -> str:
                return f"{row_name(row)}, field {features[col]!r}"
            rows_seen += len(values)
            yield Batch(validate.to_float32(values, where), row_name)
    if rows_seen == 0:
        raise UserError("input is empty; expected JSON Lines, one object with the 8 features per line")


def read_json_document(stream: IO[str], features: tuple[str, ...], chunk_rows: int,
                       lines_before: int = 0) -> Iterator[Batch]:
    """A whole JSON document (loaded at once): a list of records or {"instances": [...]}."""
    text = stream.read(MAX_DOCUMENT_CHARS + 1)
    if len(text) > MAX_DOCUMENT_CHARS:
        raise UserError(f"the JSON document is larger than {MAX_DOCUMENT_CHARS >> 20} MiB; "
                        "send JSON Lines (one object per line), which streams")
    if not text.strip():
        raise UserError("input is empty; expected a JSON list of records or {\"instances\": [...]}")
    # Parsed whole, a document costs memory per object, not per character: "[{},{},...]" is
    # 3 characters an object. A record of 8 numbers takes 60 or more, so allow one per 40.
    containers = text.count("{") + text.count("[")
    if containers > len(text) // CHARS_PER_CONTAINER + 2:
        raise UserError(f"the JSON document holds {containers} objects or lists in {len(text)} characters, "
                        "too many for records of 8 numbers; send one record per 8 numbers, or JSON Lines")
    doc = parse_json(text, "the JSON document")
    if isinstance(doc, dict) and set(doc) == {"instances"}:
        doc = doc["instances"]
    if not isinstance(doc, list):
        keys = f" with keys {', '.join(shown_json(k) for k in list(doc)[:5])}" if isinstance(doc, dict) else ""
        raise UserError(f"expected a JSON list of records or {{\"instances\": [...]}}, got {type(doc).__name__}{keys}")
    if not doc:
        raise UserError("the JSON input has no records; nothing to predict")
    for start in range(0, len(doc), chunk_rows):
        records = doc[start:start + chunk_rows]
        values = validate.record_values(records, features, lambda i, start=start: f"record {start + i + 1}")

        def where(row: int, col: int, start=start) -> str:
            return f"record {start + row + 1}, field {features[col]!r}"
        yield Batch(validate.to_float32(values, where), lambda row, start=start: f"record {start + row + 1}")


class _Replay(io.RawIOBase):
    """A stream that gives ``head`` first, then the rest of ``rest``: what format detection
    read is read again by the reader."""

    def __init__(self, head: bytes, rest: io.BufferedReader):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        return self.rest.readinto(buffer)


def line_breaks(blank: bytes) -> int:
    """Lines ended in a run of whitespace: \n, \r\n and a lone \r each end one."""
    return blank.count(b"\n") + blank.replace(b"\r\n", b"").count(b"\r")


def sniff(stream: io.BufferedReader) -> tuple[bytes, int, io.BufferedReader]:
    """Skip a UTF-8 BOM and leading whitespace, however long (it is dropped, not kept); return
    what follows, as far as detection needs it, the line breaks skipped, and a stream from that
    point. Reads only what has arrived (read1), so a slow pipe is not waited on needlessly."""
    newlines, head, first = 0, b"", True
    while True:
        block = stream.read1(PEEK_BYTES)
        if not block:
            break
        if first and block.startswith(UTF8_BOM):
            block = block[len(UTF8_BOM):]
        first = False
        if not head:
            stripped = block.lstrip()
            newlines += line_breaks(block[:len(block) - len(stripped)])
            block = stripped
        head += block
        # "[" or CSV is known from the first byte; "{" needs its first line (see looks_like_a_document).
        if head and (not head.startswith(b"{") or b"\n" in head or len(head) >= PEEK_BYTES):
            break
    return head, newlines, io.BufferedReader(_Replay(head, stream))


# A document {"instances": [...]} has that one key, so it starts with it, however it is laid out.
INSTANCES_DOCUMENT = re.compile(rb'\{\s*"instances"\s*:')


def detect_format(path: str, stream: io.BufferedReader) -> tuple[str, int, io.BufferedReader]:
    """By extension; for stdin or an unknown extension, by the first bytes after any BOM and
    leading whitespace. Returns the format, the lines skipped and the stream to read."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    by_suffix = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
    if suffix in by_suffix:
        return by_suffix[suffix], 0, stream
    head, newlines, stream = sniff(stream)
    if head.startswith(b"["):
        return "json", newlines, stream
    if head.startswith(b"{"):
        return ("json" if looks_like_a_document(head) else "jsonl"), newlines, stream
    return "csv", newlines, stream


def looks_like_a_document(head: bytes) -> bool:
    """For input starting with "{": a JSON document ({"instances": [...]}, or a pretty-printed
    object, which is refused with the document's message) rather than JSON Lines."""
    if INSTANCES_DOCUMENT.match(head):
        return True
    line, newline, _ = head.partition(b"\n")
    if not newline:
        return False  # a first line longer than the window: one record per line
    try:
        json.loads(line)
    except ValueError:
        return True  # the first line is not a whole object: a document spanning lines
    return False


class _Guarded(io.RawIOBase):
    """The input's bytes, with a read error turned into one line: the machine's (EIO) exit 1,
    anything else (a descriptor not open for reading, say) exit 2."""

    def __init__(self, raw):
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self.raw.readinto(buffer)
        except OSError as err:
            fault = EnvironmentFault if err.errno in (errno.EIO, errno.ENXIO) else UserError
            raise fault(f"cannot read the input: {err.strerror or type(err).__name__}") from None


def open_input(path: str) -> io.BufferedReader:
    if path == "-":
        if sys.stdin is None:
            raise UserError("stdin is closed; pass --input PATH, or give the rows on stdin")
        # The unbuffered descriptor: a buffered one would wait to fill its buffer from a slow pipe.
        return io.BufferedReader(_Guarded(getattr(sys.stdin.buffer, "raw", sys.stdin.buffer)))
    try:
        return io.BufferedReader(_Guarded(open(path, "rb", buffering=0)))
    except FileNotFoundError:
        raise UserError(f"input file {shown(path)} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"input {shown(path)} is a directory; pass a CSV or JSON file, or - for stdin") from None
    except PermissionError:
        raise UserError(f"input file {shown(path)} is not readable (permission denied)") from None
    except OSError as err:
        raise UserError(f"input file {shown(path)} cannot be opened ({err.strerror})") from None


READERS = {"csv": read_csv, "jsonl": read_jsonl, "json": read_json_document}
