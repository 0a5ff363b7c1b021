"""JSON text -> Python values, with a key given twice refused (json would keep the last
silently) and every failure one clear line. Shared by the JSON readers and the server.

``loads_json`` parses with orjson (4 to 7x faster than json on a 1000-row request) and
gives exactly what the reference, json.loads with ``object_without_duplicates``, gives:
the same values, the same refusals, the same words. orjson's result is kept only when it
cannot differ from the reference's; otherwise the reference parses the text again:

- orjson refuses the text: the reference decides, with its own words. It also accepts what
  orjson refuses: NaN and Infinity (the callers then refuse them as not finite, naming the
  value), numbers beyond float64 (inf), a UTF-8 BOM, UTF-16, escaped lone surrogates.
- a key given twice: orjson keeps the last value silently. Every key in the text is
  followed by one colon, and a key given twice is one key fewer in the parsed objects, so
  if the text holds as many colons as the parsed objects hold keys, no key was given twice
  (a colon inside a string only adds to the text's count). When the counts differ, the
  colons in the parsed strings are subtracted, unless an escape (\\u003a) could have written
  one: a duplicate's lost strings can only make that difference larger, never hide it.
- an integer beyond 64 bits, which orjson reads as a float (json keeps the int, and the
  callers name its digits): any float of magnitude 2^62 or more sends the text to json.
- nesting deeper than MAX_DEPTH: json's recursion limit decides where it stops.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable
from itertools import chain, compress, repeat
from typing import Any

import numpy as np

from housing_runtime.errors import UserError, shown

# Containers nested deeper than this are left to json, whose recursion limit (the interpreter's,
# about 1000 levels less the caller's stack) decides; records nest 2 or 3 levels deep.
MAX_DEPTH = 100
# orjson reads an integer beyond 64 bits (19 digits or more) as a float of at least 2^63:
# a float this large may be one, so json reads the text again (2^62 leaves room for rounding).
BIG_FLOAT = 2.0**62
COUNT_COLONS = operator.methodcaller("count", ":")
# Colons are counted by numpy in texts this long or longer (str.count is faster below), a slice
# of this many bytes at a time (bounds the comparison's temporary array).
NUMPY_COUNT_CHARS = 1 << 12
COUNT_SLICE = 1 << 20


class DuplicateKey(UserError):
    """A key given twice in a JSON object: which value was meant is ambiguous."""


class BadJson(UserError):
    """Text that is not JSON: "bad JSON (<why>)", ``why`` kept for callers that word it their way."""

    def __init__(self, why: str):
        super().__init__(f"bad JSON ({why})")
        self.why = why


def object_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json's object hook: a key given twice is ambiguous (json would keep the last silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(f"duplicate key {shown(key)} in a JSON object; each feature must appear once")
            seen.add(key)
    return obj


def loads_json(data: bytes | str) -> object:
    """The JSON value in ``data``, exactly as json.loads with ``object_without_duplicates``
    reads it, by orjson where that is the same (module docstring).

    Raises UserError, one line, with the reference's words:
    ``duplicate key 'MedInc' in a JSON object; each feature must appear once`` (DuplicateKey),
    ``bad JSON (Expecting value at line 1, column 2)``,
    ``JSON nested too deeply; expected objects of 8 numbers``,
    ``bad JSON ('Exceeds the limit (4300 digits) for integer string conversion...')``
    (an integer with more digits than Python converts) and, for bytes that are not UTF-8,
    ``bad JSON ("'utf-8' codec can't decode byte 0xff in position 1: invalid start byte")``."""
    # Imported when first needed: a CSV run, or JSON Lines that the compiled parser reads, does
    # not load it (2 ms of start-up; docs/cli.md, "What the runtime loads").
    import orjson

    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return reference_loads(data)
    keys = counted_keys(value)
    if keys is not None:
        extra = colons(data) - keys  # the colons inside strings, and one per key given twice
        if extra == 0 or extra == colons_in_strings(value, data):
            return value
    return reference_loads(data)


def parse_json(text: str, where: str) -> object:
    """loads_json, with each message prefixed by ``where`` ("line 7", "the JSON document")."""
    try:
        return loads_json(text)
    except UserError as err:
        raise (DuplicateKey if isinstance(err, DuplicateKey) else UserError)(f"{where}: {err}") from None


def reference_loads(data: bytes | str) -> object:
    """json.loads with duplicate keys refused: the reference loads_json keeps to."""
    try:
        return json.loads(data, object_pairs_hook=object_without_duplicates)
    except json.JSONDecodeError as err:
        raise BadJson(f"{err.msg} at line {err.lineno}, column {err.colno}") from None
    except RecursionError:
        raise UserError("JSON nested too deeply; expected objects of 8 numbers") from None
    except ValueError as err:  # more digits than Python converts (sys.int_info), bytes not UTF-8
        raise BadJson(shown(str(err))) from None


def colons(data: bytes | str) -> int:
    """The colons in ``data``: by numpy's vectorized compare, a slice at a time, for all but
    short texts (6x faster than str.count on a request)."""
    if len(data) < NUMPY_COUNT_CHARS:
        return data.count(b":") if isinstance(data, bytes) else data.count(":")
    codes = np.frombuffer(data if isinstance(data, bytes) else data.encode(), np.uint8)
    colon = ord(":")
    return sum(int(np.count_nonzero(codes[i : i + COUNT_SLICE] == colon)) for i in range(0, codes.size, COUNT_SLICE))


def escaped_colon(data: bytes | str) -> bool:
    """Whether ``data`` may hold an escape that writes a colon (\\u003a, either case of a)."""
    if isinstance(data, bytes):
        return b"\\u003a" in data or b"\\u003A" in data
    return "\\u003a" in data or "\\u003A" in data


def of_type(level: list, kinds: list[type], kind: type) -> Iterable:
    """The items of ``level`` whose type is exactly ``kind`` (orjson makes no subclasses)."""
    return compress(level, map(operator.is_, kinds, repeat(kind)))


def counted_keys(value: Any) -> int | None:
    """The keys in all of ``value``'s objects, or None if it nests deeper than MAX_DEPTH or
    holds a float of BIG_FLOAT or more (module docstring).

    Walked a level at a time, each in a few passes at C speed: a request is 8000 numbers,
    and a Python loop over them would cost more than orjson's parse."""
    keys, items = 0, [value]
    for _ in range(MAX_DEPTH):
        try:
            # Numbers only (else a TypeError): the last level. hypot is at least the largest
            # magnitude, found in one C call.
            return keys if math.hypot(*items) < BIG_FLOAT else None
        except TypeError:  # a string, null or container among them: one level down
            pass
        kinds = list(map(type, items))
        present = set(kinds)
        if float in present and math.hypot(*of_type(items, kinds, float)) >= BIG_FLOAT:
            return None
        # Records (all objects) are taken whole; a tensor's rows (lists beside its shape's
        # numbers) are picked out, and nothing is looked for that is not there.
        dicts = items if present == {dict} else list(of_type(items, kinds, dict)) if dict in present else []
        keys += sum(map(len, dicts))
        lists = list(of_type(items, kinds, list)) if list in present else []
        items = list(chain.from_iterable([*map(dict.values, dicts), *lists] if lists else map(dict.values, dicts)))
    return None


def colons_in_strings(value: Any, data: bytes | str) -> int | None:
    """The colons in all of ``value``'s strings, keys and values, or None if an escape in
    ``data`` could have written one (module docstring)."""
    if escaped_colon(data):
        return None
    count, level = 0, [value]
    while level:  # counted_keys has bounded the depth
        kinds = list(map(type, level))
        dicts = list(of_type(level, kinds, dict))
        count += sum(map(COUNT_COLONS, chain(chain.from_iterable(dicts), of_type(level, kinds, str))))
        level = list(
            chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(of_type(level, kinds, list)))
        )
    return count
