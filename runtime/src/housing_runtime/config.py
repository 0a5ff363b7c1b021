"""What the runtime must know of the pipeline's artifacts: the features in model order, the
model variants and the file names it reads. Importing this module does nothing else.

Standard library only. The training side (``pipeline.config``) builds its artifact names on
these, so each name is defined once, here, where both sides can read it.
"""

from __future__ import annotations

import os
from pathlib import Path

FEATURE_NAMES: tuple[str, ...] = (
    "MedInc",
    "HouseAge",
    "AveRooms",
    "AveBedrms",
    "Population",
    "AveOccup",
    "Latitude",
    "Longitude",
)
N_FEATURES = len(FEATURE_NAMES)

MODEL_VARIANTS = ("uint8", "dequant", "float")  # --model choices, default first
ONNX_NAMES = {variant: f"model_{variant}.onnx" for variant in MODEL_VARIANTS}
SAMPLE_NAME = "sample.csv"
MANIFEST_NAME = "manifest.json"


def artifacts_dir() -> Path:
    """The artifacts folder: $ARTIFACTS if set, else ./artifacts (the runtime's default)."""
    return Path(os.environ.get("ARTIFACTS") or "artifacts")
