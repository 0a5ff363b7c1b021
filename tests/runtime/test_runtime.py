"""Unit tests of the onnxruntime-only predictor, on models built from random weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from helpers import REPO, california_like_rows, dumps_lines, records, run_module, write_csv, write_synthetic_artifacts
from pipeline import config

FEATURES = list(config.FEATURE_NAMES)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic_artifacts(tmp_path_factory.mktemp("synthetic_artifacts"))


def predict(art, *args, stdin: bytes | None = None):
    return run_module("housing_runtime", "--artifacts", str(art), *args, stdin=stdin)


def default_session_predictions(path, X) -> np.ndarray:
    sess = ort.InferenceSession(str(path))
    return sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})[0].reshape(-1)


def parse_csv_output(stdout: bytes) -> np.ndarray:
    lines = stdout.decode().splitlines()
    assert lines[0] == "prediction"
    return np.array([float(v) for v in lines[1:]], dtype=np.float32)


@pytest.mark.parametrize("variant", config.MODEL_VARIANTS)
def test_predictions_equal_a_default_onnxruntime_session(art, tmp_path, variant):
    X = california_like_rows(300, seed=5)
    src = write_csv(tmp_path / "in.csv", FEATURES, X.tolist())
    result = predict(art, "--model", variant, "--input", str(src))
    assert result.returncode == 0, result.stderr
    expected = default_session_predictions(art / config.ONNX_NAMES[variant], X)
    np.testing.assert_array_equal(parse_csv_output(result.stdout), expected)  # shortest repr round-trips


def test_default_is_uint8_on_the_bundled_sample(art):
    result = predict(art)
    assert result.returncode == 0, result.stderr
    X = np.loadtxt(art / "sample.csv", delimiter=",", skiprows=1, ndmin=2)
    np.testing.assert_array_equal(
        parse_csv_output(result.stdout), default_session_predictions(art / "model_uint8.onnx", X)
    )


def test_columns_in_any_order(art, tmp_path):
    X = california_like_rows(20, seed=6)
    perm = np.random.default_rng(0).permutation(8)
    a = predict(art, "--input", str(write_csv(tmp_path / "a.csv", FEATURES, X.tolist())))
    b = predict(art, "--input", str(write_csv(tmp_path / "b.csv", [FEATURES[i] for i in perm], X[:, perm].tolist())))
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


def test_csv_jsonl_json_and_instances_agree(art, tmp_path):
    X = california_like_rows(30, seed=7)
    recs = records(X)
    csv_out = predict(art, "--input", str(write_csv(tmp_path / "x.csv", FEATURES, X.tolist())))
    outputs = [
        predict(art, "--input", "-", stdin=dumps_lines(recs).encode()),  # JSON Lines, sniffed
        predict(art, "--input", "-", stdin=json.dumps(recs).encode()),  # list of records
        predict(art, "--input", "-", stdin=json.dumps({"instances": recs}, indent=2).encode()),
        predict(art, "--input", "-", stdin=json.dumps({"instances": recs}).encode()),
    ]
    for out in outputs:
        assert out.returncode == 0, out.stderr
        assert out.stdout == csv_out.stdout


def test_json_output_and_atomic_output_file(art, tmp_path):
    X = california_like_rows(10, seed=8)
    src = write_csv(tmp_path / "in.csv", FEATURES, X.tolist())
    dest = tmp_path / "out.json"
    result = predict(art, "--input", str(src), "--format", "json", "--model", "float", "--output", str(dest))
    assert result.returncode == 0 and result.stdout == b""
    doc = json.loads(dest.read_text())
    assert doc["model"] == "float" and len(doc["predictions"]) == 10
    np.testing.assert_array_equal(
        np.array(doc["predictions"], dtype=np.float32), default_session_predictions(art / "model_float.onnx", X)
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize("chunk_rows", ["1", "7", "1000"])
def test_chunking_does_not_change_results(art, tmp_path, chunk_rows):
    X = california_like_rows(50, seed=9)
    src = write_csv(tmp_path / "in.csv", FEATURES, X.tolist())
    ref = predict(art, "--input", str(src))
    got = predict(art, "--input", str(src), "--chunk-rows", chunk_rows)
    assert got.returncode == 0 and got.stdout == ref.stdout


GOOD_ROW = "1.5,20,5.1,1.0,1400,2.9,35.1,-119.5"
HEADER = ",".join(FEATURES)


@pytest.mark.parametrize(
    "content,match",
    [
        (f"{HEADER}\n{GOOD_ROW}\n1.5,20,abc,1.0,1400,2.9,35.1,-119.5\n", "line 3, column 3: 'abc' is not a number"),
        (f"{HEADER}\n{GOOD_ROW}\n1.5,20,,1.0,1400,2.9,35.1,-119.5\n", "line 3, column 3: '' is not a number"),
        (f"{HEADER}\n{GOOD_ROW}\n1.5,20,5.1,1.0,nan,2.9,35.1,-119.5\n", "line 3, column 'Population'.*not a finite"),
        (f"{HEADER}\n{GOOD_ROW}\n1.5,20,5.1,1.0,1400,inf,35.1,-119.5\n", "line 3, column 'AveOccup'.*not a finite"),
        (f"{HEADER}\n{GOOD_ROW}\n\n1.5,20,5.1,1.0,1400,2.9,35.1,-inf\n", "line 4, column 'Longitude'.*not a finite"),
        (f"{HEADER}\n{GOOD_ROW}\n1.5,20,5.1,1.0,1400,2.9,35.1\n", "line 3 has 7 fields, expected 8"),
        (
            f"\n\n{HEADER}\n{GOOD_ROW}\n1_000,20,5.1,1.0,1400,2.9,35.1,-119.5\n",
            "line 5, column 1: '1_000' is not a number",
        ),
        (f"{HEADER}\r\n{GOOD_ROW}\r\n1.5,20,5.1,1.0,1400,2.9,35.1,x\r\n", "line 3, column 8: 'x' is not a number"),
        (f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW},9\n", "line 3 has 9 fields, expected 8"),
        (HEADER.replace(",Longitude", "") + "\n1,2,3,4,5,6,7\n", "missing column Longitude"),
        (HEADER + ",Extra\n" + GOOD_ROW + ",1\n", "unknown column 'Extra' \\(column 9\\)"),
        (HEADER + ",MedInc\n" + GOOD_ROW + ",1\n", "duplicate column 'MedInc'"),
        (HEADER.replace("MedInc", "Income") + "\n" + GOOD_ROW + "\n", "unknown column 'Income'"),
        ("", "input is empty"),
        ("\n\n", "input is empty"),
        (HEADER + "\n", "header but no rows"),
    ],
)
def test_bad_csv_gives_one_line_exit_2_and_no_output(art, tmp_path, content, match):
    src = tmp_path / "bad.csv"
    src.write_text(content)
    dest = tmp_path / "out.csv"
    for args in (["--input", str(src)], ["--input", str(src), "--output", str(dest)]):
        result = predict(art, *args)
        assert_user_error(result, match)
        assert not dest.exists()


def test_bad_row_after_many_good_chunks_still_gives_no_output(art, tmp_path):
    X = california_like_rows(5000, seed=10)
    rows = X.tolist() + [["x"] * 8]
    src = write_csv(tmp_path / "in.csv", FEATURES, rows)
    result = predict(art, "--input", str(src), "--chunk-rows", "100")
    assert_user_error(result, "line 5002, column 1: 'x' is not a number")


@pytest.mark.parametrize(
    "stdin,match",
    [
        (b'{"MedInc": 1}\n', "line 1: missing HouseAge"),
        (dumps_lines(records(california_like_rows(2))).encode() + b'{"MedInc": \n', "line 3: bad JSON"),
        (
            (json.dumps({**records(california_like_rows(1))[0], "MedInc": "high"}) + "\n").encode(),
            "line 1, field 'MedInc': \"high\" is not a number",
        ),
        ((json.dumps({**records(california_like_rows(1))[0], "Extra": 1}) + "\n").encode(), 'line 1: unknown "Extra"'),
        ((json.dumps({**records(california_like_rows(1))[0], "MedInc": True}) + "\n").encode(), "is not a number"),
        (
            b'[{"MedInc": NaN, "HouseAge": 1, "AveRooms": 1, "AveBedrms": 1, "Population": 1, "AveOccup": 1, '
            b'"Latitude": 1, "Longitude": 1}]',
            "record 1, field 'MedInc': nan is not a finite",
        ),
        (b"[1, 2]", "record 1: expected an object"),
        (b"[]", "no records"),
        (b'{"rows": []}', 'line 1: missing MedInc.*unknown "rows"'),  # one line: read as JSON Lines
        (b'{\n  "rows": []\n}\n', 'expected a JSON list of records .* with keys "rows"'),
        (b'[{"MedInc": 1,', "bad JSON .*at line 1"),
    ],
)
def test_bad_json_gives_one_line_exit_2_and_no_output(art, stdin, match):
    assert_user_error(predict(art, "--input", "-", stdin=stdin), match)


def test_missing_input_file(art, tmp_path):
    assert_user_error(predict(art, "--input", str(tmp_path / "nope.csv")), "nope.csv' does not exist")


def test_model_that_is_not_onnx_is_refused(art, tmp_path):
    import shutil

    bad = tmp_path / "art"
    shutil.copytree(art, bad)
    (bad / "model_uint8.onnx").write_bytes(b"this is not a protobuf")
    assert_user_error(predict(bad, "--no-verify-manifest"), "not a loadable ONNX model")


def test_model_that_differs_from_the_manifest_is_refused(art, tmp_path):
    import shutil

    bad = tmp_path / "art"
    shutil.copytree(art, bad)
    blob = bytearray((bad / "model_float.onnx").read_bytes())
    blob[-1] ^= 1
    (bad / "model_float.onnx").write_bytes(bytes(blob))
    assert_user_error(predict(bad, "--model", "float"), "does not match its sha256")
    (bad / "manifest.json").unlink()
    assert_user_error(predict(bad, "--model", "float"), "manifest .* not found")


def test_bad_option_is_a_usage_error(art):
    result = predict(art, "--model", "int4")
    assert result.returncode == 2 and b"invalid choice" in result.stderr and b"Traceback" not in result.stderr


def assert_user_error(result, match):
    import re

    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(match, err), err
    assert result.stdout == b""


# onnxruntime's own requirements (its wheel's Requires-Dist), as import names.
ONNXRUNTIME_REQUIREMENTS = {"google", "flatbuffers", "packaging"}

# Loaded in a fresh interpreter after a real prediction: which modules the runtime needed.
IMPORT_PROBE = """
import contextlib, io, json, sys
from housing_runtime import cli
with contextlib.redirect_stdout(io.StringIO()) as buf:
    cli.main(["--artifacts", sys.argv[1]])
