"""`make sweep`: the quantizer at every width 2 to 8 against naive rounding, as a table and a plot.

    python -m pipeline.reports.sweep --split artifacts/split.npz --model artifacts/model.joblib \\
        --json artifacts/sweep.json --markdown artifacts/sweep.md --png artifacts/sweep.png

At each width the stored parameters are those `make quantize BITS=b` would write
(``pipeline.stages.quantize.quantize``) and their metrics those of its report
(``pipeline.quantization.quant_eval.report``). "Naive" is what the reference projects ship: min-max scale,
round to nearest, the float intercept kept (``pipeline.quantization.quant_eval.naive_weights``); the JSON
also has naive rounding with the intercept refitted as ours is, to separate the two effects.
Training MSE increases are relative to the float model's training MSE.

Analysis only: no stage imports this module. matplotlib (a test requirement, never in the
runtime image) is imported only to draw the plot, and checked for before anything is computed.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from housing_runtime.errors import UserError, run_cli
from pipeline import artifacts, config
from pipeline.metrics import regression_metrics
from pipeline.quantization import quant_eval, quantizer
from pipeline.quantization.qparams import dequantize, params_dict
from pipeline.stages import data, quantize

DATASET = "California Housing"
WIDTHS = tuple(config.ALLOWED_BITS)

# The plot. Test R² runs from about -47 (naive, 3 bits) to 0.58: linear within +-R2_LINTHRESH,
# logarithmic beyond, so both ends are readable. Training MSE increases are all positive and
# span six decades (0.04% to 12,000%): the linear part is kept below the smallest of them.
R2_LINTHRESH = 1.0
MSE_LINTHRESH_PERCENT = 0.01
COLORS = {"ours": "#1f77b4", "naive": "#d62728", "naive_refit": "#7f7f7f", "float": "#2ca02c"}
PNG_DPI = 150


def naive_metrics(weights: np.ndarray, intercept: float, split: data.Split, float_train_mse: float) -> dict:
    """Test R² and relative training MSE increase of the weights with the given intercept."""
    w = weights.astype(np.float64)
    test = regression_metrics(split.y_test, split.X_test @ w + intercept)
    trn = regression_metrics(split.y_train, split.X_train @ w + intercept)
    return {
        "intercept": float(intercept),
        "test_r2": test["r2"],
        "train_mse_increase_relative": trn["mse"] / float_train_mse - 1.0,
    }


def measure(float_model, split: data.Split, bits: int, float_train_mse: float) -> dict:
    """One width: what `make quantize BITS=bits` would store and report, and naive rounding."""
    params, found = quantize.quantize(float_model.coef_, split.X_train, split.y_train, bits)
    codes, scale, zero_point = quantizer.naive_codes(float_model.coef_, bits)
    weights = dequantize(codes, scale, zero_point)  # quant_eval.naive_weights, without rounding twice
    refit = quantize.fit_intercept(weights, split.X_train, split.y_train)
    naive = {
        "codes": codes.tolist(),
        "scale": float(scale),
        "zero_point": int(zero_point),
        **naive_metrics(weights, float(float_model.intercept_), split, float_train_mse),
        "intercept_refitted": naive_metrics(weights, float(refit), split, float_train_mse),
    }
    return {**params_dict(params), "metrics": quant_eval.report(params, found, float_model, split), "naive": naive}


def summary_line(row: dict) -> str:
    m, naive = row["metrics"], row["naive"]
    return (
        f"sweep: {row['bits']} bits, scale {row['scale']:.6g}, zero point {row['zero_point']}: "
        f"train MSE +{100 * m['train_mse_increase_relative']:.4f}% "
        f"(naive +{100 * naive['train_mse_increase_relative']:.2f}%), "
        f"test R2 {m['test']['r2']:.4f} (naive {naive['test_r2']:.4f})"
    )


def _signed(value: float, digits: int = 4) -> str:
    """A number as the README prints it: a true minus sign."""
    return f"{value:.{digits}f}".replace("-", "\u2212")


def _percent(value: float) -> str:
    return f"+{100 * value:,.2f}%" if value >= 0 else _signed(100 * value, 2) + "%"


def markdown(rows: list[dict], float_test_r2: float) -> str:
    """One row per width, widest first, in the README's format ("Every bit width")."""
    lines = [
        "| BITS | scale | zero point | training MSE increase (ours) | training MSE increase (naive) "
        "| test R² (ours) | test R² (naive) | max \\|Δ prediction\\| (ours) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: -r["bits"]):
        m, naive = r["metrics"], r["naive"]
        lines.append(
            f"| {r['bits']} | {r['scale']:.6g} | {r['zero_point']} "
            f"| {_percent(m['train_mse_increase_relative'])} "
            f"| {_percent(naive['train_mse_increase_relative'])} "
            f"| {_signed(m['test']['r2'])} | {_signed(naive['test_r2'])} "
            f"| {m['max_abs_test_prediction_change']:.3f} |"
        )
    lines += [
        "",
        f"Float model: test R² {_signed(float_test_r2)}. Training MSE increases are relative to the "
        "float model's training MSE. Naive: min-max scale, round to nearest, float intercept kept. "
        "The last column is the largest change of any test prediction against the float model's, "
        "in $100,000.",
    ]
    return "\n".join(lines) + "\n"


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(
            "matplotlib cannot be imported; it draws sweep.png and is a test requirement: "
            "run `make .venv/.test-installed` (pip install -r requirements-test.txt)"
        ) from None


def _series(rows: list[dict]) -> dict[str, list[float]]:
    return {
        "bits": [r["bits"] for r in rows],
        "r2_ours": [r["metrics"]["test"]["r2"] for r in rows],
        "r2_naive": [r["naive"]["test_r2"] for r in rows],
        "r2_naive_refit": [r["naive"]["intercept_refitted"]["test_r2"] for r in rows],
        "mse_ours": [100 * r["metrics"]["train_mse_increase_relative"] for r in rows],
        "mse_naive": [100 * r["naive"]["train_mse_increase_relative"] for r in rows],
        "mse_naive_refit": [100 * r["naive"]["intercept_refitted"]["train_mse_increase_relative"] for r in rows],
    }


def _r2_label(v: float) -> str:
    return _signed(v, 3) if abs(v) < 10 else _signed(v, 1)


def _pct_label(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}%"
    return f"{v:#.2g}%" if v < 1 else f"{v:#.3g}%"


def render_png(rows: list[dict], float_test_r2: float, description: str) -> bytes:
    """The sweep as a two-panel PNG, in memory. No pyplot: a Figure on the Agg canvas touches no
    global state and needs no display. Byte-identical for the same rows and description.
    main has checked that matplotlib imports."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    s = _series(rows)
    label_box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}

    def label(ax, x, y, text, color, above):
        ax.annotate(
            text,
            (x, y),
            xytext=(0, 8 if above else -9),
            textcoords="offset points",
            ha="center",
            va="bottom" if above else "top",
            fontsize=8,
            color=color,
            bbox=label_box,
            zorder=5,
        )

    with rc_context(  # a literal, so that the keys are checked against matplotlib's rcParams
        {
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 11.5,
            "axes.titleweight": "bold",
            "axes.labelsize": 10.5,
            "legend.frameon": False,
        }
    ):
        fig = Figure(figsize=(12.5, 5.6), layout="constrained")
        FigureCanvasAgg(fig)
        ax_r2, ax_mse = fig.subplots(1, 2, sharex=True)

        ax_r2.axhline(
            float_test_r2,
            color=COLORS["float"],
            linestyle=(0, (4, 3)),
            linewidth=1.4,
            zorder=4,
            label=f"float model (test R² {float_test_r2:.4f})",
        )
        ax_r2.axhline(0, color="black", linewidth=0.6, alpha=0.5, zorder=0)
        ax_r2.plot(
            s["bits"],
            s["r2_naive_refit"],
            ":",
            marker=".",
            color=COLORS["naive_refit"],
            linewidth=1.3,
            label="naive rounding, intercept refitted",
        )
        ax_r2.plot(
            s["bits"],
            s["r2_naive"],
            "-",
            marker="s",
            color=COLORS["naive"],
            linewidth=2,
            label="naive rounding (min-max scale, round to nearest, float intercept)",
        )
        ax_r2.plot(
            s["bits"],
            s["r2_ours"],
            "-",
            marker="o",
            color=COLORS["ours"],
            linewidth=2.4,
            label="ours (training-MSE-optimal codes, scale and zero point; intercept refitted)",
        )
        ax_r2.set_yscale("symlog", linthresh=R2_LINTHRESH, linscale=1.2)
        # Room below the lowest point for its label; R² is at most 1.
        bottom = min(-2.0, 2.5 * min(s["r2_ours"] + s["r2_naive"] + s["r2_naive_refit"]))
        ax_r2.set_ylim(bottom, 1.0)
        ticks = [-0.5, 0, 0.5, 1] + [-m * 10**k for k in range(int(np.log10(-bottom)) + 1) for m in (1, 2, 5)]
        ax_r2.yaxis.set_major_locator(FixedLocator(sorted(v for v in ticks if v >= bottom)))
        ax_r2.yaxis.set_minor_locator(NullLocator())
        ax_r2.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _signed(v, 0 if v == int(v) else 1)))
        ax_r2.set_ylabel(f"test R² (symlog: linear within ±{R2_LINTHRESH:g})")
        ax_r2.set_title("Test R² (higher is better)")
        for b, ours, naive in zip(s["bits"], s["r2_ours"], s["r2_naive"], strict=True):
            label(ax_r2, b, ours, _r2_label(ours), COLORS["ours"], above=True)
            label(ax_r2, b, naive, _r2_label(naive), COLORS["naive"], above=False)

        ax_mse.plot(s["bits"], s["mse_naive_refit"], ":", marker=".", color=COLORS["naive_refit"], linewidth=1.3)
        ax_mse.plot(s["bits"], s["mse_naive"], "-", marker="s", color=COLORS["naive"], linewidth=2)
        ax_mse.plot(s["bits"], s["mse_ours"], "-", marker="o", color=COLORS["ours"], linewidth=2.4)
        ax_mse.set_yscale("symlog", linthresh=MSE_LINTHRESH_PERCENT)
        # Down to 0 only if some width is that close to the float model (then linear there).
        lowest = min(s["mse_ours"] + s["mse_naive"] + s["mse_naive_refit"])
        ax_mse.set_ylim(
            0 if lowest < MSE_LINTHRESH_PERCENT else MSE_LINTHRESH_PERCENT,
            10 ** np.ceil(np.log10(max(s["mse_naive"] + [1.0]) * 3)),
        )
        ax_mse.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}%" if v >= 1 else f"{v:g}%"))
        ax_mse.set_ylabel("training MSE increase over the float model (symlog)")
        ax_mse.set_title("Training MSE increase (lower is better)")
        for b, ours, naive in zip(s["bits"], s["mse_ours"], s["mse_naive"], strict=True):
            label(ax_mse, b, ours, _pct_label(ours), COLORS["ours"], above=False)
            label(ax_mse, b, naive, _pct_label(naive), COLORS["naive"], above=True)

        for ax in (ax_r2, ax_mse):
            ax.set_xticks(s["bits"])
            ax.set_xlim(min(s["bits"]) - 0.4, max(s["bits"]) + 0.4)
            ax.set_xlabel("bits per weight (one scale and one zero point for all 8 weights)")
            ax.grid(axis="y", color="#dddddd", linewidth=0.8)
            ax.set_axisbelow(True)
        fig.suptitle(
            f"{DATASET} linear regression, weights quantized to 2–8 bits: ours against naive rounding",
            fontsize=13.5,
            fontweight="bold",
        )
        handles, labels = ax_r2.get_legend_handles_labels()
        order = [3, 2, 1, 0]  # ours, naive, naive refitted, float
        fig.legend(
            [handles[i] for i in order], [labels[i] for i in order], loc="outside lower center", ncol=2, fontsize=9.5
        )
        buffer = io.BytesIO()
        # No "Software" (the matplotlib version) and no timestamp: the same rows give the same bytes.
        fig.savefig(
            buffer,
            format="png",
            dpi=PNG_DPI,
            facecolor="white",
            metadata={"Software": None, "Title": f"{DATASET}: quantization sweep", "Description": description},
        )
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.reports.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="input: the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="input: the model from pipeline.stages.train")
    parser.add_argument("--json", type=Path, required=True, help="output: every width's parameters and metrics")
    parser.add_argument("--markdown", type=Path, required=True, help="output: the table as Markdown")
    parser.add_argument("--png", type=Path, required=True, help="output: the plot")
    args = parser.parse_args(argv)
    require_matplotlib()
    split = data.load_split(args.split)
    float_model = quantize.load_model(args.model)
    float_train_mse = regression_metrics(split.y_train, float_model.predict(split.X_train))["mse"]
    rows = []
    for bits in WIDTHS:
        rows.append(measure(float_model, split, bits, float_train_mse))
        print(summary_line(rows[-1]), flush=True)
    float_test_r2 = rows[0]["metrics"]["float_test_r2"]
    prov = artifacts.provenance("sweep", {"split": args.split, "model": args.model})
    # Everything is rendered before the first write: a failure leaves the earlier outputs as they were.
    png = render_png(rows, float_test_r2, "pipeline.reports.sweep; provenance: " + json.dumps(prov, sort_keys=True))
    md = markdown(rows, float_test_r2)
    artifacts.write_json(
        args.json, {"dataset": DATASET, "float_test_r2": float_test_r2, "widths": rows, "provenance": prov}
    )
    artifacts.write_text(args.markdown, md)
    artifacts.write_bytes(args.png, png)
    print(f"sweep: wrote {args.json}, {args.markdown} and {args.png}")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.reports.sweep")
