"""The artifacts' manifest: sha256 and size of every file `make all` produces.

    python -m pipeline.stages.manifest --output artifacts/manifest.json FILE...

Standard library only. The runtime checks a model against it before loading the model
(``housing_runtime.integrity``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from housing_runtime.errors import UserError, run_cli
from housing_runtime.files import sha256_file
from pipeline import artifacts


def build(files: list[Path]) -> dict:
    entries = {}
    for path in sorted(files, key=lambda p: p.name):
        if not path.is_file():
            raise UserError(f"{path} is missing; run `make all`")
        entries[path.name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return {"artifacts": entries, "git_commit": artifacts.git_commit()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.stages.manifest", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the manifest to write (JSON)")
    parser.add_argument("files", nargs="+", type=Path, help="artifacts to record")
    args = parser.parse_args(argv)
    artifacts.write_json(args.output, build(args.files))
    print(f"manifest: {len(args.files)} artifacts recorded in {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.stages.manifest")
