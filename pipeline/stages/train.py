"""Stage 2: fit LinearRegression on the 8 raw features.

    python -m pipeline.stages.train --split artifacts/split.npz --model artifacts/model.joblib \
                             --metrics artifacts/train_metrics.json

Reproduces the published figures: test R² 0.5758, MSE 0.5559.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

from housing_runtime.errors import run_cli
from housing_runtime.files import atomic_path
from pipeline import artifacts
from pipeline.metrics import regression_metrics
from pipeline.stages import data


def fit(X_train: np.ndarray, y_train: np.ndarray) -> LinearRegression:
    return LinearRegression().fit(X_train, y_train)


def evaluate(model: LinearRegression, split: data.Split) -> dict:
    test_pred = model.predict(split.X_test)
    return {
        "test": regression_metrics(split.y_test, test_pred),
        "train": regression_metrics(split.y_train, model.predict(split.X_train)),
        "first_test_predictions": [round(float(v), 6) for v in test_pred[:5]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="input: the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="output: the fitted model (joblib)")
    parser.add_argument("--metrics", type=Path, required=True, help="output: metrics and coefficients (JSON)")
    args = parser.parse_args(argv)
    split = data.load_split(args.split)
    model = fit(split.X_train, split.y_train)
    with atomic_path(args.model) as tmp:
        joblib.dump(model, tmp)
    report = evaluate(model, split)
    report["coef"] = model.coef_.tolist()
    report["intercept"] = float(model.intercept_)
    report["provenance"] = artifacts.provenance("train", {"split": args.split})
    artifacts.write_json(args.metrics, report)
    t = report["test"]
    print(
        f"train: test R2 {t['r2']:.4f}  MSE {t['mse']:.4f}  first predictions "
        + " ".join(f"{v:.3f}" for v in report["first_test_predictions"])
    )
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.stages.train")
