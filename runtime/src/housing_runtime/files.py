"""Atomic writes and file hashes: standard library only. The training side writes its artifacts
with these too, so there is one implementation of "never a half-written file"."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def nearest_existing_folder(path: Path) -> Path:
    """The closest ancestor of ``path`` that exists (the folder a temporary file can go in
    without creating any); a file on the way is an error the caller reports."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path; rename it onto ``final`` only on success.

    The temporary file goes in the nearest existing folder, and missing folders are created
    only after success, so a failure leaves nothing behind: no file, no folder. An existing
    ``final`` keeps its permission bits; a new one gets the usual 0666 less the umask."""
    final = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=nearest_existing_folder(final))
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        mode = stat.S_IMODE(final.stat().st_mode) if final.is_file() else 0o666 & ~_umask()
        os.chmod(tmp_path, mode)  # mkstemp makes 0600
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
