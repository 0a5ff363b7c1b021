"""`make optimality`: the quantizer at every width against searches that try far more.

    python -m pipeline.reports.optimality --split artifacts/split.npz --model artifacts/model.joblib

For each width 2 to 8 it prints the excess training MSE (relative to the float model's MSE) of:
- ours: ``pipeline.quantization.quantizer.search``, with its certified gap;
- dense: a brute-force outer search, every zero point at each of DENSE_PER_OCTAVE scales per
  octave from 1/4x to 4x the min-max scale, the codes exact at each;
- exhaustive (2 and 3 bits only): every code vector and zero point, each with its own
  optimal real scale in closed form: the true optimum over all scales;
- previous: the search this project shipped before (400 scales from 0.5x to 2.5x, limited
  zero points above 5 bits);
- naive: min-max scale, round to nearest.
Analysis only: no stage imports this module.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import joblib
import numpy as np

from housing_runtime.errors import run_cli
from pipeline.quantization import lattice, quantizer
from pipeline.quantization.qparams import dequantize
from pipeline.stages import data

DENSE_PER_OCTAVE = 4096
DENSE_OCTAVES = 2  # on each side of the min-max scale
EXHAUSTIVE_MAX_BITS = 3  # 8^8 codes x 8 zero points at 3 bits; 4 bits would be 16^8 x 16


def dense_grid(
    coef: np.ndarray, bits: int, per_octave: int = DENSE_PER_OCTAVE, octaves: int = DENSE_OCTAVES
) -> np.ndarray:
    """float32 scales naive_scale * 2**(k / per_octave) for |k| <= octaves * per_octave."""
    _, naive_scale, _ = quantizer.naive_codes(coef, bits)
    k = np.arange(-octaves * per_octave, octaves * per_octave + 1)
    return (float(naive_scale) * 2.0 ** (k / per_octave)).astype(np.float32)


def best_over_scales(coef: np.ndarray, cov: np.ndarray, bits: int, scales: np.ndarray) -> float:
    """Exact best excess over the given scales, every zero point and every code at each.

    Seeded with the naive pair, which only prunes: the result is the grid's exact optimum or
    the naive pair's excess, whichever is lower.
    """
    qmax = 2**bits - 1
    lat = lattice.Lattice.of(cov)
    codes, naive_scale, naive_zero = quantizer.naive_codes(coef, bits)
    best_m = codes.astype(np.int64) - naive_zero
    best = quantizer.excess_mse(dequantize(codes, naive_scale, naive_zero), coef, cov)
    for scale in scales:
        s = float(scale)
        found = lat.closest_offsets(coef / s, qmax, bound=best / (s * s), start=best_m)
        if found is not None:
            cost = quantizer.excess_mse(dequantize(found[0].astype(np.float32), scale, 0), coef, cov)
            if cost < best:
                best, best_m = cost, found[0]
    return best


def exhaustive_optimum(coef: np.ndarray, cov: np.ndarray, bits: int, chunk: int = 1 << 20) -> float:
    """min over every code vector q, zero point z and real scale s > 0 of the excess.

    For m = q - z the best scale is s* = m'Cw / m'Cm, leaving w'Cw - (m'Cw)^2 / m'Cm.
    """
    qmax = 2**bits - 1
    n = coef.size
    cw = cov @ coef
    total = float(coef @ cw)
    best = total  # m = 0, or any m with s* <= 0: the weights all vanish
    all_codes = np.indices((qmax + 1,) * n).reshape(n, -1).T.astype(np.float64)
    for z in range(qmax + 1):
        for lo in range(0, len(all_codes), chunk):
            m = all_codes[lo : lo + chunk] - z
            mcw = m @ cw
            mcm = np.einsum("ij,jk,ik->i", m, cov, m)
            ok = (mcw > 0) & (mcm > 0)
            if ok.any():
                best = min(best, total - float(np.max(mcw[ok] ** 2 / mcm[ok])))
    return max(best, 0.0)


def previous_grid(coef: np.ndarray, cov: np.ndarray, bits: int) -> float:
    """The search this project shipped before: 400 scales from 0.5x to 2.5x the min-max scale;
    every zero point up to 5 bits, above that only factors >= 1 and three zero points."""
    qmax = 2**bits - 1
    lo, hi = min(float(coef.min()), 0.0), max(float(coef.max()), 0.0)
    minmax = (hi - lo) / qmax
    best = math.inf
    for factor in np.geomspace(0.5, 2.5, 400):
        scale = np.float32(minmax * factor)
        if qmax < 32:
            zs: range | list[int] = range(qmax + 1)
        elif factor < 1.0:
            continue
        else:
            z_low, z_high = -lo / float(scale), qmax - hi / float(scale)
            zs = sorted(
                {int(np.clip(z, 0, qmax)) for z in (np.ceil(z_low), np.floor(z_high), np.rint((z_low + z_high) / 2))}
            )
        s = float(scale)
        for z in zs:
            codes = lattice.closest_codes(cov * s * s, coef / s + z, qmax)
            best = min(best, quantizer.excess_mse(dequantize(codes, scale, z), coef, cov))
    return best


def measure(coef: np.ndarray, cov: np.ndarray, bits: int, float_mse: float) -> dict:
    """One width: every search's excess, relative to the float model's training MSE."""
    started = time.perf_counter()
    ours = quantizer.search(coef, cov, bits)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    dense = best_over_scales(coef, cov, bits, dense_grid(coef, bits))
    dense_seconds = time.perf_counter() - started
    codes, scale, zero = quantizer.naive_codes(coef, bits)
    row = {
        "bits": bits,
        "ours": ours.excess_mse / float_mse,
        "ours_gap": ours.gap_bound / float_mse,
        "ours_seconds": ours_seconds,
        "scale": float(ours.scale),
        "zero_point": int(ours.zero_point),
        "dense": dense / float_mse,
        "dense_seconds": dense_seconds,
        "exhaustive": None,
        "previous": previous_grid(coef, cov, bits) / float_mse,
        "naive": quantizer.excess_mse(dequantize(codes, scale, zero), coef, cov) / float_mse,
    }
    if bits <= EXHAUSTIVE_MAX_BITS:
        row["exhaustive"] = exhaustive_optimum(coef, cov, bits) / float_mse
    return row


def margin(row: dict) -> float:
    """Ours minus the best of the references (negative: ours is better)."""
    return row["ours"] - min(row["dense"], row["exhaustive"] if row["exhaustive"] is not None else math.inf)


def markdown(rows: list[dict]) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.4f}%"

    def small_pct(v):
        return f"{100 * v:.1e}%"

    lines = [
        "| BITS | ours | certified gap ≤ | dense brute force | exhaustive | ours − best reference "
        "| previous grid | naive | ours (s) | dense (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bits']} | {pct(r['ours'])} | {small_pct(r['ours_gap'])} | {pct(r['dense'])} | "
            f"{pct(r['exhaustive'])} | {100 * margin(r):+.1e}% | {pct(r['previous'])} | {pct(r['naive'])} | "
            f"{r['ours_seconds']:.2f} | {r['dense_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def run(split_path: Path, model_path: Path, bits_list: list[int]) -> tuple[float, list[dict]]:
    """The float model's training MSE, and ``measure``'s row for each width."""
    split = data.load_split(split_path)
    model = joblib.load(model_path)
    cov = np.cov(split.X_train, rowvar=False, bias=True)
    float_mse = float(np.mean((model.predict(split.X_train) - split.y_train) ** 2))
    rows = []
    for bits in bits_list:
        rows.append(measure(model.coef_, cov, bits, float_mse))
        print(f"optimality: {bits} bits done", flush=True)
    return float_mse, rows


def report(rows: list[dict]) -> str:
    """The table, with what it says of the worst width."""
    worst = max(rows, key=margin)
    return (
        "Excess training MSE over the float model's, relative to it (lower is better):\n\n"
        + markdown(rows)
        + f"\nOurs minus the best reference, worst width ({worst['bits']} bits): "
        f"{100 * margin(worst):+.2e}% of the float model's training MSE.\n"
    )


def parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="the split from pipeline.stages.data")
    parser.add_argument("--model", type=Path, required=True, help="the model from pipeline.stages.train")
    parser.add_argument("--bits", type=int, nargs="+", default=list(range(8, 1, -1)))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser("pipeline.reports.optimality").parse_args(argv)
    _, rows = run(args.split, args.model, args.bits)
    print("\n" + report(rows), end="")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.reports.optimality")