assert buf.getvalue().startswith("prediction\\n"), buf.getvalue()
if sys.argv[2:] == ["server"]:  # and what serving adds: the server module and its protocol
    from housing_runtime.serving import dataplane, grpc_service, lifecycle, metrics, rest, server
    models = lifecycle.load_models(__import__("pathlib").Path(sys.argv[1]), True)
    server.App(rest.RestAdapter(dataplane.DataPlane(models)), metrics.Metrics())
print(json.dumps({name: getattr(module, "__file__", None) for name, module in sys.modules.items()}))
"""
# The server's stack (requirements.txt), as import names: only `serve` loads them.
SERVER_STACK = {
    "starlette",
    "uvicorn",
    "prometheus_client",
    "anyio",
    "h11",
    "idna",
    "click",
    "typing_extensions",
    "sniffio",
    "grpc",
    "grpc_health",
    "grpc_tools",  # grpc looks for it (runtime proto compilation) when installed: here, a test requirement
    "orjson",
}


def modules_after_a_prediction(art, *probe_args: str) -> dict[str, str | None]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, str(art), *probe_args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_server_loads_only_numpy_onnxruntime_and_the_server_stack(art):
    site = [Path(p).resolve() for p in sys.path if p.endswith("site-packages")]
    third_party = {
        name.split(".")[0]
        for name, f in modules_after_a_prediction(art, "server").items()
        if f and any(Path(f).resolve().is_relative_to(s) for s in site)
    }
    # Site hooks that the interpreter loads before any code runs: setuptools' and the editable
    # installs' import finders (make all installs both distributions in editable mode).
    hooks = {name for name in third_party if name == "_distutils_hack" or name.startswith("__editable__")}
    assert third_party - hooks <= {"numpy", "onnxruntime"} | ONNXRUNTIME_REQUIREMENTS | SERVER_STACK
    assert {"starlette", "uvicorn", "prometheus_client"} <= third_party


def test_the_runtime_loads_no_third_party_package_but_numpy_and_onnxruntime(art):
    """Beyond the standard library, only numpy and onnxruntime (and what onnxruntime itself
    requires), not counting what the interpreter loads before any code runs (site hooks)."""
    startup_probe = "import json, sys; print(json.dumps(list(sys.modules)))"
    at_startup = json.loads(
        subprocess.run(
            [sys.executable, "-c", startup_probe], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    site = [Path(p).resolve() for p in sys.path if p.endswith("site-packages")]
    third_party = {
        name.split(".")[0]
        for name, f in modules_after_a_prediction(art).items()
        if f and name not in at_startup and any(Path(f).resolve().is_relative_to(s) for s in site)
    }
    assert third_party == {"numpy", "onnxruntime"} | (third_party & ONNXRUNTIME_REQUIREMENTS)


# Runs a prediction (or, as a control, a real unpickling) in a fresh interpreter under an audit
# hook that records every unpickled global and every file opened with a pickle's suffix.
PICKLE_PROBE = """
import io, contextlib, json, sys
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle", ".npz", ".npy")
seen = []
def hook(event, args):
    if event == "pickle.find_class":
        seen.append(f"pickle.find_class {args[0]}.{args[1]}")
    elif event == "open" and isinstance(args[0], str) and args[0].endswith(PICKLE_SUFFIXES):
        seen.append(f"open {args[0]}")
sys.addaudithook(hook)
if sys.argv[1] == "control":
    import pickle
    from collections import OrderedDict
    pickle.loads(pickle.dumps(OrderedDict(a=1)))
else:
    from housing_runtime import cli
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        cli.main(["--artifacts", sys.argv[1], "--model", sys.argv[2]])
    assert buf.getvalue().startswith("prediction"), buf.getvalue()
print(json.dumps(seen))
"""


def audited_pickle_events(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PICKLE_PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_pickle_probe_sees_an_unpickling():
    """The control: the audit hook does catch pickle when it is used."""
    assert audited_pickle_events("control") == ["pickle.find_class collections.OrderedDict"]


@pytest.mark.parametrize("variant", config.MODEL_VARIANTS)
def test_runtime_never_loads_a_pickle(art, variant):
    assert audited_pickle_events(str(art), variant) == []


def test_output_to_a_device_is_written_directly(art):
    # /dev/null cannot take a temporary sibling file; devices and pipes are written in place.
    result = predict(art, "--output", "/dev/null")
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b""
