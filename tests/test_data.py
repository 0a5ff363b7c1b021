"""The data stage's user-facing errors: no dataset needed."""
from __future__ import annotations

from urllib.error import URLError

import pytest

from conftest import run_module
from pipeline import data
from pipeline.errors import UserError


def test_missing_dataset_is_one_clear_line(tmp_path):
    """Runs anywhere: an empty data home with downloads forbidden."""
    out = tmp_path / "art"
    result = run_module("pipeline.data", env={"SCIKIT_LEARN_DATA": str(tmp_path / "empty"),
                                               "HOUSING_DOWNLOAD": "0", "ARTIFACTS": str(out)})
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
    result = run_module("pipeline.data", env={"SCIKIT_LEARN_DATA": str(tmp_path / "empty"), "ARTIFACTS": str(out),
                                               # An unroutable proxy makes the download fail fast, online or not.
                                               "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    err = result.stderr.decode()
    assert result.returncode == 2
    assert err.count("\n") == 1 and "SCIKIT_LEARN_DATA" in err and "Traceback" not in err, err
