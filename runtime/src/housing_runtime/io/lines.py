"""Text in blocks of whole lines, with each line's number: what the CSV and JSON Lines readers
share. Memory is bounded whatever the input: a line may hold at most MAX_LINE_CHARS characters;
beyond that is an error, not an allocation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO

import numpy as np

from housing_runtime.errors import UserError
from housing_runtime.io import native

# A CSV or JSON Lines line holds one house (8 numbers, about 100 characters): 1 MiB is far more
# than any real line, and bounds what a line without newlines (/dev/zero) can make us hold.
MAX_LINE_CHARS = 1 << 20
# Text is read this many characters at a time, and cut at the last line break in it.
BLOCK_CHARS = 1 << 22


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
            del block  # only the block's lines stay alive while they are parsed: memory
            cut = text.rfind("\n")
            if cut < 0:
                carry = text
                if len(carry) > MAX_LINE_CHARS:
                    raise too_long(line_no)
                continue
            body, carry = text[:cut], text[cut + 1 :]
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


# parse(lines, first_line_no) -> (float64 rows in feature order, row_name), or None if every
# line is blank; raises UserError naming the first bad line.
PythonParse = Callable[[list[str], int], "tuple[np.ndarray, Callable[[int], str]] | None"]


# parse(text, at, max_rows) -> (float64 rows in feature order, next line's offset) or None.
NativeParse = Callable[[bytes, int, int], "tuple[np.ndarray, int] | None"]


def block_rows(
    body: str, first_line_no: int, chunk_rows: int, native_parse: NativeParse | None, python_parse: PythonParse
) -> Iterator[tuple[np.ndarray, Callable[[int], str]]]:
    """A block's rows, chunk_rows lines at a time: by the compiled parser while its chunks are
    plain, then, from the first chunk that is not, by the Python parser, which names faults.
    Chunks start at the same lines either way, so the first fault reported is the same."""
    at, line_no = 0, first_line_no
    if native_parse is not None and native.LIB is not None and body.isascii():
        text = body.encode("ascii")  # ASCII: byte offsets are character offsets
        while at <= len(text):
            parsed = native_parse(text, at, chunk_rows)
            if parsed is None:
                break
            values, at = parsed

            def row_name(row: int, first: int = line_no) -> str:
                return f"line {first + row}"

            yield values, row_name
            line_no += len(values)
        else:
            return
    lines = body[at:].split("\n")
    for start in range(0, len(lines), chunk_rows):
        chunk = lines[start : start + chunk_rows]
        rows = python_parse(chunk, line_no)
        if rows is not None:
            yield rows
        line_no += len(chunk)


def without_blank_lines(
    lines: list[str], first_line_no: int, strict: bool = False
) -> tuple[list[str], Callable[[int], str]]:
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
