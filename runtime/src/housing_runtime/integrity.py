"""A model file against the manifest that `make all` wrote: size and sha256, before loading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from housing_runtime.errors import UserError, shown
from housing_runtime.files import sha256_file

# A manifest lists a dozen files: anything far larger is not one (and is not read whole).
MAX_MANIFEST_BYTES = 1 << 20


def manifest_entry(manifest_path: Path, name: str, can_skip: bool = True) -> dict:
    """The manifest's {"sha256": str, "size": int} for ``name``; any other shape is refused.
    ``can_skip``: the caller offers --no-verify-manifest, so a missing manifest mentions it."""
    invalid = UserError(f"manifest {shown(str(manifest_path))} is not a valid manifest; rebuild with `make all`")
    try:
        with open(manifest_path, "rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise invalid
        doc = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        skip = ", or pass --no-verify-manifest to skip the check" if can_skip else ""
        raise UserError(
            f"manifest {shown(str(manifest_path))} not found: the models' folder must hold the "
            f"{shown(manifest_path.name)} that `make all` writes beside them{skip}"
        ) from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise invalid from None
    except OSError as err:
        raise UserError(f"manifest {shown(str(manifest_path))} cannot be read ({err.strerror})") from None
    entries = doc.get("artifacts") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise invalid
    entry = entries.get(name)
    if entry is None:
        raise UserError(
            f"{shown(name)} is not listed in {shown(str(manifest_path))}: keep the manifest that `make all` "
            "wrote with these models beside them (or rebuild with `make all`)"
        )
    if not (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and isinstance(entry.get("size"), int)
        and not isinstance(entry.get("size"), bool)
    ):
        raise invalid
    return entry


def check_file(manifest_path: Path, path: Path) -> None:
    """Refuse a file whose size or sha256 differs from the manifest's record of it."""
    entry = manifest_entry(manifest_path, path.name)
    try:
        matches = path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]
    except OSError as err:
        raise UserError(f"model file {shown(str(path))} cannot be read ({err.strerror})") from None
    if not matches:
        raise mismatch(manifest_path, path)


def mismatch(manifest_path: Path, path: Path) -> UserError:
    return UserError(
        f"{shown(str(path))} does not match its sha256 in {shown(str(manifest_path))} "
        "(modified or corrupted); rebuild with `make all`"
    )


def read_checked(manifest_path: Path, path: Path) -> bytes:
    """The file's bytes, read once and checked against the manifest: what is checked is exactly
    what is used (the Spark job ships these bytes to its tasks, and has no way to skip the check)."""
    entry = manifest_entry(manifest_path, path.name, can_skip=False)
    try:
        with open(path, "rb") as fh:
            data = fh.read(entry["size"] + 1)
    except OSError as err:
        raise UserError(f"model file {shown(str(path))} cannot be read ({err.strerror})") from None
    if len(data) != entry["size"] or sha256_bytes(data) != entry["sha256"]:
        raise mismatch(manifest_path, path)
    return data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
