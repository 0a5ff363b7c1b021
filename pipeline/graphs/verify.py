"""Check that the ONNX models predict what they claim, in anyone's onnxruntime session.

The export stage runs these checks before it writes a model; `make verify` (pipeline.stages.export
--verify-only) re-runs them on the files on disk.

Every comparison is repeated under a plain ``InferenceSession(path)`` with default options
and under every graph optimization level, because onnxruntime's optimizer rewrites graphs:
at EXTENDED and above it fuses DequantizeLinear -> MatMul into MatMulNBits, which
quantizes the inputs too and, on this data, gives test R² -6.17. The uint8 model avoids
that pattern; this module proves it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import onnx
import onnxruntime as ort

from housing_runtime.errors import UserError
from pipeline.graphs import tolerances

DEFAULT_SESSION = "default"


class VerificationError(UserError):
    """A model disagrees with its reference beyond tolerance: the build must fail."""

    exit_code = 1


def optimization_levels() -> dict[str, ort.GraphOptimizationLevel | None]:
    """Every graph optimization level this onnxruntime knows, plus a default session (None)."""
    levels: dict[str, ort.GraphOptimizationLevel | None] = {DEFAULT_SESSION: None}
    for name, level in ort.GraphOptimizationLevel.__members__.items():
        levels[name] = level
    return levels


def make_session(model: bytes | str | Path, level: ort.GraphOptimizationLevel | None) -> ort.InferenceSession:
    source = model if isinstance(model, bytes) else str(model)
    if level is None:
        return ort.InferenceSession(source)  # exactly what a user would write
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_session(session: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    """Predictions as a 1-D float64 array from an (n, 8) input cast to float32."""
    name = session.get_inputs()[0].name
    out = session.run(None, {name: np.ascontiguousarray(X, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def verification_inputs(split) -> np.ndarray:
    """Rows the models are checked on: the whole test split and training split, as float32."""
    return np.vstack([split.X_test, split.X_train]).astype(np.float32)


def sklearn_reference(model, X32: np.ndarray) -> np.ndarray:
    """A sklearn model's predictions on exactly the float32 values the ONNX models see."""
    return model.predict(X32.astype(np.float64))


@dataclass(frozen=True)
class Check:
    """One equivalence: candidate ONNX model vs a reference, within tol, at every level."""

    name: str
    candidate: bytes
    reference: np.ndarray | bytes  # predictions, or another ONNX model run at the same level
    tol: float


class CheckResult(TypedDict):
    """A passed check: its tolerance, and the max |difference| per session kind."""

    tolerance: float
    max_abs_diff: dict[str, float]


def run_check(check: Check, X: np.ndarray) -> dict[str, float]:
    """Max |difference| per session kind; raises VerificationError if any exceeds tol."""
    diffs = {}
    for label, level in optimization_levels().items():
        got = run_session(make_session(check.candidate, level), X)
        ref = check.reference
        if isinstance(ref, bytes):
            ref = run_session(make_session(ref, level), X)
        diffs[label] = float(np.max(np.abs(got - ref)))
    worst = max(diffs, key=diffs.__getitem__)
    if diffs[worst] > check.tol:
        raise VerificationError(
            f"verification failed: {check.name}: max |difference| {diffs[worst]:.3g} > {check.tol:g} "
            f"in the {worst} session; the model was not written"
        )
    return diffs


def check_models(
    models: dict[str, bytes], float_reference: np.ndarray, dequant_reference: np.ndarray, X: np.ndarray
) -> dict[str, CheckResult]:
    """The three equivalences the product promises. models: variant name -> serialized ONNX."""
    for name, blob in models.items():
        try:
            onnx.checker.check_model(onnx.load_from_string(blob), full_check=True)
        except onnx.checker.ValidationError as err:
            raise VerificationError(f"{name} ONNX model fails the checker: {str(err).splitlines()[0]}") from None
    checks = [
        Check("float ONNX vs sklearn", models["float"], float_reference, tolerances.TOL_FLOAT_VS_SKLEARN),
        Check(
            "dequant ONNX vs dequantized sklearn",
            models["dequant"],
            dequant_reference,
            tolerances.TOL_DEQUANT_VS_SKLEARN,
        ),
        Check("uint8 ONNX vs dequant ONNX", models["uint8"], models["dequant"], tolerances.TOL_UINT8_VS_DEQUANT),
    ]
    return {c.name: {"tolerance": c.tol, "max_abs_diff": run_check(c, X)} for c in checks}
