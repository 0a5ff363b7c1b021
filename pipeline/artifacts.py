"""Artifact writes, hashes and provenance, for the training side. Standard library only.

Every artifact is written to a temporary file in its own folder and renamed into place, so a
crash or a failed check never leaves a half-written file under the final name
(``housing_runtime.files.atomic_path``, shared with the runtime, which never imports this).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from housing_runtime.files import atomic_path, sha256_file

_PROVENANCE_PACKAGES = ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "joblib")


def write_bytes(final: Path | str, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: Path | str, text: str) -> None:
    write_bytes(final, text.encode("utf-8"))


def write_json(final: Path | str, obj: Any) -> None:
    write_text(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_commit() -> str:
    """The commit the code ran from, with '+dirty' when the tree has changes; 'unknown' outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=here.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def provenance(stage: str, inputs: dict[str, Path]) -> dict[str, Any]:
    """Who made an artifact, from what: stage, input hashes, package versions and commit.

    No timestamp on purpose: the same inputs and code give byte-identical artifacts.
    """
    return {
        "stage": stage,
        "inputs": {name: sha256_file(path) for name, path in sorted(inputs.items())},
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
