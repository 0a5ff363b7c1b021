"""The runtime's contract at its edges, one test per fault class: a bad input or a bad place to
write gives one line on stderr, exit 2 (exit 1 for the machine's faults, such as a full disk),
no traceback, no output, nothing left behind, and the user's files untouched. Valid input that
real files and machines produce (a BOM, CR line endings, long lines) is read correctly."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from helpers import REPO, california_like_rows, dumps_lines, records, write_synthetic_artifacts
from housing_runtime.errors import SHOWN_CHARS
from housing_runtime.io import json_document, sink
from pipeline import config

FEATURES = list(config.FEATURE_NAMES)
HEADER = ",".join(FEATURES) + "\n"
# Rows a test waits for a running CLI, at most (polling, not sleeping a fixed time).
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return write_synthetic_artifacts(tmp_path_factory.mktemp("synthetic_artifacts"))


def run(art, *args, stdin: bytes | None = None, shell_redirect: str = "") -> tuple[subprocess.CompletedProcess, int]:
    """The CLI as a user runs it; returns the result and the child's peak RSS in KiB.

    Through files, not pipes, so that os.wait4 can reap the child and report its peak RSS."""
    cmd = [sys.executable, "-m", "housing_runtime", "--artifacts", str(art), *args]
    if shell_redirect:
        cmd = ["bash", "-c", shlex.join(cmd) + " " + shell_redirect]
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryFile() as ferr:
        fin.write(stdin or b"")
        fin.seek(0)
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=fin, stdout=fout, stderr=ferr)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, fout.read(), ferr.read()), usage.ru_maxrss


def csv_rows(X: np.ndarray) -> str:
    return HEADER + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X)


def assert_one_line_error(result, match: str, code: int = 2) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert match in err, err
    assert result.stdout == b""
    return err


# ---- float32 overflow and predictions that are not finite ---------------------------------


def rows_with(value: str, column: str = "MedInc") -> list[dict]:
    recs = records(california_like_rows(3))
    recs[1][column] = value
    return recs


@pytest.mark.parametrize("text", ["1e39", "-3.5e38", "3.5e38"])
def test_a_csv_value_beyond_float32_is_refused_naming_line_and_column(art, text):
    lines = csv_rows(california_like_rows(3)).splitlines(keepends=True)
    fields = lines[2].split(",")
    fields[FEATURES.index("Population")] = text
    lines[2] = ",".join(fields)
    result, _ = run(art, "--input", "-", stdin="".join(lines).encode())
    err = assert_one_line_error(result, "outside float32's range")
    assert "line 3, column 'Population'" in err


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_json_number_beyond_float32_is_refused(art, fmt):
    recs = records(california_like_rows(3))
    recs[2]["AveRooms"] = 10**39
    body = dumps_lines(recs) if fmt == "jsonl" else json.dumps(recs)
    result, _ = run(art, "--input", "-", "--input-format", fmt, stdin=body.encode())
    err = assert_one_line_error(result, "outside float32's range")
    assert ("line 3" if fmt == "jsonl" else "record 3") in err and "'AveRooms'" in err


def test_a_prediction_that_overflows_float32_is_an_error_naming_the_row(art):
    """Every input finite in float32, but their weighted sum is not."""
    sess = ort.InferenceSession(str(art / config.ONNX_NAMES["float"]))
    probe = np.vstack([np.zeros(8), np.eye(8)]).astype(np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: probe})[0].reshape(-1)
    weights = out[1:] - out[0]
    X = california_like_rows(3)
    X[1] = 3.0e38 * np.sign(weights)  # every term adds up: the sum overflows float32
    result, _ = run(art, "--input", "-", "--model", "float", stdin=csv_rows(X).encode())
    err = assert_one_line_error(result, "prediction is")
    assert "line 3" in err


# ---- exceptions that used to escape ---------------------------------------------------------


@pytest.mark.parametrize(
    "body,fmt,match",
    [
        ("[" * 5_000 + " " * 200_000 + "]" * 5_000, "json", "nested too deeply"),
        ("[" + ",".join(["{}"] * 100_000) + "]", "json", "too many for records of 8 numbers"),  # memory per object
        ('{"MedInc": ' + "[" * 100_000 + "\n", "jsonl", "nested too deeply"),
        ('[{"MedInc": 1' + "0" * 5000 + "}]", "json", "bad JSON"),  # more digits than Python converts
        ("[" + json.dumps(rows_with(float("inf"))[1]) + "]", "json", "not a finite number"),
    ],
)
def test_malformed_json_is_one_line(art, body, fmt, match):
    result, _ = run(art, "--input", "-", "--input-format", fmt, stdin=body.encode())
    assert_one_line_error(result, match)


@pytest.mark.parametrize("where", ["header", "row"])
def test_a_csv_field_over_the_csv_modules_limit_is_one_line(art, where):
    huge = "9" * 200_000
    text = (
        (HEADER.replace("MedInc", huge) + "1,2,3,4,5,6,7,8\n")
        if where == "header"
        else (HEADER + ",".join([huge, *"2345678"]) + "\n")
    )
    result, _ = run(art, "--input", "-", stdin=text.encode())
    assert_one_line_error(result, "line ")


@pytest.mark.parametrize(
    "content",
    [
        '{"artifacts": []}',
        '{"artifacts": {"model_uint8.onnx": "x"}}',
        "[]",
        '{"artifacts": {"model_uint8.onnx": {"sha256": 1, "size": "big"}}}',
    ],
)
def test_a_manifest_of_the_wrong_shape_is_refused(art, tmp_path, content):
    bad = tmp_path / "art"
    bad.mkdir()
    for name in [*config.ONNX_NAMES.values(), config.SAMPLE_NAME]:
        (bad / name).write_bytes((art / name).read_bytes())
    (bad / config.MANIFEST_NAME).write_text(content)
    result, _ = run(bad)
    assert_one_line_error(result, "is not a valid manifest")


def test_a_model_that_does_not_take_n_by_8_is_refused_at_load(art, tmp_path):
    bad = tmp_path / "art"
    bad.mkdir()
    (bad / config.SAMPLE_NAME).write_bytes((art / config.SAMPLE_NAME).read_bytes())
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["variable"])], "wrong", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, bad / config.ONNX_NAMES["uint8"])
    result, _ = run(bad, "--no-verify-manifest")
    assert_one_line_error(result, "expected one float tensor of shape [N, 8]")


def test_a_full_disk_is_exit_1_and_one_line(art):
    result, _ = run(art, "--output", "/dev/full")
    assert_one_line_error(result, "No space left on device", code=1)


def test_an_output_whose_parent_is_a_file_or_that_is_a_directory_is_refused(art, tmp_path):
    (tmp_path / "afile").write_text("mine\n")
    result, _ = run(art, "--output", str(tmp_path / "afile" / "out.csv"))
    assert_one_line_error(result, "is a file, not a folder")
    result, _ = run(art, "--output", str(tmp_path))
    assert_one_line_error(result, "is a directory")
    assert (tmp_path / "afile").read_text() == "mine\n"


def test_an_output_folder_that_is_not_writable_is_refused_before_reading(tmp_path, monkeypatch):
    """As root (CI) permissions do not apply, so the check is driven directly: the folder's
    access test fails, and the error names the folder."""
    monkeypatch.setattr(sink.os, "access", lambda path, mode: False)
    with pytest.raises(sink.UserError, match="permission denied"):
        out = str(tmp_path / "out.csv")
        sink.check_output(sink.resolve_output(out), out, None)


@pytest.mark.parametrize("redirect,match", [("<&-", "stdin is closed"), (">&-", "stdout is closed")])
def test_closed_stdin_or_stdout_is_one_line(art, redirect, match):
    args = ("--input", "-") if redirect == "<&-" else ()
    result, _ = run(art, *args, shell_redirect=redirect)
    assert_one_line_error(result, match)


# ---- bounded memory -------------------------------------------------------------------------


def test_no_input_makes_memory_grow_beyond_a_few_times_the_normal_peak(art, tmp_path):
    """/dev/zero (no newline, ever) and a 50 MB line are refused at the line cap, within 4x the
    peak of predicting the sample."""
    normal, normal_rss = run(art)
    assert normal.returncode == 0
    big_line = tmp_path / "big.csv"
    big_line.write_bytes(HEADER.encode() + b"1" * (50 << 20) + b"\n")
    for source in ["/dev/zero", str(big_line)]:
        result, rss = run(art, "--input", source)
        assert_one_line_error(result, "longer than")
        assert rss <= 4 * normal_rss, (source, rss, normal_rss)


def test_a_json_document_over_the_cap_is_refused_with_what_to_do(art, monkeypatch):
    monkeypatch.setattr(json_document, "MAX_DOCUMENT_CHARS", 100)
    import io

    stream = io.StringIO(json.dumps(records(california_like_rows(10))))
    with pytest.raises(json_document.UserError, match="send JSON Lines"):
        list(json_document.read_json_document(stream, config.FEATURE_NAMES, 10))


# ---- format detection: valid input that was rejected or misread --------------------------


def predictions_of(result) -> np.ndarray:
    assert result.returncode == 0, result.stderr.decode()
    return np.array(result.stdout.decode().split()[1:], dtype=np.float32)


@pytest.mark.parametrize(
    "case",
    [
        "bom-json",
        "long-first-jsonl-line",
        "long-leading-whitespace",
        "cr-only-csv",
        "whitespace-trailing-lines-csv",
        "whitespace-trailing-lines-jsonl",
        "quoted-csv",
    ],
)
def test_valid_input_in_real_world_shapes_is_read_correctly(art, case):
    X = california_like_rows(4)
    expected = predictions_of(run(art, "--input", "-", stdin=csv_rows(X).encode())[0])
    recs = records(X)
    body = {
        "bom-json": b"\xef\xbb\xbf" + json.dumps(recs).encode(),
        # One record padded past the 64 KiB detection window, then the rest.
        "long-first-jsonl-line": (json.dumps(recs[0])[:-1] + " " * 70_000 + "}\n" + dumps_lines(recs[1:])).encode(),
        "long-leading-whitespace": b" \n" * 40_000 + dumps_lines(recs).encode(),
        "cr-only-csv": csv_rows(X).replace("\n", "\r").encode(),
        "whitespace-trailing-lines-csv": (csv_rows(X) + "   \n\t\n").encode(),
        "whitespace-trailing-lines-jsonl": (dumps_lines(recs) + "   \n \t \n").encode(),
        # Spreadsheets quote fields: the header and the numbers.
        "quoted-csv": "".join(
            ",".join(f'"{v}"' for v in line.split(",")) + "\n" for line in csv_rows(X).splitlines()
        ).encode(),
    }[case]
    np.testing.assert_array_equal(predictions_of(run(art, "--input", "-", stdin=body)[0]), expected)


def test_line_numbers_count_the_skipped_leading_lines(art):
    recs = records(california_like_rows(3))
    recs[1]["MedInc"] = "x"
    result, _ = run(art, "--input", "-", stdin=b"\n\n\n" + dumps_lines(recs).encode())
    assert_one_line_error(result, "line 5, field 'MedInc'")


# ---- ambiguity --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_duplicate_json_key_is_refused(art, fmt):
    line = json.dumps(records(california_like_rows(1))[0])[:-1] + ', "MedInc": 3.0}'
    body = line + "\n" if fmt == "jsonl" else f"[{line}]"
    result, _ = run(art, "--input", "-", "--input-format", fmt, stdin=body.encode())
    assert_one_line_error(result, "duplicate key 'MedInc'")


# ---- data safety ------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
def test_output_naming_the_input_is_refused_and_the_input_survives(art, tmp_path, link):
    src = tmp_path / "homes.csv"
    src.write_text(csv_rows(california_like_rows(3)))
    before = src.read_bytes()
    out = {"same": src, "symlink": tmp_path / "alias.csv", "hardlink": tmp_path / "hard.csv"}[link]
    if link == "symlink":
        out.symlink_to(src)
    elif link == "hardlink":
        os.link(src, out)
    result, _ = run(art, "--input", str(src), "--output", str(out))
    assert_one_line_error(result, "is the input file itself")
    assert src.read_bytes() == before


def test_a_failed_run_creates_no_folders(art, tmp_path):
    result, _ = run(art, "--input", "-", "--output", str(tmp_path / "a" / "b" / "c.csv"), stdin=b"MedInc\n1\n")
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []


def test_a_successful_run_creates_the_folders_it_needs(art, tmp_path):
    result, _ = run(art, "--output", str(tmp_path / "a" / "b" / "c.csv"))
    assert result.returncode == 0 and (tmp_path / "a" / "b" / "c.csv").read_text().startswith("prediction\n")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c.csv"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_run_leaves_no_temporary_file(art, tmp_path, signum):
    out = tmp_path / "preds.csv"
    cmd = [sys.executable, "-m", "housing_runtime", "--artifacts", str(art), "--input", "-", "--output", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(HEADER.encode() + b"1,2,3,4,5,6,7,8\n")  # and then nothing: the CLI waits for more
    proc.stdin.flush()
    deadline = time.monotonic() + WAIT_SECONDS
    while not list(tmp_path.glob(".preds.csv.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob(".preds.csv.*.tmp")), "the CLI never started writing"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=WAIT_SECONDS)
    proc.stdin.close()
    assert proc.returncode == 128 + signum, err
    assert b"Traceback" not in err and len(err.decode().strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_device_output_is_all_or_nothing_too(art):
    """/dev/stdout (the caller's pipe): a bad row in a later chunk, and nothing was written."""
    X = california_like_rows(6)
    text = csv_rows(X).splitlines(keepends=True)
    text[6] = text[6].replace(text[6].split(",")[0], "oops", 1)
    result, _ = run(art, "--input", "-", "--output", "/dev/stdout", "--chunk-rows", "2", stdin="".join(text).encode())
    assert_one_line_error(result, "line 7")


def test_a_fifo_output_gets_nothing_on_failure(art, tmp_path):
    fifo = tmp_path / "preds.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result, _ = run(art, "--input", "-", "--output", str(fifo), stdin=b"MedInc\n1\n")
        assert result.returncode == 2
        try:
            assert os.read(reader, 1024) == b""
        except BlockingIOError:
            pass  # no writer ever opened it: nothing to read
    finally:
        os.close(reader)


def test_an_existing_output_keeps_its_permission_bits(art, tmp_path):
    out = tmp_path / "preds.csv"
    out.write_text("old\n")
    out.chmod(0o640)
    result, _ = run(art, "--output", str(out))
    assert result.returncode == 0 and out.read_text().startswith("prediction\n")
    assert (out.stat().st_mode & 0o777) == 0o640


# ---- messages stay one line -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Med\rInc", "x" * 10_000, "Med\u2028Inc"])
def test_echoed_names_are_escaped_and_capped(art, name):
    text = HEADER.replace("MedInc", json.dumps(name)) + "1,2,3,4,5,6,7,8\n"
    result, _ = run(art, "--input", "-", stdin=text.encode())
    err = assert_one_line_error(result, "unknown column")
    assert len(err) < SHOWN_CHARS + 200


def test_an_echoed_json_key_with_a_newline_stays_on_one_line(art):
    rec = {**records(california_like_rows(1))[0], "bad\nkey": 1}
    result, _ = run(art, "--input", "-", "--input-format", "jsonl", stdin=(json.dumps(rec) + "\n").encode())
    assert_one_line_error(result, 'unknown "bad\\nkey"')


# ---- found by an adversarial review ------------------------------------------------------


def split_and_doubled_records() -> str:
    """Line 1 and 2 hold one record split in two; line 3 holds two records: invalid JSON Lines
    whose totals (3 lines, 3 records, 24 keys) match a valid file's."""
    recs = records(california_like_rows(3))
    first = json.dumps(recs[0])
    cut = first.index(', "Population"')
    return first[:cut] + "\n" + first[cut + 2 :] + "\n" + json.dumps(recs[1]) + ", " + json.dumps(recs[2]) + "\n"


@pytest.mark.parametrize("chunk_rows", ["65536", "1"])
def test_records_split_across_lines_are_refused_whatever_the_chunking(art, chunk_rows):
    result, _ = run(
        art,
        "--input",
        "-",
        "--input-format",
        "jsonl",
        "--chunk-rows",
        chunk_rows,
        stdin=split_and_doubled_records().encode(),
    )
    assert_one_line_error(result, "line 1: bad JSON")


def test_long_valid_lines_keep_memory_bounded(art, tmp_path):
    """Rows padded with spaces (valid: loadtxt strips them): chunks are bounded by characters
    too, not only by rows."""
    _, normal_rss = run(art)
    row = ",".join(" " * 100 + repr(float(v)) for v in california_like_rows(1)[0])
    src = tmp_path / "padded.csv"
    src.write_text(HEADER + (row + "\n") * 65_536)
    result, rss = run(art, "--input", str(src), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    assert rss <= 4 * normal_rss, (rss, normal_rss)


def test_a_line_over_the_cap_is_refused_wherever_it_falls(art):
    row = ",".join(repr(float(v)) for v in california_like_rows(1)[0])
    result, _ = run(art, "--input", "-", stdin=(HEADER + " " * (3 << 20) + row + "\n").encode())
    assert_one_line_error(result, "line 2 is longer than")


@pytest.mark.parametrize("chunk_rows", ["65536", "1"])
def test_an_unterminated_quote_is_refused_naming_its_line(art, chunk_rows):
    rows = csv_rows(california_like_rows(3)).splitlines()
    rows[2] = rows[2].replace(",", ',"', 1)
    result, _ = run(art, "--input", "-", "--chunk-rows", chunk_rows, stdin=("\n".join(rows) + "\n").encode())
    assert_one_line_error(result, "line 3: a quote is not closed")


def test_dev_stdout_as_output_writes_to_stdout_and_keeps_the_link(art, tmp_path):
    out = tmp_path / "preds.csv"
    result, _ = run(art, "--output", "/dev/stdout", shell_redirect=f"> {shlex.quote(str(out))}")
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("prediction\n")
    assert os.path.islink("/dev/stdout")


def test_a_symlink_as_output_is_kept_and_its_target_written(art, tmp_path):
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    result, _ = run(art, "--output", str(link))
    assert result.returncode == 0 and link.is_symlink()
    assert target.read_text().startswith("prediction\n")


def test_the_input_through_stdin_is_not_replaced_by_its_predictions(art, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(csv_rows(california_like_rows(3)))
    before = src.read_bytes()
    result, _ = run(art, "--input", "-", "--output", str(src), shell_redirect=f"< {shlex.quote(str(src))}")
    assert_one_line_error(result, "is the input file itself")
    assert src.read_bytes() == before


@pytest.mark.parametrize("option", ["--output", "--artifacts"])
def test_a_path_too_long_for_the_system_is_one_line(art, tmp_path, option):
    long = str(tmp_path / ("a" * 300))
    args = ("--output", long) if option == "--output" else ()
    cmd_art = long if option == "--artifacts" else art
    result, _ = run(cmd_art, *args)
    assert_one_line_error(result, "")


def wait_until_caught(pid: int, signum: int, seconds: float = 30) -> None:
    """Until the process has a handler for ``signum`` (the SigCgt mask in /proc/PID/status)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught >> (signum - 1) & 1:
            return
        time.sleep(0.001)
    raise AssertionError(f"no handler for signal {signum} within {seconds} s")


def test_a_signal_during_start_up_is_one_line(art):
    cmd = [sys.executable, "-m", "housing_runtime", "--artifacts", str(art), "--input", "-"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Once the runtime's handler is in (before that the interpreter itself is starting, which no
    # program can intercept), numpy and onnxruntime are still loading, or the CLI waits on stdin.
    wait_until_caught(proc.pid, signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=WAIT_SECONDS)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert b"Traceback" not in err and len(err.decode().strip().splitlines()) <= 1 and out == b""


def test_with_stderr_closed_the_error_does_not_go_to_stdout(art):
    result, _ = run(art, "--input", "/nonexistent.csv", shell_redirect="2>&-")
    assert result.returncode == 2 and result.stdout == b""


@pytest.mark.parametrize("args", [("--model", "int4"), ("--chunk-rows", "0"), ("--no-such-option",)])
def test_a_bad_option_is_one_line(art, args):
    result, _ = run(art, *args)
    assert_one_line_error(result, "see --help")


def test_an_output_ending_in_a_slash_is_refused(art, tmp_path):
    result, _ = run(art, "--output", str(tmp_path / "newdir") + "/")
    assert_one_line_error(result, "names a folder")
    assert list(tmp_path.iterdir()) == []
