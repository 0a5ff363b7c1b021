"""Where predictions go: CSV or JSON text, all or nothing.

``open_output`` owns the policy: nothing reaches the destination unless the whole input was
read, validated and predicted. stdout is spooled (it cannot be taken back once written), a
regular file is written beside itself and renamed, a device or pipe is written straight.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from pipeline.runtime.files import atomic_path

# Output kept in memory up to this size before it spills to $TMPDIR; only stdout needs it,
# because stdout cannot be taken back once written.
SPOOL_BYTES = 64 << 20


@contextlib.contextmanager
def open_output(output: str) -> Iterator[IO[str]]:
    """A text stream for the predictions; released to ``output`` ("-": stdout) only if the
    block finishes without an exception."""
    if output == "-":
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8") as spool:
            yield spool
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout)
            sys.stdout.flush()
    elif Path(output).exists() and not Path(output).is_file():
        # A device or pipe (/dev/null, a FIFO): nothing to rename, write straight to it.
        with open(output, "w", encoding="utf-8") as out:
            yield out
    else:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
            yield out


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
