"""`make optimality`: the quantizer at every width against searches that try far more
(``pipeline.reports.optimality``), printed and written into the measured folder for the docs.

    python -m benchmarks.optimality --split artifacts/split.npz --model artifacts/model.joblib --measured docs/measured

The excess-MSE columns are exact and the same on every machine; the seconds columns are this
machine's, hence a measurement with provenance (optimality.md, optimality.json).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import measured
from housing_runtime.errors import run_cli
from pipeline.reports import optimality


def main(argv: list[str] | None = None) -> int:
    parser = optimality.parser("benchmarks.optimality")
    parser.add_argument("--measured", type=Path, help="also write the table here, as optimality.md and .json")
    args = parser.parse_args(argv)
    float_mse, rows = optimality.run(args.split, args.model, args.bits)
    body = optimality.report(rows)
    print("\n" + body, end="")
    if args.measured is not None:
        notes = ["The seconds columns are this machine's; the other columns are exact."]
        prov = measured.provenance("make optimality", notes=notes)
        measured.write(args.measured, "optimality", body, {"float_train_mse": float_mse, "rows": rows}, prov)
    return 0


if __name__ == "__main__":
    run_cli(main, "benchmarks.optimality")
