"""Shared fixtures. Unit tests need nothing; integration tests need the dataset and build the
pipeline into a temporary folder, never into the user's artifacts/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "scikit_learn_data"
DATASET_FILE = "cal_housing_py3.pkz"

# Offline machines keep scikit-learn's cache beside the repo; users with internet need nothing.
if "SCIKIT_LEARN_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCIKIT_LEARN_DATA"] = str(SHARED_DATA)


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs the California Housing dataset")
    config.addinivalue_line("markers", "container: needs a Docker engine and the built image")


def dataset_available() -> bool:
    from sklearn.datasets import get_data_home
    return (Path(get_data_home()) / DATASET_FILE).is_file()


def pytest_collection_modifyitems(config, items):
    if dataset_available():
        return
    skip = pytest.mark.skip(reason="California Housing dataset absent: set SCIKIT_LEARN_DATA to a folder "
                                   f"holding {DATASET_FILE} (or run once with internet)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


def run_module(module: str, *args: str, env: dict | None = None, cwd: Path = REPO,
               stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `python -m module` as a user would; returns the completed process (bytes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          input=stdin, capture_output=True, timeout=300)


def make(*args: str, artifacts: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run make in the repo with ARTIFACTS pointing at a temporary folder."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("BITS", None)
    return subprocess.run(["make", "--no-print-directory", f"ARTIFACTS={artifacts}",
                           f"PY={sys.executable}", *args],
                          cwd=REPO, env=full_env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """`make all` into a temporary folder, once per session."""
    if not dataset_available():
        pytest.skip("California Housing dataset absent")
    out = tmp_path_factory.mktemp("artifacts")
    result = make("all", artifacts=out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture()
def built_copy(built, tmp_path) -> Path:
    """A private copy of the built artifacts, for tests that modify them."""
    dest = tmp_path / "artifacts"
    shutil.copytree(built, dest)
    return dest


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.is_dir() else {}


@pytest.fixture(scope="session", autouse=True)
def users_artifacts_untouched():
    """Fail the run if any test wrote into the repo's artifacts/ (the user's)."""
    folder = REPO / "artifacts"
    before = _snapshot(folder)
    yield
    assert _snapshot(folder) == before, "a test modified the user's artifacts/ folder"
