"""The data stage's user-facing errors: no dataset needed."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.error import URLError

import pytest

from helpers import REPO, run_module
from housing_runtime.errors import UserError
from pipeline.stages import data


def data_stage_args(out):
    return ("--split", str(out / "split.npz"), "--sample", str(out / "sample.csv"), "--report", str(out / "data.json"))


def test_missing_dataset_is_one_clear_line(tmp_path):
    """Runs anywhere: an empty data home with downloads forbidden."""
    out = tmp_path / "art"
    result = run_module(
        "pipeline.stages.data",
        *data_stage_args(out),
        env={"SCIKIT_LEARN_DATA": str(tmp_path / "empty"), "HOUSING_DOWNLOAD": "0"},
    )
    err = result.stderr.decode()
    assert result.returncode == 2
    assert len(err.strip().splitlines()) == 1 and "SCIKIT_LEARN_DATA" in err and "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_download_failure_is_one_clear_line(monkeypatch):
    """What a machine without internet and without the cache sees (download attempted)."""
    import sklearn.datasets

    def offline(**kwargs):
        import warnings

        warnings.warn("Retry downloading from url: https://example.invalid/data", stacklevel=1)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing", offline)
    with pytest.raises(UserError, match="SCIKIT_LEARN_DATA") as info:
        data.load_dataset()
    assert "\n" not in str(info.value) and "name resolution" in str(info.value)


def test_download_failure_from_the_command_line_prints_exactly_one_line(tmp_path):
    """The real loader, really attempting a download to an unreachable address."""
    out = tmp_path / "art"
    # An unroutable proxy makes the download fail fast, online or not.
    result = run_module(
        "pipeline.stages.data",
        *data_stage_args(out),
        env={
            "SCIKIT_LEARN_DATA": str(tmp_path / "empty"),
            "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
        },
    )
    err = result.stderr.decode()
    assert result.returncode == 2
    assert err.count("\n") == 1 and "SCIKIT_LEARN_DATA" in err and "Traceback" not in err, err
    assert not out.exists()


def test_ci_switch_turns_a_missing_dataset_into_a_failure(tmp_path):
    """HOUSING_REQUIRE_DATA=1 (.ci/run and the workflow set it): without the dataset the
    integration tests fail the run instead of skipping."""
    env = {**os.environ, "SCIKIT_LEARN_DATA": str(tmp_path / "empty"), "HOUSING_REQUIRE_DATA": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/pipeline/test_pipeline.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "HOUSING_REQUIRE_DATA=1" in result.stdout + result.stderr
    assert " passed" not in result.stdout and " skipped" not in result.stdout
    # Without the switch the same run skips, saying why.
    env.pop("HOUSING_REQUIRE_DATA")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/pipeline/test_pipeline.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "skipped" in result.stdout and "dataset absent" in result.stdout
