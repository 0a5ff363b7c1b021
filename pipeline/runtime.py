"""The slim predictor: onnxruntime and numpy only, no scikit-learn, no pickle.

    python -m pipeline.runtime                              # predicts the bundled sample rows
    python -m pipeline.runtime --input homes.csv --model float --format json
    cat homes.csv | python -m pipeline.runtime --input - --output preds.csv

Inputs: CSV with a header naming the 8 features (any column order), JSON Lines of objects,
or a JSON document: a list of records or {"instances": [...]}. Values are cast to float32.
CSV and JSON Lines stream in chunks, so memory stays flat however long the input is.

All or nothing: the whole input is validated and predicted before any output is released.
A bad row anywhere gives one line on stderr naming the line and column, exit code 2, and
no output at all (--output is written to a temporary file and renamed only on success).

Imports only the standard library, numpy and onnxruntime (a test checks this).
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO
from collections.abc import Callable, Iterator

# Telemetry off before onnxruntime loads: nothing is sent, nothing is written, so the image
# runs with --read-only --network none.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from pipeline import artifacts, config, manifest  # noqa: E402  (standard library only)
from pipeline.errors import UserError, run_cli  # noqa: E402

PROG = "pipeline.runtime"
CHUNK_ROWS = 65536
# Output kept in memory up to this size before it spills to $TMPDIR; only stdout needs it,
# because stdout cannot be taken back once written.
SPOOL_BYTES = 64 << 20
INPUT_FORMATS = ("auto", "csv", "jsonl", "json")


# ---- Model ---------------------------------------------------------------------------------

class Predictor:
    """An onnxruntime session on one model file, with its feature order from its metadata."""

    def __init__(self, path: Path):
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        try:
            # Default options on purpose: predictions equal what anyone's default session gives.
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{path} is not a loadable ONNX model ({first[:200]}); "
                            "rebuild it with `make all`") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        names = json.loads(meta["feature_names"]) if "feature_names" in meta else list(config.FEATURE_NAMES)
        self.feature_names: tuple[str, ...] = tuple(names)
        self.input_name = self.session.get_inputs()[0].name
        self.variant = meta.get("variant", path.stem)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 8) -> (n,) float32; the input is cast to float32 as the models expect."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(X, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def model_path(artifacts_dir: Path, variant: str) -> Path:
    path = artifacts_dir / config.ONNX_NAMES[variant]
    if not path.is_file():
        raise UserError(f"model file {path} not found; run `make all`, or pass --artifacts DIR")
    return path


# ---- Input parsing: every reader yields float64 chunks of shape (k, 8) in model order -----

def column_order(header: list[str], features: tuple[str, ...]) -> list[int]:
    """Index in ``header`` of each feature; a one-line error for any column problem."""
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for i, name in enumerate(names, start=1):
        if name in seen:
            raise UserError(f"duplicate column {name!r} (column {i}); each feature must appear once")
        seen.add(name)
        if not name:
            raise UserError(f"column {i} has an empty name; expected the features {', '.join(features)}")
        if name not in features:
            raise UserError(f"unknown column {name!r} (column {i}); expected exactly {', '.join(features)}")
    missing = [f for f in features if f not in seen]
    if missing:
        raise UserError(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                        f"expected exactly {', '.join(features)}")
    return [names.index(f) for f in features]


def read_csv(stream: IO[str], features: tuple[str, ...], chunk_rows: int) -> Iterator[np.ndarray]:
    header_line = stream.readline()
    line_no = 1  # lines consumed so far, the header's included
    while header_line and not header_line.strip():
        header_line = stream.readline()
        line_no += 1
    if not header_line:
        raise UserError("input is empty; expected a CSV header naming the 8 features, then rows")
    header = next(csv.reader([header_line]))
    order = column_order(header, features)
    rows_seen = 0
    while True:
        lines = list(itertools.islice(stream, chunk_rows))
        if not lines:
            break
        chunk = parse_csv_chunk(lines, len(header), line_no)
        if chunk.shape[0]:
            bad = first_non_finite(chunk)
            if bad is not None:
                row, col = bad
                data_lines = [line_no + 1 + i for i, line in enumerate(lines) if line.strip()]
                raise UserError(f"line {data_lines[row]}, column {header[col].strip()!r}: {chunk[row, col]} "
                                "is not a finite number (NaN and infinity cannot be predicted)")
            rows_seen += chunk.shape[0]
            yield chunk[:, order]
        line_no += len(lines)
    if rows_seen == 0:
        raise UserError("the CSV has a header but no rows; nothing to predict")


def parse_csv_chunk(lines: list[str], n_cols: int, first_line_no: int) -> np.ndarray:
    """Fast path: numpy's C parser. On any error, rescan the chunk to name the exact line."""
    text = "".join(lines)
    if not text.strip():
        return np.empty((0, n_cols))
    try:
        arr = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2,
                         comments=None, quotechar='"')
    except ValueError as err:
        locate_csv_error(lines, n_cols, first_line_no)
        # numpy is stricter than float() (it refuses '1_000', for one): report its own words.
        raise UserError(f"lines {first_line_no + 1}-{first_line_no + len(lines)}: {err}") from None
    if arr.shape[1] != n_cols:
        locate_csv_error(lines, n_cols, first_line_no)
        raise UserError(f"rows have {arr.shape[1]} fields, expected {n_cols} (one per header column)")
    return arr


