"""`housing-runtime predict` (the default command): reads with ``io``, predicts with ``model``,
writes through ``io.sink``, all or nothing; progress on stderr when it is a terminal."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from housing_runtime import config, integrity, validate
from housing_runtime.errors import UserError
from housing_runtime.io.detect import detect_format, open_input
from housing_runtime.io.readers import INPUT_FORMATS, READERS
from housing_runtime.io.sink import Writer, check_output, open_output, resolve_output
from housing_runtime.model import Predictor, model_path
from housing_runtime.progress import Progress, on_stderr
from housing_runtime.validate import Batch

CHUNK_ROWS = 65536


def predict_stream(
    predictor: Predictor, batches: Iterator[Batch], out: IO[str], fmt: str, progress: Progress | None = None
) -> int:
    writer = Writer(out, fmt, predictor.variant)
    n = 0
    for batch in batches:
        writer.write(validate.check_predictions(predictor.predict(batch.X), batch.row_name))
        n += batch.X.shape[0]
        if progress is not None:
            progress.update(n)
    writer.close()
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=config.MODEL_VARIANTS,
        default=config.MODEL_VARIANTS[0],
        help="which exported model to run (default: %(default)s)",
    )
    parser.add_argument(
        "--input",
        default=None,
        metavar="PATH",
        help="CSV, JSON Lines or JSON file, or - for stdin (default: the bundled sample)",
    )
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="how to read the input (default: by extension, else by its first bytes)",
    )
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default: csv)")
    parser.add_argument("--output", default="-", metavar="PATH", help="write here, atomically (default: stdout)")
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder with the models, manifest.json and sample.csv (default: $ARTIFACTS or ./artifacts)",
    )
    parser.add_argument(
        "--no-verify-manifest", action="store_true", help="skip checking the model's sha256 against manifest.json"
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (there is none either when stderr is not a terminal)",
    )
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")


def main(args: argparse.Namespace) -> int:
    """Predict ``args.input`` into ``args.output`` (options as ``add_arguments`` declares them)."""
    art = args.artifacts or config.artifacts_dir()
    input_path = args.input if args.input is not None else str(art / config.SAMPLE_NAME)
    dest = resolve_output(args.output)
    check_output(dest, args.output, input_path)
    path = model_path(art, args.model)
    if not args.no_verify_manifest:
        integrity.check_file(art / config.MANIFEST_NAME, path)
    predictor = Predictor(path)
    raw = open_input(input_path)
    if args.input_format == "auto":
        fmt, lines_before, raw = detect_format(input_path, raw)
    else:
        fmt, lines_before = args.input_format, 0
    # Universal newlines: \n, \r\n and a lone \r all end a line; utf-8-sig drops a BOM.
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline=None)
    batches = READERS[fmt](text, predictor.feature_names, args.chunk_rows, lines_before)
    try:
        with open_output(dest, args.output) as out:
            progress = on_stderr(args.quiet)
            try:
                predict_stream(predictor, batches, out, args.format, progress)
            finally:
                progress.close()
    except UnicodeDecodeError as err:
        raise UserError(
            f"input is not UTF-8 text (byte {err.start} of a read block); save it as UTF-8 CSV or JSON"
        ) from None
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); quietly stop, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
