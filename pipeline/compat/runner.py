"""Run ONNX models on one engine and save what they predict: `make compat`'s worker.

    python runner.py ENGINE --rows ROWS --input X.f32 --out DIR NAME=MODEL.onnx ...

ENGINE is onnxruntime, openvino, tract or reference (onnx's ReferenceEvaluator). The input is
ROWS x 8 little-endian float32; each model runs under every setting the engine has (its graph
optimization levels, its precision modes) and its predictions go to DIR/NAME.SETTING.f32.
Writes DIR/report.json: the engine's version and, per model and setting, the file written or
the one-line error (a file, so that whatever an engine prints cannot garble it). It runs
inside each engine's own venv, so it imports only the standard library, numpy and the engine:
never the pipeline package.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import cast

import numpy as np

N_FEATURES = 8


def onnxruntime_settings():
    """A plain default session, then every graph optimization level this release knows."""
    import onnxruntime as ort

    def at_level(level):
        def predict(path, X):
            if level is None:
                session = ort.InferenceSession(path)  # exactly what a user would write
            else:
                options = ort.SessionOptions()
                options.graph_optimization_level = level
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            return session.run(None, {session.get_inputs()[0].name: X})[0]

        return predict

    levels = {"default": None, **ort.GraphOptimizationLevel.__members__}
    return ort.__version__, {name: at_level(level) for name, level in levels.items()}


def openvino_settings():
    """The CPU plugin as configured by default, and with f32 inference precision.

    On CPUs with avx512_bf16 or AMX the default runs MatMul in bf16 (3 significant digits)."""
    import openvino as ov

    core = ov.Core()

    def compiled(config):
        def predict(path, X):
            model = core.compile_model(core.read_model(path), "CPU", config)
            return model(X)[model.output(0)]

        return predict

    return ov.__version__, {
        "default": compiled({}),
        "INFERENCE_PRECISION_HINT=f32": compiled({"INFERENCE_PRECISION_HINT": "f32"}),
    }


def tract_settings():
    import tract

    def runnable(path, X):
        # into_runnable optimises the typed model all the way, as tract's own examples do.
        return tract.onnx().load(path).into_model().into_runnable().run([X])[0].to_numpy()

    return tract.version(), {"default": runnable}


def reference_settings():
    import onnx
    from onnx.reference import ReferenceEvaluator

    def evaluate(path, X):
        # run() answers a list of outputs (a dict only with intermediate=True).
        return cast(list, ReferenceEvaluator(path).run(None, {"input": X}))[0]

    return onnx.__version__, {"ReferenceEvaluator": evaluate}


ENGINES = {
    "onnxruntime": onnxruntime_settings,
    "openvino": openvino_settings,
    "tract": tract_settings,
    "reference": reference_settings,
}


def one_line(err: BaseException, keep: int = 200) -> str:
    """The error on one line, its start and its end (onnxruntime names the cause last, tract
    first), without tract's stack backtrace."""
    text = " ".join(str(err).split()).split(" Stack backtrace:")[0] or type(err).__name__
    if len(text) > 2 * keep:
        text = f"{text[:keep]} ... {text[-keep:]}"
    return f"{type(err).__name__}: {text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=sorted(ENGINES))
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("models", nargs="+", help="NAME=PATH")
    args = parser.parse_args()
    X = np.fromfile(args.input, dtype="<f4").reshape(args.rows, N_FEATURES)
    version, settings = ENGINES[args.engine]()
    results = []
    for spec in args.models:
        name, path = spec.split("=", 1)
        for setting, predict in settings.items():
            result = {"model": name, "setting": setting}
            try:
                got = np.asarray(predict(path, X), dtype="<f4").reshape(-1)
                if got.shape != (args.rows,):
                    raise ValueError(f"{got.size} predictions for {args.rows} rows")
                target = args.out / f"{name}.{setting}.f32"
                got.tofile(target)
                result["predictions"] = str(target)
            except Exception as err:  # any engine's refusal is a result to report, not a crash
                result["error"] = one_line(err)
            results.append(result)
    (args.out / "report.json").write_text(json.dumps({"engine": args.engine, "version": version, "results": results}))


if __name__ == "__main__":
    main()