def locate_csv_error(lines: list[str], n_cols: int, first_line_no: int) -> None:
    """Slow path, only after the fast parser failed: raise a UserError for the first bad line."""
    for offset, fields in enumerate(csv.reader(lines)):
        line_no = first_line_no + 1 + offset
        if not fields or all(not f.strip() for f in fields) and len(fields) <= 1:
            continue  # blank line
        if len(fields) != n_cols:
            raise UserError(f"line {line_no} has {len(fields)} fields, expected {n_cols} (ragged row)")
        for col, value in enumerate(fields, start=1):
            if not parses_as_number(value):
                raise UserError(f"line {line_no}, column {col}: {value.strip()[:40]!r} is not a number")


def parses_as_number(value: str) -> bool:
    """What the fast path's parser accepts (stricter than float(): no '1_000', no '')."""
    if not value.strip():
        return False
    try:
        np.loadtxt([value], dtype=np.float64, comments=None)
    except ValueError:
        return False
    return True


def first_non_finite(chunk: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first NaN or infinity in a chunk, or None (one vectorized test)."""
    if np.isfinite(chunk).all():
        return None
    row, col = np.argwhere(~np.isfinite(chunk))[0]
    return int(row), int(col)


def records_to_array(records: list, features: tuple[str, ...], where: Callable[[int], str]) -> np.ndarray:
    """JSON records (objects keyed by feature) -> (k, 8) float64, checking every record.

    where(i) names record i of this list for an error message ("line 7", "record 3").
    """
    feature_set = set(features)
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise UserError(f"{where(i)}: expected an object with the 8 feature names, got {type(rec).__name__}")
        if rec.keys() != feature_set:
            missing = [f for f in features if f not in rec]
            unknown = [k for k in rec if k not in feature_set]
            what = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                           f"unknown {', '.join(map(str, unknown))}" if unknown else ""]))
            raise UserError(f"{where(i)}: {what}; expected exactly {', '.join(features)}")
        row = []
        for name in features:
            value = rec[name]
            # bool is an int subclass in Python; true/false are not house data.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where(i)}, field {name!r}: {json.dumps(value)[:40]} is not a number")
            if not math.isfinite(value):
                raise UserError(f"{where(i)}, field {name!r}: {value} is not a finite number "
                                "(NaN and infinity cannot be predicted)")
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, len(features))


def read_jsonl(stream: IO[str], features: tuple[str, ...], chunk_rows: int) -> Iterator[np.ndarray]:
    line_no = 0
    rows_seen = 0
    while True:
        lines = list(itertools.islice(stream, chunk_rows))
        if not lines:
            break
        records, numbers = [], []
        for offset, line in enumerate(lines, start=line_no + 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(f"line {offset}: bad JSON ({err.msg} at column {err.colno})") from None
            numbers.append(offset)
        line_no += len(lines)
        if records:
            chunk = records_to_array(records, features, lambda i, numbers=numbers: f"line {numbers[i]}")
            rows_seen += chunk.shape[0]
            yield chunk
    if rows_seen == 0:
        raise UserError("input is empty; expected JSON Lines, one object with the 8 features per line")


def read_json_document(stream: IO[str], features: tuple[str, ...], chunk_rows: int) -> Iterator[np.ndarray]:
    """A whole JSON document (loaded at once): a list of records or {"instances": [...]}."""
    text = stream.read()
    if not text.strip():
        raise UserError("input is empty; expected a JSON list of records or {\"instances\": [...]}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"bad JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    if isinstance(doc, dict) and set(doc) == {"instances"}:
        doc = doc["instances"]
    if not isinstance(doc, list):
        keys = f" with keys {', '.join(list(doc)[:5])}" if isinstance(doc, dict) else ""
        raise UserError(f"expected a JSON list of records or {{\"instances\": [...]}}, got {type(doc).__name__}{keys}")
    if not doc:
        raise UserError("the JSON input has no records; nothing to predict")
    for start in range(0, len(doc), chunk_rows):
        yield records_to_array(doc[start:start + chunk_rows], features,
                               lambda i, start=start: f"record {start + i + 1}")


def detect_format(path: str, stream: io.BufferedReader) -> str:
    """By extension; for stdin or an unknown extension, by the first bytes."""
    suffix = Path(path).suffix.lower() if path != "-" else ""
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    head = stream.peek(65536)[:65536].lstrip()
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        first_line = head.split(b"\n", 1)[0]
        try:
            obj = json.loads(first_line)
        except ValueError:
            return "json"  # a pretty-printed document spans several lines
        return "json" if isinstance(obj, dict) and "instances" in obj else "jsonl"
    return "csv"


def open_input(path: str) -> io.BufferedReader:
    if path == "-":
        stdin = sys.stdin.buffer
        return stdin if isinstance(stdin, io.BufferedReader) else io.BufferedReader(stdin)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"input file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"input {path} is a directory; pass a CSV or JSON file, or - for stdin") from None
    except PermissionError:
        raise UserError(f"input file {path} is not readable (permission denied)") from None


READERS = {"csv": read_csv, "jsonl": read_jsonl, "json": read_json_document}


# ---- Output --------------------------------------------------------------------------------

def format_values(pred: np.ndarray) -> list[str]:
    # numpy's shortest round-trip repr of each float32, vectorized.
    return pred.astype(np.float32).astype(str).tolist()


class Writer:
    """Streams predictions as CSV (header 'prediction') or JSON ({"model", "predictions"})."""

    def __init__(self, out: IO[str], fmt: str, variant: str):
        self.out, self.fmt, self.first = out, fmt, True
        if fmt == "csv":
            out.write("prediction\n")
        else:
            out.write(f'{{"model": {json.dumps(variant)}, "predictions": [')

    def write(self, pred: np.ndarray) -> None:
        values = format_values(pred)
        if not values:
            return
        if self.fmt == "csv":
            self.out.write("\n".join(values) + "\n")
        else:
            self.out.write(("" if self.first else ", ") + ", ".join(values))
        self.first = False

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("]}\n")


def predict_stream(predictor: Predictor, chunks: Iterator[np.ndarray], out: IO[str], fmt: str) -> int:
    writer = Writer(out, fmt, predictor.variant)
    n = 0
    for chunk in chunks:
        writer.write(predictor.predict(chunk))
        n += chunk.shape[0]
    writer.close()
    return n


# ---- Command line --------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Predict California Housing values with onnxruntime.")
    parser.add_argument("--model", choices=config.MODEL_VARIANTS, default=config.MODEL_VARIANTS[0],
                        help="which exported model to run (default: %(default)s)")
    parser.add_argument("--input", default=None, metavar="PATH",
                        help="CSV, JSON Lines or JSON file, or - for stdin (default: the bundled sample)")
    parser.add_argument("--input-format", choices=INPUT_FORMATS, default="auto",
                        help="how to read the input (default: by extension, else by its first bytes)")
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default: csv)")
    parser.add_argument("--output", default="-", metavar="PATH",
                        help="write here, atomically (default: stdout)")
    parser.add_argument("--artifacts", type=Path, default=None, metavar="DIR",
                        help="folder with the models, manifest.json and sample.csv "
                             "(default: $ARTIFACTS or ./artifacts)")
    parser.add_argument("--no-verify-manifest", action="store_true",
                        help="skip checking the model's sha256 against manifest.json")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    art = args.artifacts or config.artifacts_dir()
    path = model_path(art, args.model)
    if not args.no_verify_manifest:
        manifest.check_file(art / config.MANIFEST_NAME, path)
    predictor = Predictor(path)
    input_path = args.input if args.input is not None else str(art / config.SAMPLE_NAME)
    raw = open_input(input_path)
    fmt = args.input_format if args.input_format != "auto" else detect_format(input_path, raw)
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    chunks = READERS[fmt](text, predictor.feature_names, args.chunk_rows)
    try:
        if args.output == "-":
            # Spool so that an error on the last row still leaves stdout untouched.
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8") as spool:
                predict_stream(predictor, chunks, spool, args.format)
                spool.seek(0)
                shutil.copyfileobj(spool, sys.stdout)
                sys.stdout.flush()
        elif Path(args.output).exists() and not Path(args.output).is_file():
            # A device or pipe (/dev/null, a FIFO): nothing to rename, write straight to it.
            with open(args.output, "w", encoding="utf-8") as out:
                predict_stream(predictor, chunks, out, args.format)
        else:
            with artifacts.atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8") as out:
                predict_stream(predictor, chunks, out, args.format)
    except UnicodeDecodeError as err:
        raise UserError(f"input is not UTF-8 text (byte {err.start} of a read block); "
                        "save it as UTF-8 CSV or JSON") from None
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); quietly stop, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
