"""`make optimality`: the quantizer at every width against searches that try far more
(``pipeline.reports.optimality``), printed and written into the measured folder for the docs.

    python -m benchmarks.optimality --split artifacts/split.npz --model artifacts/model.joblib --measured docs/measured

The excess-MSE columns are exact and the same on every machine; the seconds columns are this
machine's, hence a measurement with provenance (optimality.md, optimality.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np

from benchmarks import measured
from housing_runtime.errors import run_cli
from pipeline.reports import optimality
from pipeline.stages import data


def optimality_markdown(rows: list[dict]) -> str:
    worst = max(rows, key=optimality.margin)
    return (
        "Excess training MSE over the float model's, relative to it (lower is better):\n\n"
        + optimality.markdown(rows)
        + f"\nOurs minus the best reference, worst width ({worst['bits']} bits): "
        f"{100 * optimality.margin(worst):+.2e}% of the float model's training MSE.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.optimality", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="the model from pipeline.stages.train")
    parser.add_argument("--bits", type=int, nargs="+", default=list(range(8, 1, -1)))
    parser.add_argument("--measured", type=Path, help="also write the table here, as optimality.md and .json")
    args = parser.parse_args(argv)
    split = data.load_split(args.split)
    model = joblib.load(args.model)
    cov = np.cov(split.X_train, rowvar=False, bias=True)
    float_mse = float(np.mean((model.predict(split.X_train) - split.y_train) ** 2))
    rows = []
    for bits in args.bits:
        rows.append(optimality.measure(model.coef_, cov, bits, float_mse))
        print(f"optimality: {bits} bits done", flush=True)
    body = optimality_markdown(rows)
    print("\n" + body, end="")
    if args.measured is not None:
        notes = ["The seconds columns are this machine's; the other columns are exact."]
        prov = measured.provenance("make optimality", notes=notes)
        measured.write(args.measured, "optimality", body, {"float_train_mse": float_mse, "rows": rows}, prov)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks.optimality")
