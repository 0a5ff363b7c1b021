"""Opening the input and telling its format: by extension, else by its first bytes (CSV, JSON
Lines or a JSON document), without losing those bytes for the reader."""

from __future__ import annotations

import errno
import io
import json
import re
import sys
from pathlib import Path

from housing_runtime.errors import EnvironmentFault, UserError, shown

# Bytes looked at to tell CSV from JSON Lines from a JSON document.
PEEK_BYTES = 65536
UTF8_BOM = b"\xef\xbb\xbf"


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
            block = block[len(UTF8_BOM) :]
        first = False
        if not head:
            stripped = block.lstrip()
            newlines += line_breaks(block[: len(block) - len(stripped)])
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
