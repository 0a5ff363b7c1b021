"""Every default of the pipeline in one place. Importing this module does nothing else.

Standard library only: the runtime imports it inside the slim image.
"""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import UserError

FEATURE_NAMES: tuple[str, ...] = (
    "MedInc", "HouseAge", "AveRooms", "AveBedrms",
    "Population", "AveOccup", "Latitude", "Longitude",
)
N_FEATURES = len(FEATURE_NAMES)

# The split both reference projects use, so that their published figures are comparable.
TEST_SIZE = 0.2
RANDOM_STATE = 42
# Rows of the test split written as the runtime's bundled sample.
SAMPLE_ROWS = 5

DEFAULT_BITS = 8
ALLOWED_BITS = range(2, 9)  # codes are stored as uint8, so 8 is the ceiling

# ONNX targets: the lower of what skl2onnx 1.20 emits (opset 22) and what is needed; IR 10
# is what onnx 1.17+ pairs with opset 21, and what every onnxruntime since 1.20 loads.
# onnx.helper.make_model would otherwise stamp the newest IR version of the installed onnx.
ONNX_OPSET = 21
ONNX_ML_OPSET = 1
ONNX_IR_VERSION = 10
INPUT_NAME = "input"
OUTPUT_NAME = "variable"  # skl2onnx's name for a regressor's output; all three models share it

# Verification tolerances (max absolute difference of predictions, in units of $100,000).
TOL_FLOAT_VS_SKLEARN = 1e-4
TOL_DEQUANT_VS_SKLEARN = 1e-4
# float32 rounding of sums whose terms reach +-50; a real defect shows as 1e-2 or more.
TOL_UINT8_VS_DEQUANT = 5e-5

MODEL_VARIANTS = ("uint8", "dequant", "float")  # runtime's --model choices, default first
ONNX_NAMES = {"float": "model_float.onnx", "dequant": "model_dequant.onnx", "uint8": "model_uint8.onnx"}
# The runtime's bundled sample: the first SAMPLE_ROWS test rows, written by the data stage.
SAMPLE_NAME = "sample.csv"


def artifacts_dir() -> Path:
    """The artifacts folder: $ARTIFACTS if set (the Makefile sets it), else ./artifacts."""
    return Path(os.environ.get("ARTIFACTS") or "artifacts")


def parse_bits(value: str | int | None) -> int:
    """Validate a bit width given by a user (Make variable BITS or environment)."""
    if value is None or value == "":
        return DEFAULT_BITS
    try:
        bits = int(str(value).strip())
    except ValueError:
        raise UserError(f"BITS={value!r} is not a whole number; use an integer from 2 to 8") from None
    if bits not in ALLOWED_BITS:
        raise UserError(f"BITS={bits} is out of range; use an integer from 2 to 8 (codes are stored as uint8)")
    return bits


def bits_from_env() -> int:
    return parse_bits(os.environ.get("BITS"))
