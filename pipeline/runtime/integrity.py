"""A model file against the manifest that `make all` wrote: size and sha256, before loading."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import UserError
from pipeline.runtime.files import sha256_file


def check_file(manifest_path: Path, path: Path) -> None:
    """Refuse a file whose size or sha256 differs from the manifest's record of it."""
    try:
        entries = json.loads(Path(manifest_path).read_text(encoding="utf-8"))["artifacts"]
    except FileNotFoundError:
        raise UserError(f"manifest {manifest_path} not found; rebuild with `make all`, "
                        "or pass --no-verify-manifest to skip the check") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"manifest {manifest_path} is not a valid manifest; rebuild with `make all`") from None
    entry = entries.get(path.name)
    if entry is None:
        raise UserError(f"{path.name} is not listed in {manifest_path}; rebuild with `make all`")
    if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
        raise UserError(f"{path} does not match its sha256 in {manifest_path} (modified or corrupted); "
                        "rebuild with `make all`")
