"""The Makefile's graph is the code's graph: each stage's prerequisites are the modules it
imports (read from the imports by pipeline.sources), a failed stage destroys nothing, and bad
variables are one-line errors.
No dataset needed except where marked."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import REPO, make
from pipeline import sources


def make_variables(tmp_path: Path) -> dict[str, str]:
    """The Makefile's variables as make itself expands them (its database, nothing run)."""
    result = make("-pnq", "help", artifacts=tmp_path)
    values = {}
    for line in result.stdout.splitlines():
        m = re.match(r"^([A-Z_]+) :?= (.*)$", line)
        if m:
            values[m.group(1)] = m.group(2)
    return values


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_sources_follow_every_form_of_import_and_nothing_else(tmp_path):
    """pipeline.sources reads imports as Python resolves them: plain, from-package-import-module,
    relative, runtime modules and package __init__ files; a name imported from a module and a
    third-party import add no file."""
    write_tree(
        tmp_path,
        {
            "pipeline/__init__.py": "",
            "pipeline/stages/__init__.py": "",
            "pipeline/stages/a.py": "import numpy\nfrom pipeline.graphs import b\nfrom . import c\n",
            "pipeline/stages/c.py": "from pipeline.d import THING\n",
            "pipeline/d.py": "import housing_runtime.files\n",
            "pipeline/unused.py": "",
            "pipeline/graphs/__init__.py": "",
            "pipeline/graphs/b.py": "",
            "runtime/src/housing_runtime/__init__.py": "",
            "runtime/src/housing_runtime/files.py": "import os\n",
        },
    )
    paths = [p.relative_to(tmp_path).as_posix() for p in sources.closure("pipeline.stages.a", tmp_path)]
    assert paths[0] == "pipeline/stages/a.py"
    assert set(paths) == {
        "pipeline/stages/a.py",
        "pipeline/__init__.py",
        "pipeline/stages/__init__.py",
        "pipeline/stages/c.py",
        "pipeline/d.py",
        "pipeline/graphs/__init__.py",
        "pipeline/graphs/b.py",
        "runtime/src/housing_runtime/__init__.py",
        "runtime/src/housing_runtime/files.py",
    }


def test_a_stage_reruns_for_the_modules_it_runs_and_no_other(tmp_path):
    """Changing the verification tolerances re-runs the export, not training; changing the
    runtime's atomic writes re-runs every stage that writes with them."""
    variables = make_variables(tmp_path)
    assert "pipeline/graphs/tolerances.py" in variables["EXPORT_PY"].split()
    assert "pipeline/graphs/tolerances.py" not in variables["TRAIN_PY"].split()
    assert "pipeline/quantization/lattice.py" not in variables["TRAIN_PY"].split()
    for stage in ("DATA_PY", "TRAIN_PY", "QUANTIZE_PY", "EXPORT_PY", "MANIFEST_PY"):
        assert "runtime/src/housing_runtime/files.py" in variables[stage].split(), stage


def test_no_stage_reads_its_paths_from_the_environment():
    """Stages take their paths as arguments; only the runtime (its CLI, server and Spark job) and
    the benchmarks default to $ARTIFACTS, because users run them by hand."""
    readers = {
        p.relative_to(REPO).as_posix() for p in (REPO / "pipeline").rglob("*.py") if "artifacts_dir()" in p.read_text()
    }
    assert readers <= {"pipeline/config.py"}


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
    result = subprocess.run(
        ["make", "--no-print-directory", f"{variable}=", "all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "BITS")},
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and variable in lines[0], result.stderr


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.iterdir()
        if p.is_file()
    }


@pytest.mark.integration
def test_a_failed_stage_leaves_every_artifact_intact(built_copy, tmp_path):
    """The data stage re-runs (as if its code changed) and fails (no dataset, no download):
    every file from the earlier build is still there, byte for byte, and no temporary is left."""
    before = fingerprint(built_copy)
    env = {"SCIKIT_LEARN_DATA": str(tmp_path / "no-data"), "HOUSING_DOWNLOAD": "0"}
    result = make("-W", "pipeline/stages/data.py", "all", artifacts=built_copy, env=env)
    assert result.returncode != 0 and "SCIKIT_LEARN_DATA" in result.stderr
    assert fingerprint(built_copy) == before
    # And the next make, with the data back, finds everything up to date but the data stage's
    # own outputs, which it rebuilds identically.
    assert make("-q", "all", artifacts=built_copy).returncode == 0


def make_error_lines(*args: str) -> tuple[int, list[str]]:
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MAKEFLAGS"},
    )
    return result.returncode, [line for line in result.stderr.splitlines() if line.strip()]


def test_an_unsupported_platform_is_one_line_naming_the_supported_ones():
    code, lines = make_error_lines("docker", "PLATFORM=linux/s390x")
    assert code != 0 and len(lines) == 1, lines
    assert "linux/s390x is not supported" in lines[0] and "linux/amd64 or linux/arm64" in lines[0]


def test_another_architecture_without_qemu_is_one_line_naming_the_package(tmp_path):
    """Emulation is checked before anything is built; the check is pointed at a binfmt entry that
    does not exist (QEMU_BINFMT), as on a machine without qemu-user-static."""
    host = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True).stdout.strip()
    other = "linux/amd64" if host in ("aarch64", "arm64") else "linux/arm64"
    code, lines = make_error_lines(
        "docker", f"PLATFORM={other}", f"QEMU_BINFMT={tmp_path / 'absent'}", f"ARTIFACTS={tmp_path}"
    )
    assert code != 0 and len(lines) == 1, lines
    assert "qemu-user-static" in lines[0] and "binfmt-support" in lines[0]
