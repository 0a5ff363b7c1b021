"""The source files each stage runs, read from the imports, for the Makefile's prerequisites.

A stage's files are its module, every ``pipeline`` or ``housing_runtime`` module it imports,
directly or not, and the ``__init__.py`` of each package on the way. So changing the
tolerances re-runs the export, not training, and no list of files is kept by hand.

Standard library only (``ast``, no import of the code it reads): the Makefile runs it with
the system Python before the venv exists.

    python -m pipeline.sources pipeline.stages.data pipeline.stages.train
    # -> pipeline.stages.data=pipeline/stages/data.py pipeline.stages.data=pipeline/config.py ...
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# Where each first-party top-level package's source lives, relative to the repository.
ROOTS = {"pipeline": Path("."), "housing_runtime": Path("runtime/src")}


def module_file(module: str, repo: Path) -> Path | None:
    """The file defining ``module`` (a module or a package's ``__init__.py``), or None if it is
    not first-party or does not exist (a name imported from a module, not a module)."""
    parts = module.split(".")
    root = ROOTS.get(parts[0])
    if root is None:
        return None
    base = repo / root / Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module ``path`` may import: ``import a.b``, ``from a import b`` (b may be a module)
    and relative imports, resolved against ``module``'s package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(module: str, repo: Path) -> list[Path]:
    """The files ``module`` runs, its own first, then sorted."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        for candidate in with_parents(name):
            if candidate in seen:
                continue
            path = module_file(candidate, repo)
            if path is None:
                continue
            seen[candidate] = path
            pending.extend(imported_modules(path, candidate))
    if module not in seen:
        raise SystemExit(f"pipeline.sources: no first-party module {module!r} under {repo}")
    own = seen.pop(module)
    return [own, *sorted(set(seen.values()) - {own})]


def make_words(modules: list[str], repo: Path) -> str:
    """``module=path`` words, which the Makefile filters by module."""
    return " ".join(f"{m}={p.relative_to(repo).as_posix()}" for m in modules for p in closure(m, repo))


if __name__ == "__main__":
    sys.stdout.write(make_words(sys.argv[1:], Path.cwd()) + "\n")
