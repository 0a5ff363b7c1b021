"""Fixtures and collection rules. Unit tests need nothing; integration tests need the dataset
and build the pipeline into a temporary folder, never into the user's artifacts/.

HOUSING_REQUIRE_DATA=1 (set by .ci/run and the workflow) turns a missing dataset into a
failure: CI must not pass by skipping the integration tests. Spark tests (marked ``spark``) need
pyspark (`make spark-env`) and Java 17 or 21; without them they skip with the reason, and
HOUSING_REQUIRE_SPARK=1 (set by .ci/run, which installs both) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import DATASET_FILE, REPO, SHARED_DATA, dataset_available, make
from housing_runtime.spark import environment as spark_environment

# Offline machines keep scikit-learn's cache beside the repo; users with internet need nothing.
if "SCIKIT_LEARN_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["SCIKIT_LEARN_DATA"] = str(SHARED_DATA)

REQUIRE_DATA = os.environ.get("HOUSING_REQUIRE_DATA") == "1"
REQUIRE_SPARK = os.environ.get("HOUSING_REQUIRE_SPARK") == "1"
MISSING_DATA = (
    f"California Housing dataset absent: set SCIKIT_LEARN_DATA to a folder holding {DATASET_FILE} "
    "(or run `make all` once with internet)"
)


def spark_missing() -> str | None:
    """Why the Spark tests cannot run here, or None."""
    try:
        spark_environment.check_pyspark()
        spark_environment.check_java()
    except spark_environment.EnvironmentFault as fault:
        return f"Spark tests need pyspark and Java: {fault}"
    return None


def pytest_collection_modifyitems(config, items):
    skip_spark(items)
    if dataset_available():
        return
    wanted = [item for item in items if "integration" in item.keywords]
    if wanted and REQUIRE_DATA:
        raise pytest.UsageError(
            f"HOUSING_REQUIRE_DATA=1 and {len(wanted)} integration tests would skip: " + MISSING_DATA
        )
    for item in wanted:
        item.add_marker(pytest.mark.skip(reason=MISSING_DATA))


def skip_spark(items) -> None:
    wanted = [item for item in items if "spark" in item.keywords]
    reason = spark_missing() if wanted else None
    if reason is None:
        return
    if REQUIRE_SPARK:
        raise pytest.UsageError(f"HOUSING_REQUIRE_SPARK=1 and {len(wanted)} Spark tests would skip: {reason}")
    for item in wanted:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for every Spark test, configured as the job configures its own."""
    session = spark_environment.local_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """`make all` into a temporary folder, once per session."""
    if not dataset_available():
        pytest.skip(MISSING_DATA)  # only integration tests use it; see pytest_collection_modifyitems
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
