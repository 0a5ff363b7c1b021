"""Stage 3: quantize the coefficient vector to BITS-bit codes with ONE scale and ONE zero point.

    python -m pipeline.quantize    # BITS=8 by default; writes quant_params.{joblib,json}
                                   # and model_dequant.joblib (the dequantized model)

What is stored: uint8 codes q, a float32 scale s, a uint8 zero point z, and a float32
intercept. The weights are w_hat = s * (q - z), exactly as ONNX DequantizeLinear computes them.

Why naive rounding fails here: Population's weight is ~2e-6 against values ~1,400, and
Latitude/Longitude terms (~-15 and ~+52) nearly cancel the intercept (-37), so a tiny weight
error becomes a large prediction error. The method:

1. For a linear model fitted by least squares, the training MSE of any other weights w_hat
   with the best intercept is MSE(w) + (w_hat - w)^T C (w_hat - w), C the feature covariance.
   So the codes are chosen to minimise that quadratic form, not |w_hat - w| per weight.
2. For fixed (s, z) that is a box-constrained integer least-squares problem in 8 unknowns,
   solved exactly by Schnorr-Euchner sphere decoding (branch and bound on a Cholesky factor).
3. The scale and zero point are searched: a geometric grid of scales around the min-max
   scale, each with the zero points that place the weights inside the code range.
4. The intercept is recomputed after rounding: b = mean(y) - mean(X) @ w_hat.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import joblib
import numpy as np
from sklearn.linear_model import LinearRegression

from pipeline import artifacts, config, data, train
from pipeline.errors import run_cli
from pipeline.metrics import regression_metrics

PARAMS_JOBLIB = "quant_params.joblib"
PARAMS_JSON = "quant_params.json"
DEQUANT_MODEL_NAME = "model_dequant.joblib"

# Scale search: a geometric grid from SCALE_LO to SCALE_HI times the min-max scale. Below 1
# some weights clip, which pays at 2-3 bits (measured: 3 bits best at 0.72x); above 1 the grid
# is coarser but may sit better on the large weights (4 bits best at 1.85x).
SCALE_LO, SCALE_HI, SCALE_STEPS = 0.5, 2.5, 400
# Up to this many codes every zero point is tried; above it, only those that keep the extreme
# weights in range (the clipped ones are slow to solve and, with that many codes, never win).
ALL_ZERO_POINTS_MAX_CODES = 32


@dataclass(frozen=True)
class QuantParams:
    codes: np.ndarray      # (8,) uint8, each in [0, 2**bits - 1]
    scale: np.float32
    zero_point: np.uint8
    intercept: np.float32
    bits: int

    def weights(self) -> np.ndarray:
        """Dequantized weights, float32, bit-identical to ONNX DequantizeLinear's output."""
        return dequantize(self.codes, self.scale, self.zero_point)


