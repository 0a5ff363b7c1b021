"""Stage 1: load California Housing with scikit-learn's own loader and split it.

    python -m pipeline.stages.data --split artifacts/split.npz --sample artifacts/sample.csv \
                            --report artifacts/data.json

The loader honours SCIKIT_LEARN_DATA. On a connected machine it downloads and caches the data;
offline, point SCIKIT_LEARN_DATA at a folder that holds scikit-learn's cache file.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from housing_runtime.errors import UserError, run_cli
from housing_runtime.files import atomic_path
from pipeline import artifacts, config

# HOUSING_DOWNLOAD=0 forbids the download, so a missing cache fails at once (tests use it).
_DOWNLOAD_ENV = "HOUSING_DOWNLOAD"


@dataclass(frozen=True)
class Split:
    X_train: np.ndarray  # (n_train, 8) float64
    X_test: np.ndarray  # (n_test, 8) float64
    y_train: np.ndarray  # (n_train,) float64, median house value in $100,000
    y_test: np.ndarray


def load_dataset() -> tuple[np.ndarray, np.ndarray]:
    """Return X (20640, 8) and y (20640,) from scikit-learn's loader, or a one-line UserError."""
    from sklearn.datasets import fetch_california_housing, get_data_home

    download = os.environ.get(_DOWNLOAD_ENV, "1") != "0"
    try:
        # Its retry warnings would print above our one-line error; the reason is in the error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bunch = fetch_california_housing(download_if_missing=download)
    except (OSError, EOFError, ValueError, zlib.error, pickle.UnpicklingError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"California Housing data not found in {get_data_home()} and could not be downloaded "
            f"({reason}); set SCIKIT_LEARN_DATA to a folder holding cal_housing_py3.pkz, "
            "or run once with internet access"
        ) from None
    if tuple(bunch.feature_names) != config.FEATURE_NAMES:
        raise UserError(f"unexpected feature names {bunch.feature_names}; expected {list(config.FEATURE_NAMES)}")
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.float64)


def split_dataset(X: np.ndarray, y: np.ndarray) -> Split:
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=config.TEST_SIZE, random_state=config.RANDOM_STATE
    )
    return Split(X_train, X_test, y_train, y_test)


def save_split(path: Path, split: Split) -> None:
    """Write the split as an .npz that np.load reads, byte-identical from run to run.

    np.savez stamps the current time into the zip; a fixed date keeps the hash stable.
    """
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in vars(split).items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_split(path: Path) -> Split:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return Split(**{name: npz[name] for name in ("X_train", "X_test", "y_train", "y_test")})
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run `make all` (or `make data`) first") from None
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{path} is not a readable split ({type(err).__name__}); rebuild it with `make data`") from None


def sample_csv(X: np.ndarray) -> str:
    """The runtime's bundled sample: a header of feature names, then rows (shortest exact repr)."""
    lines = [",".join(config.FEATURE_NAMES)]
    lines += [",".join(repr(float(v)) for v in row) for row in X]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.stages.data", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="output: the train/test split (.npz)")
    parser.add_argument("--sample", type=Path, required=True, help="output: the runtime's sample rows (CSV)")
    parser.add_argument("--report", type=Path, required=True, help="output: dataset facts (JSON)")
    args = parser.parse_args(argv)
    X, y = load_dataset()
    split = split_dataset(X, y)
    save_split(args.split, split)
    artifacts.write_text(args.sample, sample_csv(split.X_test[: config.SAMPLE_ROWS]))
    artifacts.write_json(
        args.report,
        {
            "rows": int(X.shape[0]),
            "features": list(config.FEATURE_NAMES),
            "n_train": int(split.X_train.shape[0]),
            "n_test": int(split.X_test.shape[0]),
            "test_size": config.TEST_SIZE,
            "random_state": config.RANDOM_STATE,
            "dataset_sha256": artifacts.sha256_bytes(X.tobytes() + y.tobytes()),
            "provenance": artifacts.provenance("data", {}),
        },
    )
    print(f"data: {X.shape[0]} rows -> {split.X_train.shape[0]} train / {split.X_test.shape[0]} test in {args.split}")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.stages.data")
