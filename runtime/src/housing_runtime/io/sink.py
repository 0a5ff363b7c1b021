"""Where predictions go: CSV or JSON text, all or nothing.

``open_output`` owns the policy: nothing reaches the destination unless the whole input was
read, validated and predicted. stdout, devices and pipes are spooled (they cannot be taken
back once written) and written at the end; a regular file is written as a temporary file and
renamed on success, creating any missing folders only then. ``check_output`` refuses, before
anything is read, a destination that could never be written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from housing_runtime.errors import EnvironmentFault, UserError, shown
from housing_runtime.files import atomic_path, nearest_existing_folder
from housing_runtime.io.native import join_float32

# Output kept in memory up to this size before it spills to $TMPDIR.
SPOOL_BYTES = 64 << 20
# Errors of the machine rather than of the user's choice of path: exit 1, not 2.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}


def output_error(err: OSError, output: str) -> UserError:
    """One line for an OSError while writing ``output``."""
    where = "stdout" if output == "-" else shown(output)
    reason = err.strerror or type(err).__name__
    if err.errno in ENVIRONMENT_ERRNOS:
        return EnvironmentFault(f"cannot write the predictions to {where}: {reason}")
    return UserError(f"cannot write the predictions to {where}: {reason}; choose another --output")


# Paths that name this process's stdout: written through sys.stdout, never opened or renamed.
STDOUT_PATHS = {"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"}
# Where a path names a device or a descriptor, not a file to replace.
SPECIAL_ROOTS = ("/dev/", "/proc/")


@dataclass(frozen=True)
class Destination:
    kind: str  # "stdout", "device" (spooled, opened at the end) or "file" (atomic)
    path: Path | None  # for "file", the real file (symlinks followed, so a link is kept)


def resolve_output(output: str) -> Destination:
    """What --output names, decided before anything is read."""
    if output == "-" or output in STDOUT_PATHS:
        return Destination("stdout", None)
    if output.endswith("/"):
        raise UserError(f"--output {shown(output)} names a folder; name a file")
    try:
        real = Path(os.path.realpath(output))
        exists, is_file, is_dir = real.exists(), real.is_file(), real.is_dir()
    except OSError as err:
        raise UserError(f"--output {shown(output)}: {err.strerror}; choose another --output") from None
    if is_dir:
        raise UserError(f"--output {shown(output)} is a directory; name a file in it")
    if output.startswith(SPECIAL_ROOTS) or (exists and not is_file):
        return Destination("device", Path(output))
    return Destination("file", real)


def same_file(input_path: str, target: Path) -> bool:
    try:
        if input_path == "-":
            if sys.stdin is None:
                return False
            a, b = os.fstat(sys.stdin.fileno()), target.stat()
            return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        return os.path.samefile(input_path, target)
    except (OSError, ValueError):
        return False


def check_output(dest: Destination, output: str, input_path: str | None) -> None:
    """Refuse, before reading anything, an output that can never be written or that is the
    input itself (it would be replaced by the predictions), also when the input is stdin."""
    if dest.kind == "stdout":
        if sys.stdout is None:
            raise UserError("stdout is closed; pass --output PATH")
        return
    if dest.kind == "device":
        return
    assert dest.path is not None  # a "file" has its path
    if input_path is not None and dest.path.exists() and same_file(input_path, dest.path):
        raise UserError(
            f"--output {shown(output)} is the input file itself; it would be replaced by the "
            "predictions: choose another path"
        )
    try:
        folder = nearest_existing_folder(dest.path)
        if not folder.is_dir():
            raise UserError(f"--output {shown(output)}: {shown(str(folder))} is a file, not a folder")
        writable = os.access(folder, os.W_OK | os.X_OK)
    except OSError as err:
        raise UserError(f"--output {shown(output)}: {err.strerror}; choose another --output") from None
    if not writable:
        raise UserError(
            f"--output {shown(output)}: cannot write in {shown(str(folder))} (permission denied); "
            "choose another --output"
        )


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait while the predictions are released: once the first byte
    has gone out, the rest follows (a signal then ends the process just after)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def open_output(dest: Destination, output: str) -> Iterator[IO[str]]:
    """A text stream for the predictions; released to ``dest`` only if the block finishes
    without an exception."""
    try:
        if dest.kind == "file":
            assert dest.path is not None
            with atomic_path(dest.path) as tmp, open(tmp, "w", encoding="utf-8") as out:
                yield out
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8") as spool:
            try:
                yield spool
            except OSError as err:
                if err.errno in (errno.EROFS, errno.EACCES, errno.ENOSPC):  # spilling to $TMPDIR
                    raise EnvironmentFault(
                        f"the predictions exceed {SPOOL_BYTES >> 20} MiB and cannot be held "
                        f"in {tempfile.gettempdir()} ({err.strerror}); pass --output PATH "
                        "or give the container a writable /tmp (--tmpfs /tmp)"
                    ) from None
                raise
            spool.seek(0)
            with signals_held():
                if dest.kind == "stdout":
                    shutil.copyfileobj(spool, sys.stdout)
                    sys.stdout.flush()
                else:
                    assert dest.path is not None  # a "device" has its path
                    with open(dest.path, "w", encoding="utf-8") as device:
                        shutil.copyfileobj(spool, device)
    except BrokenPipeError:
        raise
    except OSError as err:
        raise output_error(err, output) from None


class Writer:
    """Streams predictions as CSV (header 'prediction') or JSON ({"model", "predictions"})."""

    def __init__(self, out: IO[str], fmt: str, variant: str):
        self.out, self.fmt, self.first = out, fmt, True
        if fmt == "csv":
            out.write("prediction\n")
        else:
            out.write(f'{{"model": {json.dumps(variant)}, "predictions": [')

    def write(self, pred: np.ndarray) -> None:
        # numpy's shortest round-trip text of each float32 (native or floattext: the same bytes, faster).
        if pred.size == 0:
            return
        if self.fmt == "csv":
            self.out.write(join_float32(pred, "\n"))
        else:
            self.out.write(("" if self.first else ", ") + join_float32(pred, ", ")[:-2])
        self.first = False

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("]}\n")