def dequantize(codes: np.ndarray, scale: np.float32, zero_point: np.uint8) -> np.ndarray:
    # DequantizeLinear: (float32(q) - float32(z)) * scale, all in float32.
    return (codes.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def closest_codes(gram: np.ndarray, target: np.ndarray, qmax: int) -> np.ndarray:
    """Exact minimiser of (q - target)^T gram (q - target) over integers 0 <= q_i <= qmax.

    Schnorr-Euchner sphere decoding on a reordered Cholesky factor; see _sphere_decode.
    """
    order = _search_order(gram)
    codes = _sphere_decode(gram[np.ix_(order, order)], target[order], qmax)
    result = np.empty_like(codes)
    result[order] = codes
    return result


def _search_order(gram: np.ndarray) -> np.ndarray:
    """Coordinates ordered so the search starts where the lattice is best determined.

    The search fixes the last coordinate first; pruning is strongest when its Cholesky
    diagonal (its variance conditional on the coordinates still free) is large. Greedily
    pick, from the back, the coordinate whose conditional variance is largest.
    """
    remaining = list(range(gram.shape[0]))
    back = []
    while remaining:
        sub = gram[np.ix_(remaining, remaining)]
        cond_var = 1.0 / np.diag(np.linalg.inv(sub))
        back.append(remaining.pop(int(np.argmax(cond_var))))
    return np.array(back[::-1])


def _coordinate_descent(gram: np.ndarray, target: np.ndarray, qmax: int) -> np.ndarray:
    """A good feasible point to start the exact search from: the rounded, clipped target,
    then each coordinate set to its best integer given the others until nothing changes.
    When weights are clipped, plain rounding is far off and would leave pruning weak."""
    q = np.clip(np.rint(target), 0, qmax)
    for _ in range(100):
        changed = False
        for i in range(q.size):
            d = q - target
            center = target[i] - (gram[i] @ d - gram[i, i] * d[i]) / gram[i, i]
            v = min(max(round(center), 0), qmax)
            if v != q[i]:
                q[i], changed = v, True
        if not changed:
            break
    return q


def _sphere_decode(gram: np.ndarray, target: np.ndarray, qmax: int) -> np.ndarray:
    """Depth-first over coordinates from last to first, values visited in order of distance
    from the conditional optimum, pruned by the best cost so far. Starts from the rounded,
    clipped target as the incumbent, so hopeless branches are cut from the first step."""
    n = target.size
    R = np.linalg.cholesky(gram).T  # upper triangular, gram = R^T R
    diag = np.diag(R).copy()
    off = R / diag[:, None]         # row k scaled so that off[k, k] == 1
    best = _coordinate_descent(gram, target, qmax)
    d0 = best - target
    best_cost = float(d0 @ gram @ d0) * (1 + 1e-12)
    q = np.zeros(n)
    err = np.zeros(n)               # q - target, filled from the last coordinate down

    def descend(k: int, cost: float) -> None:
        nonlocal best_cost, best
        center = target[k] - float(off[k, k + 1:] @ err[k + 1:])
        nearest = int(min(max(round(center), 0), qmax))
        # Visit nearest, then alternate sides; a side stops once its cost reaches best_cost,
        # since values farther out on that side only cost more.
        up, down = nearest, nearest - 1
        while up <= qmax or down >= 0:
            if down < 0 or (up <= qmax and up - center <= center - down):
                v, up = up, up + 1
                stop_side = "up"
            else:
                v, down = down, down - 1
                stop_side = "down"
            c = cost + (diag[k] * (v - center)) ** 2
            if c >= best_cost:
                if stop_side == "up":
                    up = qmax + 1
                else:
                    down = -1
                continue
            q[k] = v
            err[k] = v - target[k]
            if k == 0:
                best_cost, best = c, q.copy()
            else:
                descend(k - 1, c)

    descend(n - 1, 0.0)
    return best.astype(np.uint8)


def excess_mse(weights: np.ndarray, coef: np.ndarray, cov: np.ndarray) -> float:
    """Training MSE added by replacing the least-squares weights coef with weights."""
    d = weights.astype(np.float64) - coef
    return float(d @ cov @ d)


def candidate_grids(coef: np.ndarray, bits: int) -> list[tuple[np.float32, int]]:
    """(scale, zero point) pairs to try: scales around the min-max scale and, for each, every
    zero point (few codes) or the zero points that keep the extreme weights in range."""
    qmax = 2 ** bits - 1
    lo, hi = min(float(coef.min()), 0.0), max(float(coef.max()), 0.0)
    minmax_scale = (hi - lo) / qmax
    pairs = []
    for factor in np.geomspace(SCALE_LO, SCALE_HI, SCALE_STEPS):
        scale = np.float32(minmax_scale * factor)
        if qmax < ALL_ZERO_POINTS_MAX_CODES:
            pairs += [(scale, z) for z in range(qmax + 1)]
            continue
        if factor < 1.0:
            continue
        z_low = -lo / float(scale)                 # smallest z that represents coef.min()
        z_high = qmax - hi / float(scale)          # largest z that represents coef.max()
        zs = {int(np.ceil(z_low)), int(np.floor(z_high)), int(np.rint((z_low + z_high) / 2))}
        pairs += [(scale, int(np.clip(z, 0, qmax))) for z in sorted(zs)]
    return pairs


def fit_intercept(weights: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.float32:
    """The least-squares intercept for fixed weights: corrects the bias rounding introduced."""
    return np.float32(y.mean() - X.mean(axis=0) @ weights.astype(np.float64))


def quantize(coef: np.ndarray, X_train: np.ndarray, y_train: np.ndarray, bits: int) -> QuantParams:
    """Choose codes, scale and zero point minimising the training MSE of the dequantized model.

    coef: (8,) float64 least-squares weights fitted on (X_train, y_train) with an intercept.
    """
    coef = np.asarray(coef, dtype=np.float64)
    qmax = 2 ** bits - 1
    cov = np.cov(X_train, rowvar=False, bias=True)
    best: tuple[float, np.ndarray, np.float32, int] | None = None
    for scale, zero_point in candidate_grids(coef, bits):
        s = float(scale)
        # In code units the objective is s^2 (q - t)^T cov (q - t), t = coef/s + z.
        codes = closest_codes(cov * s * s, coef / s + zero_point, qmax)
        cost = excess_mse(dequantize(codes, scale, np.uint8(zero_point)), coef, cov)
        if best is None or cost < best[0]:
            best = (cost, codes, scale, zero_point)
    assert best is not None
    _, codes, scale, zero_point = best
    weights = dequantize(codes, scale, np.uint8(zero_point))
    return QuantParams(codes=codes, scale=scale, zero_point=np.uint8(zero_point),
                       intercept=fit_intercept(weights, X_train, y_train), bits=bits)


def naive_quantize(coef: np.ndarray, bits: int) -> QuantParams:
    """The common baseline, for comparison only: min-max scale, round to nearest, bias kept."""
    qmax = 2 ** bits - 1
    lo, hi = min(float(coef.min()), 0.0), max(float(coef.max()), 0.0)
    scale = np.float32((hi - lo) / qmax)
    zero_point = int(np.clip(np.rint(-lo / float(scale)), 0, qmax))
    codes = np.clip(np.rint(coef / float(scale)) + zero_point, 0, qmax).astype(np.uint8)
    return QuantParams(codes, scale, np.uint8(zero_point), np.float32(np.nan), bits)


def dequantized_model(params: QuantParams) -> LinearRegression:
    """A LinearRegression whose weights are exactly the dequantized float32 values."""
    model = LinearRegression()
    model.coef_ = params.weights().astype(np.float64)
    model.intercept_ = float(params.intercept)
    model.n_features_in_ = config.N_FEATURES
    return model


def load_params(path) -> QuantParams:
    """The parameters quantize stored in its joblib file, with their exact dtypes."""
    stored = joblib.load(path)
    return QuantParams(codes=np.asarray(stored["codes"], dtype=np.uint8), scale=np.float32(stored["scale"]),
                       zero_point=np.uint8(stored["zero_point"]), intercept=np.float32(stored["intercept"]),
                       bits=int(stored["bits"]))


def params_dict(params: QuantParams) -> dict:
    """Everything that is stored, as plain numbers: what the uint8 ONNX model holds."""
    return {
        "bits": params.bits,
        "codes": params.codes.tolist(),
        "scale": float(params.scale),
        "zero_point": int(params.zero_point),
        "intercept": float(params.intercept),
        "dequantized_coef": [float(v) for v in params.weights()],
    }


def predict(params: QuantParams, X: np.ndarray) -> np.ndarray:
    return X @ params.weights().astype(np.float64) + float(params.intercept)


def report(params: QuantParams, float_model: LinearRegression, split: data.Split) -> dict:
    """Accuracy of the quantized model against the float model, and of the naive baseline."""
    float_test = regression_metrics(split.y_test, float_model.predict(split.X_test))
    float_train = regression_metrics(split.y_train, float_model.predict(split.X_train))
    test = regression_metrics(split.y_test, predict(params, split.X_test))
    trn = regression_metrics(split.y_train, predict(params, split.X_train))
    naive = naive_quantize(float_model.coef_, params.bits)
    naive_pred = split.X_test @ naive.weights().astype(np.float64) + float_model.intercept_
    return {
        "test": test,
        "train": trn,
        "float_test_r2": float_test["r2"],
        "test_r2_drop": float_test["r2"] - test["r2"],
        "train_mse_increase_relative": trn["mse"] / float_train["mse"] - 1.0,
        "max_abs_coef_error": float(np.max(np.abs(params.weights() - float_model.coef_))),
        "naive_round_to_nearest_test_r2": regression_metrics(split.y_test, naive_pred)["r2"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.quantize", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    bits = config.bits_from_env()
    out = config.artifacts_dir()
    split_path, model_path = out / data.SPLIT_NAME, out / train.MODEL_NAME
    split = data.load_split(split_path)
    float_model = joblib.load(model_path)
    params = quantize(float_model.coef_, split.X_train, split.y_train, bits)
    stats = report(params, float_model, split)
    prov = artifacts.provenance("quantize", {"split": split_path, "model": model_path})
    with artifacts.atomic_path(out / PARAMS_JOBLIB) as tmp:
        joblib.dump({**params_dict(params), "codes": params.codes, "provenance": prov}, tmp)
    with artifacts.atomic_path(out / DEQUANT_MODEL_NAME) as tmp:
        joblib.dump(dequantized_model(params), tmp)
    artifacts.write_json(out / PARAMS_JSON, {**params_dict(params), "metrics": stats, "provenance": prov})
    print(f"quantize: {bits} bits, scale {float(params.scale):.6g}, zero point {int(params.zero_point)}: "
          f"test R2 {stats['test']['r2']:.4f} (float {stats['float_test_r2']:.4f}, "
          f"naive rounding {stats['naive_round_to_nearest_test_r2']:.4f}), "
          f"train MSE +{100 * stats['train_mse_increase_relative']:.4f}%")
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.quantize")
