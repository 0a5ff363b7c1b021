"""The Makefile's graph is the code's graph: each stage's prerequisites are exactly the modules
it imports, a failed stage destroys nothing, and bad variables are one-line errors.
No dataset needed except where marked."""
from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import REPO, make

# Makefile variable -> the module whose code it lists.
STAGE_CODE = {
    "DATA_PY": "pipeline/data.py",
    "TRAIN_PY": "pipeline/train.py",
    "QUANTIZE_PY": "pipeline/quantize.py",
    "EXPORT_PY": "pipeline/export.py",
    "MANIFEST_PY": "pipeline/manifest.py",
    "COMPARE_PY": "pipeline/compare.py",
    "COMPAT_PY": "pipeline/compat/matrix.py",
    "SWEEP_PY": "pipeline/sweep.py",
    "RUNTIME_PY": "pipeline/runtime/__main__.py",
}


def module_files(dotted: str) -> set[str]:
    """The files Python runs to import a pipeline module: it, and each package __init__ on the way."""
    parts = dotted.split(".")
    files = {"/".join(parts[:i]) + "/__init__.py" for i in range(1, len(parts) + 1)}
    files.add("/".join(parts) + ".py")
    return {f for f in files if (REPO / f).is_file()}


def pipeline_imports(path: Path) -> set[str]:
    """The pipeline modules a file imports (any form: from pipeline import x, import pipeline.x,
    from pipeline.x import y, from pipeline.package import module), as repository paths."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            found |= module_files(node.module)
            for alias in node.names:  # `from package import module` imports the module
                found |= module_files(f"{node.module}.{alias.name}") - module_files(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "pipeline":
                    found |= module_files(alias.name)
    return found


def import_closure(module: str) -> set[str]:
    seen, todo = {"pipeline/__init__.py"}, [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(pipeline_imports(REPO / current) - seen)
    return seen


def make_variables(tmp_path: Path) -> dict[str, str]:
    """The Makefile's variables as make itself expands them (its database, nothing run)."""
    result = make("-pnq", "help", artifacts=tmp_path)
    values = {}
    for line in result.stdout.splitlines():
        m = re.match(r"^([A-Z_]+) :?= (.*)$", line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


@pytest.mark.parametrize("variable,module", STAGE_CODE.items())
def test_each_stage_depends_on_exactly_the_modules_it_imports(tmp_path, variable, module):
    listed = set(make_variables(tmp_path)[variable].split())
    assert listed == import_closure(module)


def test_no_stage_reads_its_paths_from_the_environment():
    """Stages take their paths as arguments; only the runtime (its CLI and server), the Spark job
    and the benchmarks default to $ARTIFACTS, because users run them by hand."""
    readers = {p.relative_to(REPO).as_posix() for p in (REPO / "pipeline").rglob("*.py")
               if "artifacts_dir()" in p.read_text()}
    assert readers <= {"pipeline/config.py", "pipeline/runtime/cli.py", "pipeline/runtime/server.py",
                       "pipeline/spark/job.py", "pipeline/benchmark.py", "pipeline/serve_benchmark.py",
                       "pipeline/spark_benchmark.py"}


def test_the_recipes_pass_every_path_as_an_argument(tmp_path):
    """`make -n all` into a fresh folder: every stage command names its files under ARTIFACTS."""
    out = tmp_path / "art"
    result = make("-n", "all", artifacts=out)
    assert result.returncode == 0, result.stderr
    stages = [line for line in result.stdout.replace("\\\n", " ").splitlines() if " -m pipeline." in line]
    assert len(stages) == 5  # data, train, quantize, export, manifest
    for line in stages:
        args = line.split(" -m ", 1)[1].split()
        paths = [w for w in args if "/" in w]
        assert paths and all(p.startswith(str(out)) for p in paths), line


@pytest.mark.parametrize("variable", ["ARTIFACTS", "PYTHON", "VENV", "BITS"])
def test_an_empty_variable_is_one_line_error(tmp_path, variable):
    result = subprocess.run(["make", "--no-print-directory", f"{variable}=", "all"], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "BITS")})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and variable in lines[0], result.stderr


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in folder.iterdir() if p.is_file()}


@pytest.mark.integration
def test_a_failed_stage_leaves_every_artifact_intact(built_copy, tmp_path):
    """The data stage re-runs (as if its code changed) and fails (no dataset, no download):
    every file from the earlier build is still there, byte for byte, and no temporary is left."""
    before = fingerprint(built_copy)
    env = {"SCIKIT_LEARN_DATA": str(tmp_path / "no-data"), "HOUSING_DOWNLOAD": "0"}
    result = make("-W", "pipeline/data.py", "all", artifacts=built_copy, env=env)
    assert result.returncode != 0 and "SCIKIT_LEARN_DATA" in result.stderr
    assert fingerprint(built_copy) == before
    # And the next make, with the data back, finds everything up to date but the data stage's
    # own outputs, which it rebuilds identically.
    assert make("-q", "all", artifacts=built_copy).returncode == 0
