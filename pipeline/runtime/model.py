"""The model: one onnxruntime session on one exported file, with its feature order."""
from __future__ import annotations

import json
import os
from pathlib import Path

# Telemetry off before onnxruntime loads: nothing is sent, nothing is written, so the image
# runs with --read-only --network none.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from pipeline import config  # noqa: E402
from pipeline.errors import UserError  # noqa: E402


class Predictor:
    """An onnxruntime session on one model file, with its feature order from its metadata."""

    def __init__(self, path: Path):
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        try:
            # Default options on purpose: predictions equal what anyone's default session gives.
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{path} is not a loadable ONNX model ({first[:200]}); "
                            "rebuild it with `make all`") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        names = json.loads(meta["feature_names"]) if "feature_names" in meta else list(config.FEATURE_NAMES)
        self.feature_names: tuple[str, ...] = tuple(names)
        self.input_name = self.session.get_inputs()[0].name
        self.variant = meta.get("variant", path.stem)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 8) -> (n,) float32; the input is cast to float32 as the models expect."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(X, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


def model_path(artifacts_dir: Path, variant: str) -> Path:
    path = artifacts_dir / config.ONNX_NAMES[variant]
    if not path.is_file():
        raise UserError(f"model file {path} not found; run `make all`, or pass --artifacts DIR")
    return path
