"""The pipeline's defaults: data, split, bit widths and every artifact's file name, in one place.
Importing this module does nothing else.

Standard library only, so the Makefile reads it with the system Python before the venv exists.
The names the runtime reads (features, model variants, the ONNX, sample and manifest files) are
the runtime's own (``housing_runtime.config``) and re-exported here. ONNX graph settings live in
``pipeline.graphs.onnx_spec`` and verification tolerances in ``pipeline.graphs.tolerances``, so
that changing either re-runs only the stages that read them (the Makefile's graph follows imports).

    python -m pipeline.config      # prints the artifact names as key=name, for the Makefile
"""

from __future__ import annotations

import sys

from housing_runtime.config import (
    FEATURE_NAMES,
    MANIFEST_NAME,
    MODEL_VARIANTS,
    N_FEATURES,
    ONNX_NAMES,
    SAMPLE_NAME,
    artifacts_dir,
)
from housing_runtime.errors import UserError

# The split both reference projects use, so that their published figures are comparable.
TEST_SIZE = 0.2
RANDOM_STATE = 42
# Rows of the test split written as the runtime's bundled sample.
SAMPLE_ROWS = 5

DEFAULT_BITS = 8
ALLOWED_BITS = range(2, 9)  # codes are stored as uint8, so 8 is the ceiling

# Every artifact's file name, by key. The Makefile reads these (`python -m pipeline.config`),
# so a name is defined here and nowhere else.
ARTIFACT_NAMES: dict[str, str] = {
    "split": "split.npz",
    "sample": SAMPLE_NAME,
    "data_report": "data.json",
    "model": "model.joblib",
    "train_metrics": "train_metrics.json",
    "quant_params": "quant_params.joblib",
    "quant_report": "quant_params.json",
    "onnx_float": ONNX_NAMES["float"],
    "onnx_dequant": ONNX_NAMES["dequant"],
    "onnx_uint8": ONNX_NAMES["uint8"],
    "export_report": "export_report.json",
    "manifest": MANIFEST_NAME,
    "compare_json": "compare.json",
    "compare_md": "compare.md",
    "compat_json": "compat.json",
    "compat_md": "compat.md",
    "sweep_json": "sweep.json",
    "sweep_md": "sweep.md",
    "sweep_png": "sweep.png",
    # Folders the deployment targets write: make triton-repo, make k8s-check, make mlflow.
    "triton_repo": "triton",
    "kubernetes_renders": "kubernetes",
    "mlflow_store": "mlflow",
}
__all__ = [
    "ALLOWED_BITS",
    "ARTIFACT_NAMES",
    "DEFAULT_BITS",
    "FEATURE_NAMES",
    "MANIFEST_NAME",
    "MODEL_VARIANTS",
    "N_FEATURES",
    "ONNX_NAMES",
    "RANDOM_STATE",
    "SAMPLE_NAME",
    "SAMPLE_ROWS",
    "TEST_SIZE",
    "artifacts_dir",
    "make_variables",
    "parse_bits",
]


def parse_bits(value: str | int | None) -> int:
    """Validate a bit width given by a user (Make variable BITS or --bits)."""
    if value is None or value == "":
        return DEFAULT_BITS
    try:
        bits = int(str(value).strip())
    except ValueError:
        raise UserError(f"BITS={value!r} is not a whole number; use an integer from 2 to 8") from None
    if bits not in ALLOWED_BITS:
        raise UserError(f"BITS={bits} is out of range; use an integer from 2 to 8 (codes are stored as uint8)")
    return bits


def make_variables() -> str:
    """The artifact names as `key=name` words, which the Makefile looks up by key."""
    return " ".join(f"{key}={name}" for key, name in ARTIFACT_NAMES.items())


if __name__ == "__main__":
    sys.stdout.write(make_variables() + "\n")
