"""loads_json (orjson, checked) reads every text exactly as the reference, json.loads with the
duplicate-key hook, reads it: the same values and types, the same refusals, the same words.

The promise the server and the CLI rely on: switching to orjson changed nothing but the time.
Checked on the cases where orjson and json differ (a key given twice, NaN, big integers, deep
nesting, bytes that are not UTF-8, escapes that write a colon), on the server's typical bodies
(which must not need the reference's second parse), and with Hypothesis on generated documents.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from housing_runtime.errors import UserError
from housing_runtime.io import json_values
from housing_runtime.io.json_values import DuplicateKey, loads_json, parse_json, reference_loads

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEATURES = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]
ROW = [8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23]


def outcome(parse, data: bytes | str) -> tuple:
    """("value", value) or ("refused", error type, message): what a caller can observe."""
    try:
        return ("value", parse(data))
    except UserError as err:
        return ("refused", type(err).__name__, str(err))


def same(a: object, b: object) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0), NaN equal to NaN, -0.0 told
    from 0.0, and objects' keys in the same order. Iterative: documents nest 1000 deep."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            assert isinstance(y, float)
            if not (math.isnan(x) and math.isnan(y)) and (x != y or math.copysign(1, x) != math.copysign(1, y)):
                return False
        elif isinstance(x, dict):
            assert isinstance(y, dict)
            if list(x) != list(y):
                return False
            pending += [(x[k], y[k]) for k in x]
        elif isinstance(x, list):
            assert isinstance(y, list)
            if len(x) != len(y):
                return False
            pending += zip(x, y, strict=True)
        elif x != y:
            return False
    return True


def assert_as_the_reference(data: bytes | str) -> tuple:
    ours, theirs = outcome(loads_json, data), outcome(reference_loads, data)
    assert ours[0] == theirs[0] and (same(ours[1], theirs[1]) if ours[0] == "value" else ours == theirs), (data, ours)
    return ours


@pytest.fixture
def no_second_parse(monkeypatch):
    """Fails the test if loads_json falls back to the reference parse."""

    def refuse(data):
        raise AssertionError("loads_json parsed the text again with json")

    monkeypatch.setattr(json_values, "reference_loads", refuse)


def v2_body(data: list, **extra) -> bytes:
    tensor = {"name": "float_input", "shape": [len(data) // 8 or len(data), 8], "datatype": "FP32", "data": data}
    return json.dumps({**extra, "inputs": [tensor]}).encode()


# ---- a key given twice ----------------------------------------------------------------------

DUPLICATES = [
    '{"a": 1, "a": 1}',
    '{"a":1,"b":2,"a":3}',
    '{"a" : 1 , "a" : 2}',
    '{"outer": {"k": 1, "k": 2}}',
    '[{"a": 1}, {"b": [{"c": 1, "c": 2}]}]',
    '{"inputs": [{"name": "x", "data": [1, 2, {"k": 1, "k": 2}]}]}',
    '{"inputs": [{"name": "x", "shape": [1, 8], "shape": [1, 8], "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}',
    '{"instances": [{"MedInc": 1, "MedInc": 2}]}',
    '{"id": "a:b:c", "k": 1, "k": 2}',  # colons in a string make the text's count larger
    '{"k:": 1, "k:": 2}',
    '{"x": "\\u003a", "k": 1, "k": 2}',  # an escaped colon in a string could hide the lost key
    '{"k\\u003a": 1, "k:": 2}',  # the same key, written two ways
    '{"": 1, "": 2}',
    '{"\\u00e9": 1, "\u00e9": 2}',
]


@pytest.mark.parametrize("text", DUPLICATES)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_key_given_twice_is_refused_at_any_depth(text, as_bytes):
    data = text.encode() if as_bytes else text
    with pytest.raises(DuplicateKey, match=r"^duplicate key .* in a JSON object; each feature must appear once$"):
        loads_json(data)
    assert_as_the_reference(data)


def test_a_key_given_twice_inside_a_large_tensor_is_refused():
    body = v2_body(ROW * 1000)
    assert b'"data": [' in body
    with pytest.raises(DuplicateKey, match="duplicate key 'k'"):
        loads_json(body.replace(b'"data": [', b'"data": [{"k": 1, "k": 2}, '))


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "2024-01-01T00:00:00", "a": 1}',
        '{"a:b": "c:d", "e": {"::": ":"}}',
        '{"x": "\\u003a", "a": 1}',
        '{"x": "\\\\u003a", "a": 1}',  # an escaped backslash, then "u003a": not an escape
        '{"a": 1, "b": {}, "c": [], "d": [{}]}',
    ],
)
def test_colons_and_escapes_in_strings_are_not_mistaken_for_keys(text):
    ours = assert_as_the_reference(text)
    assert ours[0] == "value"


# ---- what orjson refuses or reads otherwise: the reference decides ----------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_nan_and_infinity_are_read_as_json_reads_them_for_the_callers_to_refuse(literal):
    # json reads them (orjson refuses them); the readers then refuse each, naming the value,
    # as "not a finite number" (tests/runtime/test_runtime.py, tests/server_checks.py).
    (value,) = assert_as_the_reference(f"[{literal}]")[1]
    assert not math.isfinite(value)


@pytest.mark.parametrize(
    "number", [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**38), 10**39, 10**400]
)
def test_integers_beyond_64_bits_stay_exact_integers(number):
    # orjson reads an integer beyond 64 bits as a float; json keeps its digits, which the
    # readers show in their "outside float32's range" message.
    (value,) = assert_as_the_reference(v2_body([number]).decode())[1]["inputs"][0]["data"]
    assert type(value) is int and value == number


def test_a_large_float_that_could_be_an_integer_is_left_to_json():
    (value,) = assert_as_the_reference("[12345678901234567890.0]")[1]
    assert type(value) is float


def test_an_integer_with_more_digits_than_python_converts_is_one_line():
    with pytest.raises(UserError, match=r"^bad JSON \('Exceeds the limit \(4300 digits\)"):
        loads_json("[1" + "0" * 5000 + "]")


@pytest.mark.parametrize("depth", [50, json_values.MAX_DEPTH + 1, 900, 1024, 1025, 5000, 100_000])
def test_deep_nesting_is_read_or_refused_as_json_does(depth):
    ours = assert_as_the_reference("[" * depth + "]" * depth)
    if depth > 1024:
        assert ours == ("refused", "UserError", "JSON nested too deeply; expected objects of 8 numbers")


@pytest.mark.parametrize(
    "data,words",
    [
        (b'{"a": "\xff"}', "bad JSON (\"'utf-8' codec can't decode byte 0xff in position 7: invalid start byte\")"),
        (b'{"a": "\xc3"}', "can't decode byte 0xc3"),
        (b"", "bad JSON (Expecting value at line 1, column 1)"),
        (b'{"a": 1,\n "b": }', "bad JSON (Expecting value at line 2, column 7)"),
        (b'{"a": 1} {"b": 2}', "bad JSON (Extra data at line 1, column 10)"),
        (b"[1, 2,]", "bad JSON (Expecting value at line 1, column 7)"),
        (b'"\x01"', "bad JSON (Invalid control character at at line 1, column 2)"),
    ],
)
def test_text_that_is_not_json_is_refused_in_one_line_with_jsons_words(data, words):
    ours = assert_as_the_reference(data)
    assert ours[0] == "refused" and words in ours[2] and "\n" not in ours[2]


@pytest.mark.parametrize(
    "data",
    [
        b'["\\ud800"]',  # an escaped lone surrogate: json reads it, orjson refuses it
        b'["\\udc00\\ud800"]',
        b'["\xed\xa0\x80"]',  # a surrogate encoded in UTF-8: json decodes with surrogatepass
        b'\xef\xbb\xbf{"a": 1}',  # json's bytes path skips a UTF-8 BOM
        '{"a": 1}'.encode("utf-16"),
        '{"a": 1}'.encode("utf-32-le"),
        '\ufeff{"a": 1}',  # a BOM in a str is an error to json
        '["\ud800"]',  # a lone surrogate in a str
        b'["\\ud83d\\ude00", "\xf0\x9f\x98\x80"]',
    ],
)
def test_encodings_and_surrogates_are_read_as_json_reads_them(data):
    assert_as_the_reference(data)


def test_parse_json_names_where_the_fault_is():
    with pytest.raises(DuplicateKey, match=r"^line 3: duplicate key 'MedInc' in a JSON object"):
        parse_json('{"MedInc": 1, "MedInc": 2}', "line 3")
    with pytest.raises(UserError, match=r"^line 3: bad JSON \(Expecting value at line 1, column 12\)$"):
        parse_json('{"MedInc": ', "line 3")
    with pytest.raises(UserError, match=r"^the JSON document: JSON nested too deeply"):
        parse_json("[" * 5000, "the JSON document")


# ---- the fast path is taken where it matters ------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        v2_body(ROW * 1000),
        v2_body([ROW] * 1000),
        v2_body([float(v) for v in range(8000)], id="request:1", parameters={"binary_data_output": False}),
        json.dumps({"instances": [dict(zip(FEATURES, ROW, strict=True))] * 1000}).encode(),
        json.dumps([dict(zip(FEATURES, ROW, strict=True))] * 1000),
        b'{"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP32", "data": [1,2,3,4,5,6,7,8]}]}',
    ],
)
def test_the_servers_typical_bodies_are_read_by_orjson_alone(no_second_parse, body):
    assert loads_json(body) == json.loads(body)


# ---- any document ---------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", ":", "a:b", "MedInc", "", "\u00e9", '"', "\\"]) | st.text(max_size=4)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32).map(float),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=6))


class Pairs(list):
    """A JSON object as written: its pairs in order, a key possibly more than once."""


DOCUMENTS = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=5) | st.lists(st.tuples(KEYS, inner), max_size=5).map(Pairs)
)


def written(node: object, rng: random.Random) -> str:
    """JSON text for ``node``, with the liberties a writer may take: whitespace, escapes
    (\\u003a for a colon among them), exponents, NaN and Infinity as json writes them."""

    def gap() -> str:
        return rng.choice(["", "", " ", "\n", "\t ", "\r\n"])

    def string(s: str) -> str:
        text = json.dumps(s, ensure_ascii=rng.random() < 0.5)
        return text.replace(":", "\\u003a") if rng.random() < 0.3 else text

    if isinstance(node, Pairs):
        return "{" + ",".join(f"{gap()}{string(k)}{gap()}:{gap()}{written(v, rng)}{gap()}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(gap() + written(v, rng) + gap() for v in node) + "]"
    if isinstance(node, str):
        return string(node)
    if isinstance(node, float) and math.isfinite(node) and rng.random() < 0.3:
        return f"{node:.17e}"
    return json.dumps(node)


@SETTINGS
@given(document=DOCUMENTS, seed=st.integers(0, 2**32), as_bytes=st.booleans())
def test_any_document_is_read_or_refused_as_json_reads_it(document, seed, as_bytes):
    text = written(document, random.Random(seed))
    assert_as_the_reference(text.encode("utf-8", "surrogatepass") if as_bytes else text)


@SETTINGS
@given(document=DOCUMENTS, seed=st.integers(0, 2**32), cut=st.integers(0, 10**6), junk=st.text(max_size=3))
def test_any_damaged_document_is_refused_with_jsons_words(document, seed, cut, junk):
    text = written(document, random.Random(seed))
    at = cut % (len(text) + 1)
    assert_as_the_reference(text[:at] + junk + text[at + 1 :])
