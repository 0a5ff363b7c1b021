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

from housing_runtime import config
from housing_runtime.errors import UserError, shown


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return shown(text.splitlines()[0]) if text else type(err).__name__


class Predictor:
    """An onnxruntime session on one model file, with its feature order from its metadata.

    The model must take one float tensor of shape [N, 8] and give one value per row: anything
    else (a model from elsewhere, with --no-verify-manifest) is refused at load, in one line.
    ``model_bytes``, when given, are the file's contents already read and checked (the Spark
    job ships them to its tasks); ``path`` then only names the model in messages.
    """

    def __init__(self, path: Path, model_bytes: bytes | None = None):
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        self.path = path
        # One thread: a batch of 8 features per row is far too little work to share, and the
        # default pool spins its idle threads (CPU 1.7x the wall time for the same wall time).
        # Everything else is the default, so predictions equal a default session's (tested).
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            source = str(path) if model_bytes is None else model_bytes
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise UserError(
                f"{shown(str(path))} is not a loadable ONNX model ({first_line(err)}); rebuild it with `make all`"
            ) from None
        self.input_name = self._check_signature()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.feature_names = self._feature_names(meta)
        self.variant = meta.get("variant", Path(path).stem)

    def _check_signature(self) -> str:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        ok = (
            len(inputs) == 1
            and inputs[0].type == "tensor(float)"
            and len(inputs[0].shape) == 2
            and inputs[0].shape[1] == config.N_FEATURES
            and len(outputs) >= 1
        )
        if not ok:
            got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            raise UserError(
                f"{shown(str(self.path))} takes {shown(got)}; expected one float tensor of shape "
                f"[N, {config.N_FEATURES}] (rebuild it with `make all`)"
            )
        return inputs[0].name

    def _feature_names(self, meta: dict) -> tuple[str, ...]:
        if "feature_names" not in meta:
            return config.FEATURE_NAMES
        try:
            names = json.loads(meta["feature_names"])
        except ValueError:
            names = None
        if not (isinstance(names, list) and sorted(names) == sorted(config.FEATURE_NAMES)):
            raise UserError(
                f"{shown(str(self.path))} names its features {shown(meta['feature_names'])}; expected "
                f"the 8 features {', '.join(config.FEATURE_NAMES)} (rebuild it with `make all`)"
            )
        return tuple(names)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, 8) float32 -> (n,) float32."""
        try:
            out = self.session.run(None, {self.input_name: X})[0]
        except Exception as err:  # onnxruntime's own exception types
            raise UserError(f"onnxruntime could not run {shown(str(self.path))} ({first_line(err)})") from None
        out = np.asarray(out, dtype=np.float32)
        if out.size != X.shape[0]:
            raise UserError(
                f"{shown(str(self.path))} gave {out.size} values for {X.shape[0]} rows; "
                "expected one per row (rebuild it with `make all`)"
            )
        return out.reshape(-1)


def model_path(artifacts_dir: Path, variant: str) -> Path:
    path = artifacts_dir / config.ONNX_NAMES[variant]
    try:
        found = path.is_file()
    except OSError as err:  # a name too long, a folder that cannot be searched
        raise UserError(
            f"model file {shown(str(path))} cannot be reached ({err.strerror}); pass --artifacts DIR"
        ) from None
    if not found:
        raise UserError(f"model file {shown(str(path))} not found; run `make all`, or pass --artifacts DIR")
    return path
