"""The artifacts' manifest: sha256 and size of every file `make all` produces.

    python -m pipeline.manifest --output artifacts/manifest.json FILE...

Standard library only: the runtime checks a model against it before loading the model.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import artifacts
from pipeline.errors import UserError, run_cli


def build(files: list[Path]) -> dict:
    entries = {}
    for path in sorted(files, key=lambda p: p.name):
        if not path.is_file():
            raise UserError(f"{path} is missing; run `make all`")
        entries[path.name] = {"sha256": artifacts.sha256_file(path), "size": path.stat().st_size}
    return {"artifacts": entries, "git_commit": artifacts.git_commit()}


def check_file(manifest_path: Path, path: Path) -> None:
    """Refuse a file whose size or sha256 differs from the manifest's record of it."""
    try:
        entries = artifacts.read_json(manifest_path)["artifacts"]
    except FileNotFoundError:
        raise UserError(f"manifest {manifest_path} not found; rebuild with `make all`, "
                        "or pass --no-verify-manifest to skip the check") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"manifest {manifest_path} is not a valid manifest; rebuild with `make all`") from None
    entry = entries.get(path.name)
    if entry is None:
        raise UserError(f"{path.name} is not listed in {manifest_path}; rebuild with `make all`")
    if path.stat().st_size != entry["size"] or artifacts.sha256_file(path) != entry["sha256"]:
        raise UserError(f"{path} does not match its sha256 in {manifest_path} (modified or corrupted); "
                        "rebuild with `make all`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.manifest", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the manifest to write (JSON)")
    parser.add_argument("files", nargs="+", type=Path, help="artifacts to record")
    args = parser.parse_args(argv)
    artifacts.write_json(args.output, build(args.files))
    print(f"manifest: {len(args.files)} artifacts recorded in {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.manifest")
