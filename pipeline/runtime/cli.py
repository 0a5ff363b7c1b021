"""The command line: `python -m pipeline.runtime [--input PATH] [--output PATH] ...`: reads
with ``readers``, predicts with ``model``, writes through ``sink`` (all or nothing)."""
from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pipeline import config
from pipeline.errors import OneLineArgumentParser, UserError
from pipeline.runtime import integrity, validate
from pipeline.runtime.model import Predictor, model_path
from pipeline.runtime.readers import INPUT_FORMATS, READERS, detect_format, open_input
from pipeline.runtime.sink import Writer, check_output, open_output, resolve_output
from pipeline.runtime.validate import Batch

PROG = "pipeline.runtime"
CHUNK_ROWS = 65536


def predict_stream(predictor: Predictor, batches: Iterator[Batch], out: IO[str], fmt: str) -> int:
    writer = Writer(out, fmt, predictor.variant)
    n = 0
    for batch in batches:
        writer.write(validate.check_predictions(predictor.predict(batch.X), batch.row_name))
        n += batch.X.shape[0]
    writer.close()
    return n


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineArgumentParser(prog=PROG, description="Predict California Housing values with onnxruntime.")
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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the inference server; every other invocation is the batch CLI
        from pipeline.runtime import server
        return server.main(argv[1:])
    args = parse_args(argv)
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
            predict_stream(predictor, batches, out, args.format)
    except UnicodeDecodeError as err:
        raise UserError(f"input is not UTF-8 text (byte {err.start} of a read block); "
                        "save it as UTF-8 CSV or JSON") from None
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); quietly stop, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
