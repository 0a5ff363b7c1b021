"""What several test modules share: running stages and make as a user would, synthetic
artifacts and problems (no dataset needed), and reference implementations to test against."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LinearRegression

from pipeline import artifacts, config
from pipeline.graphs import build
from pipeline.quantization.qparams import QuantParams
from pipeline.stages import manifest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "scikit_learn_data"
DATASET_FILE = "cal_housing_py3.pkz"


# ---- Running the product as a user would ----------------------------------------------------


def dataset_available() -> bool:
    from sklearn.datasets import get_data_home

    return (Path(get_data_home()) / DATASET_FILE).is_file()


def run_module(
    module: str, *args: str, env: dict | None = None, cwd: Path = REPO, stdin: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m module` as a user would; returns the completed process (bytes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full_env, input=stdin, capture_output=True, timeout=300
    )


def make(*args: str, artifacts: Path, env: dict | None = None, py: str = sys.executable) -> subprocess.CompletedProcess:
    """Run make in the repo with ARTIFACTS pointing at a temporary folder."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("BITS", None)
    full_env.pop("MAKEFLAGS", None)
    return subprocess.run(
        ["make", "--no-print-directory", f"ARTIFACTS={artifacts}", f"PY={py}", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def stage_commands(make_output: str) -> set[str]:
    """The pipeline modules a `make -n` would run."""
    return {word for line in make_output.splitlines() for word in line.split() if word.startswith("pipeline.")}


# ---- Synthetic artifacts -------------------------------------------------------------------


def random_params(seed: int = 0, bits: int = 8) -> QuantParams:
    rng = np.random.default_rng(seed)
    return QuantParams(
        codes=rng.integers(0, 2**bits, size=8).astype(np.uint8),
        scale=np.float32(rng.uniform(1e-3, 1e-2)),
        zero_point=np.uint8(rng.integers(0, 2**bits)),
        intercept=np.float32(rng.normal() * 10),
        bits=bits,
    )


def california_like_rows(n: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120])
    return (rng.normal(size=(n, 8)) * scales + means).astype(np.float32)


def linear_model(coef: np.ndarray, intercept: float) -> LinearRegression:
    model = LinearRegression()
    model.coef_, model.intercept_, model.n_features_in_ = np.asarray(coef, dtype=np.float64), np.float64(intercept), 8
    return model


def write_synthetic_artifacts(out: Path, seed: int = 0) -> Path:
    """A runtime-ready artifacts folder: three models, sample.csv and manifest.json."""
    params = random_params(seed)
    out.mkdir(parents=True, exist_ok=True)
    dequant = linear_model(params.weights(), params.intercept)
    rng = np.random.default_rng(seed + 1)
    models = {
        "float": build.convert_sklearn(linear_model(rng.normal(size=8) * 0.3, -37.0)),
        "dequant": build.convert_sklearn(dequant),
        "uint8": build.build_uint8_model(params),
    }
    for variant, model in models.items():
        build.add_metadata(model, variant, 8, {"r2": 0.0}, {})
        artifacts.write_bytes(out / config.ONNX_NAMES[variant], model.SerializeToString())
    X = california_like_rows(5, seed)
    lines = [",".join(config.FEATURE_NAMES)] + [",".join(repr(float(v)) for v in row) for row in X]
    (out / "sample.csv").write_text("\n".join(lines) + "\n")
    files = [out / n for n in config.ONNX_NAMES.values()] + [out / "sample.csv"]
    artifacts.write_json(out / config.MANIFEST_NAME, manifest.build(files))
    return out


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def records(X: np.ndarray) -> list[dict]:
    return [dict(zip(config.FEATURE_NAMES, map(float, row), strict=True)) for row in X]


def dumps_lines(recs: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in recs)


# ---- Synthetic quantization problems and brute-force references -----------------------------


def synthetic_regression(seed: int = 0, n: int = 4000):
    """Features with California-like scales (one huge, two collinear), and a noisy linear target."""
    rng = np.random.default_rng(seed)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2])
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120])
    X = rng.normal(size=(n, 8)) * scales + means
    X[:, 7] = -X[:, 6] * 0.9 + rng.normal(size=n) * 0.8 - 88  # Longitude tracks Latitude
    w = np.array([0.45, 0.01, -0.12, 0.78, -2e-6, -0.0035, -0.42, -0.43])
    y = X @ w - 37 + rng.normal(size=n) * 0.7
    model = LinearRegression().fit(X, y)
    return X, y, model


def random_regression(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(coef, cov) of a least-squares fit shaped like California Housing, but random: its
    feature scales and means each jittered by up to 3x, a Latitude/Longitude-like pair whose
    collinearity is random, random weights of matching sizes, and noise."""
    rng = np.random.default_rng(seed)
    scales = np.array([2, 12, 2, 0.4, 1100, 10, 2, 2]) * np.exp(rng.uniform(-1.1, 1.1, 8))
    means = np.array([4, 28, 5, 1, 1400, 3, 35, -120]) * np.exp(rng.uniform(-1.1, 1.1, 8))
    X = rng.normal(size=(n, 8)) * scales + means
    X[:, 7] = -X[:, 6] * rng.uniform(0.5, 1.0) + rng.normal(size=n) * rng.uniform(0.2, 1.5) + means[7]
    w = np.array([0.45, 0.01, -0.12, 0.78, -2e-6, -0.0035, -0.42, -0.43]) * rng.normal(1.0, 0.5, 8)
    y = X @ w + rng.normal(size=n) * 0.7
    model = LinearRegression().fit(X, y)
    return model.coef_, np.cov(X, rowvar=False, bias=True)


def ill_conditioned_problem(seed: int, n: int = 8, condition: float = 1e7) -> tuple[np.ndarray, np.ndarray]:
    """(coef, cov): a random covariance with the given condition number (the real data's is
    about 5e7) and random weights of mixed sign and magnitude."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eigenvalues = np.geomspace(1.0, 1.0 / condition, n) * rng.uniform(0.5, 2.0)
    cov = (basis * eigenvalues) @ basis.T
    cov = (cov + cov.T) / 2
    coef = rng.normal(size=n) * rng.choice([1e-3, 1e-1, 1.0], size=n)
    return coef, cov


def brute_force_codes(gram: np.ndarray, target: np.ndarray, qmax: int) -> tuple[np.ndarray, float]:
    """min over every q in [0, qmax]^n of (q - target)^T gram (q - target), by enumeration."""
    best, best_cost = None, np.inf
    for q in itertools.product(range(qmax + 1), repeat=target.size):
        d = np.array(q) - target
        cost = d @ gram @ d
        if cost < best_cost:
            best, best_cost = np.array(q), cost
    return best, float(best_cost)


def require_image(image: str) -> None:
    """Skip the container tests when no Docker engine is reachable or ``image`` is not built;
    fail instead under HOUSING_REQUIRE_DOCKER=1 (make docker), which must not pass by skipping."""
    import pytest

    def docker_ok(*args: str) -> bool:
        try:
            return subprocess.run(["docker", *args], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    reason = None
    if not docker_ok("info"):
        reason = "no Docker engine reachable (start one or set DOCKER_HOST; `make docker` builds and tests the image)"
    elif not docker_ok("image", "inspect", image):
        reason = f"image {image} not built; run `make docker`"
    if reason:
        if os.environ.get("HOUSING_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
