"""A model file against the manifest that `make all` wrote: size and sha256, before loading."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import UserError, shown
from pipeline.runtime.files import sha256_file


def manifest_entry(manifest_path: Path, name: str) -> dict:
    """The manifest's {"sha256": str, "size": int} for ``name``; any other shape is refused."""
    invalid = UserError(f"manifest {shown(str(manifest_path))} is not a valid manifest; rebuild with `make all`")
    try:
        doc = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"manifest {shown(str(manifest_path))} not found; rebuild with `make all`, "
                        "or pass --no-verify-manifest to skip the check") from None
    except (ValueError, RecursionError):
        raise invalid from None
    except OSError as err:
        raise UserError(f"manifest {shown(str(manifest_path))} cannot be read ({err.strerror})") from None
    entries = doc.get("artifacts") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise invalid
    entry = entries.get(name)
    if entry is None:
        raise UserError(f"{shown(name)} is not listed in {shown(str(manifest_path))}; rebuild with `make all`")
    if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int) and not isinstance(entry.get("size"), bool)):
        raise invalid
    return entry


def check_file(manifest_path: Path, path: Path) -> None:
    """Refuse a file whose size or sha256 differs from the manifest's record of it."""
    entry = manifest_entry(manifest_path, path.name)
    if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
        raise UserError(f"{shown(str(path))} does not match its sha256 in {shown(str(manifest_path))} "
                        "(modified or corrupted); rebuild with `make all`")
