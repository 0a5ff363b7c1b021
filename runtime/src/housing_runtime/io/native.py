"""The compiled fast paths (``native.c``, compiled into the wheel as ``_native``), through ctypes.

Each function here does the plain, common case in C or answers None, and the caller then
takes its pure-Python path for that chunk, which accepts or refuses the input with its own
words. So the output is the same bytes either way; the library only makes it faster (about
2x at 1M rows, `make bench`). Without the library (not built, or HOUSING_RUNTIME_PURE=1,
which the tests use to compare the two), every chunk takes the Python path.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

import numpy as np

from housing_runtime.io import floattext


def library_path() -> Path | None:
    """The compiled library beside this file, as the build backend names it (e.g.
    ``_native.abi3.so``), or None. It has no Python entry point: ctypes loads it, never import."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(__file__).with_name("_native" + suffix)
        if path.is_file():
            return path
    return None


LIBRARY = library_path()
# Set to 1 to use the pure-Python paths even where the library is built.
PURE_ENV = "HOUSING_RUNTIME_PURE"
# Predictions formatted per C call: bounds the buffers (about 40 bytes a value).
FORMAT_CHUNK = 1 << 16

_p, _i, _ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
_pll = ctypes.POINTER(ctypes.c_longlong)
SIGNATURES = {
    "native_init": ([], _i),
    "native_first_long_line": ([ctypes.c_char_p, _ll, _ll], _ll),
    "native_parse_csv": ([ctypes.c_char_p, _ll, _pll, _i, _p, _ll, _p], _ll),
    "native_parse_jsonl": ([ctypes.c_char_p, _ll, _pll, _i, ctypes.c_char_p, _ll, _p], _ll),
    "native_max_text": ([], _ll),
    "native_format_float32": ([_p, _ll, ctypes.c_char_p, _i, _p, _p, _pll], _ll),
}


def load() -> ctypes.CDLL | None:
    if os.environ.get(PURE_ENV) == "1" or LIBRARY is None:
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY))
        for name, (args, result) in SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = args, result
    except (OSError, AttributeError):  # not built, or built from another version of native.c
        return None
    return lib if lib.native_init() else None


LIB = load()


def first_long_line(text: bytes, max_chars: int) -> int | None:
    """The index of the first line of ``text`` ('\\n'-separated) longer than ``max_chars``."""
    assert LIB is not None  # callers take this path only when the library is loaded
    line = LIB.native_first_long_line(text, len(text), max_chars)
    return None if line < 0 else line


def max_rows_in(text: bytes, at: int, n_values: int, max_rows: int) -> int:
    """A bound on the rows left in text[at:]: a row of n numbers takes at least 2n - 1
    characters and its line break (keeps a huge --chunk-rows from allocating for nothing)."""
    return max(1, min(max_rows, (len(text) - at + 1) // (2 * n_values) + 1))


def parse_csv(text: bytes, at: int, dest: np.ndarray, max_rows: int) -> tuple[np.ndarray, int] | None:
    """Up to ``max_rows`` lines of plain numbers from offset ``at``, column c to feature
    dest[c]: (float64 rows in feature order, the next line's offset, past len(text) at the
    end), or None if any of those lines is not plain (the Python path then reads them)."""
    assert LIB is not None
    n = dest.size
    out = np.empty((max_rows_in(text, at, n, max_rows), n))
    offset = ctypes.c_longlong(at)
    rows = LIB.native_parse_csv(
        text, len(text), ctypes.byref(offset), n, dest.ctypes.data, out.shape[0], out.ctypes.data
    )
    return None if rows < 0 else (out[:rows], offset.value)


def parse_jsonl(text: bytes, at: int, keys: bytes, n_keys: int, max_rows: int) -> tuple[np.ndarray, int] | None:
    """As parse_csv, for JSON Lines objects holding each of the '\\0'-ended ``keys`` once."""
    assert LIB is not None
    out = np.empty((max_rows_in(text, at, n_keys, max_rows), n_keys))
    offset = ctypes.c_longlong(at)
    rows = LIB.native_parse_jsonl(text, len(text), ctypes.byref(offset), n_keys, keys, out.shape[0], out.ctypes.data)
    return None if rows < 0 else (out[:rows], offset.value)


def join_float32(values: np.ndarray, separator: str) -> str:
    """Each value as numpy's str of it, each followed by ``separator``: the same text as
    ``floattext.join_float32`` (and numpy's ``astype(str)``). Values the C code leaves to numpy
    (outside [1e-4, 1e6), exact ties) are formatted by numpy and put in their place."""
    x = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if LIB is None:
        return floattext.join_float32(x, separator)
    sep = separator.encode("ascii")
    return b"".join(format_chunk(x[i : i + FORMAT_CHUNK], sep) for i in range(0, x.size, FORMAT_CHUNK)).decode("ascii")


def format_chunk(x: np.ndarray, sep: bytes) -> bytes:
    assert LIB is not None
    out = np.empty(x.size * (LIB.native_max_text() + len(sep)), np.uint8)
    deferred = np.empty(2 * x.size, np.int64)
    n_deferred = ctypes.c_longlong()
    size = LIB.native_format_float32(
        x.ctypes.data, x.size, sep, len(sep), out.ctypes.data, deferred.ctypes.data, ctypes.byref(n_deferred)
    )
    text = out[:size].tobytes()
    if not n_deferred.value:
        return text
    index, offset = deferred[: 2 * n_deferred.value].reshape(-1, 2).T
    pieces, start = [], 0
    for value, at in zip(x[index].astype(str).tolist(), offset.tolist(), strict=True):
        pieces += [text[start:at], value.encode("ascii")]
        start = at
    pieces.append(text[start:])
    return b"".join(pieces)
