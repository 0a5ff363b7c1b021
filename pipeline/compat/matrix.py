"""`make compat`: the three ONNX models on every runtime they are handed to, side by side.

    python -m pipeline.compat.matrix --split artifacts/split.npz --float artifacts/model_float.onnx \\
        --dequant artifacts/model_dequant.onnx --uint8 artifacts/model_uint8.onnx \\
        --runtime onnxruntime:.venv-compat/onnxruntime-1.16.3/bin/python ... \\
        --runtime onnxruntime-node:.venv-compat/node --json artifacts/compat.json --markdown artifacts/compat.md

With --model and --params (the sklearn model and the quantization parameters), each runtime
also runs the graphs the export chose not to write (pipeline.compat.rejected), each one change
away from a shipped model: reported, as the evidence for those choices, and never failing the
target.

Each --runtime is KIND:WHERE. KIND is onnxruntime, openvino, tract or reference, run by
pipeline/compat/runner.py under the Python WHERE (each in a venv of its own), or
onnxruntime-node, run by pipeline/compat/node/runner.js with the node_modules under WHERE. Each
runs every model under every setting it has (graph optimization levels, precision modes) on
the test split. A cell passes when the model loads and its predictions are within
tolerances.TOL_COMPAT of the pinned onnxruntime's, run here with every graph optimization
disabled: the graph as written, before any runtime rewrites it. Exit 1, after the
matrix is printed, when any cell fails; the reports are written either way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from housing_runtime.errors import UserError, run_cli
from pipeline import artifacts
from pipeline.compat import rejected
from pipeline.compat.report import VARIANTS, cell_text, machine, markdown, terminal_table
from pipeline.graphs import tolerances, verify
from pipeline.metrics import regression_metrics
from pipeline.quantization import qparams
from pipeline.stages import data, quantize

HERE = Path(__file__).resolve().parent
PYTHON_KINDS = ("onnxruntime", "openvino", "tract", "reference")
NODE_KIND = "onnxruntime-node"
RUNNER_TIMEOUT_S = 600


class CompatFailure(UserError):
    """A model that does not load or predicts differently somewhere: the target fails."""

    exit_code = 1


@dataclass(frozen=True)
class Runtime:
    kind: str
    where: Path

    @classmethod
    def parse(cls, spec: str) -> Runtime:
        kind, sep, where = spec.partition(":")
        if not sep or kind not in (*PYTHON_KINDS, NODE_KIND) or not where:
            raise UserError(
                f"--runtime {spec!r}: expected KIND:PATH with KIND one of {', '.join((*PYTHON_KINDS, NODE_KIND))}"
            )
        path = Path(where)
        if kind == NODE_KIND and not (path / "node_modules" / "onnxruntime-node").is_dir():
            raise UserError(
                f"--runtime {spec!r}: {where} holds no node_modules/onnxruntime-node; `make compat` installs it"
            )
        if kind != NODE_KIND and not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"--runtime {spec!r}: {where} is not an executable Python; `make compat` installs it")
        return cls(kind, path)

    def command(self) -> list[str]:
        if self.kind == NODE_KIND:
            node = shutil.which("node")
            if node is None:
                raise UserError("node is not on PATH; install Node.js 18 or newer (Debian: apt-get install nodejs npm)")
            return [node, str(HERE / "node" / "runner.js"), str(self.where.resolve())]
        return [str(self.where), str(HERE / "runner.py"), self.kind]


def run_runtime(runtime: Runtime, models: dict[str, Path], X_path: Path, rows: int, out: Path) -> dict:
    """The runner's report, its predictions loaded; a runner that crashes, hangs or writes no
    usable report fails every cell. The runner runs in a session of its own, so a timeout ends
    whatever it started too."""
    out.mkdir()
    cmd = [
        *runtime.command(),
        "--rows",
        str(rows),
        "--input",
        str(X_path),
        "--out",
        str(out),
        *(f"{name}={path.resolve()}" for name, path in models.items()),
    ]
    runner = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = runner.communicate(timeout=RUNNER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.communicate()
        return {"engine": runtime.kind, "version": "?", "crashed": f"no answer in {RUNNER_TIMEOUT_S} s"}
    if runner.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines() or [f"exit {runner.returncode}"]
        return {"engine": runtime.kind, "version": "?", "crashed": lines[-1][:300]}
    try:
        return read_report(out / "report.json", rows)
    except (OSError, ValueError) as err:
        return {"engine": runtime.kind, "version": "?", "crashed": f"unreadable report from the runner: {err}"}


def read_report(path: Path, rows: int) -> dict:
    """A runner's report.json, checked for shape, with each result's predictions loaded."""
    report = json.loads(path.read_text(errors="replace"))
    if not (
        isinstance(report, dict)
        and isinstance(report.get("engine"), str)
        and isinstance(report.get("version"), str)
        and isinstance(report.get("results"), list)
    ):
        raise ValueError("expected engine, version and results")
    for result in report["results"]:
        if not (
            isinstance(result, dict) and isinstance(result.get("model"), str) and isinstance(result.get("setting"), str)
        ):
            raise ValueError(f"a result without model and setting: {str(result)[:100]}")
        if "predictions" in result:
            result["values"] = np.fromfile(str(result.pop("predictions")), dtype="<f4").astype(np.float64)
    return report


def failed_cell(model: str, setting: str, error: str) -> dict:
    """A cell whose model did not load or gave nothing usable."""
    return {
        "model": model,
        "setting": setting,
        "shipped": model in VARIANTS,
        "loads": False,
        "error": error,
        "ok": False,
    }


def score(result: dict, reference: np.ndarray, y: np.ndarray) -> dict:
    """One cell: loads, test R², max |diff| against the pinned onnxruntime, pass or fail."""
    if "values" not in result:
        return failed_cell(result["model"], result["setting"], result.get("error", "no predictions"))
    cell = {"model": result["model"], "setting": result["setting"], "shipped": result["model"] in VARIANTS}
    got = result["values"]
    if got.shape != reference.shape or not np.all(np.isfinite(got)):
        what = f"{got.size} values for {reference.size} rows" if got.shape != reference.shape else "non-finite"
        return failed_cell(result["model"], result["setting"], f"unusable predictions: {what}")
    diff = float(np.max(np.abs(got - reference)))
    return {
        **cell,
        "loads": True,
        "test_r2": regression_metrics(y, got)["r2"],
        "max_abs_diff": diff,
        "ok": bool(diff <= tolerances.TOL_COMPAT),
    }


def cells_of(report: dict, models: dict[str, Path], references: dict[str, np.ndarray], y: np.ndarray) -> list[dict]:
    """Every cell of one runtime; a model the runner left out, or a runner that crashed, fails."""
    if "crashed" in report:
        return [failed_cell(m, "-", report["crashed"]) for m in models]
    cells = [score(r, references[r["model"]], y) for r in report["results"] if r["model"] in references]
    ran = {c["model"] for c in cells}
    return cells + [failed_cell(m, "-", "the runner reported no result") for m in models if m not in ran]


def reference_predictions(path: Path, X: np.ndarray) -> np.ndarray:
    """The pinned onnxruntime, every optimization disabled: the graph as written."""
    try:
        session = verify.make_session(str(path), ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        return verify.run_session(session, X)
    except Exception as err:  # onnxruntime's own exception types differ between releases
        raise UserError(
            f"the pinned onnxruntime {ort.__version__} cannot run {path}, so nothing can be "
            f"compared with it: {' '.join(str(err).split())[:300]}"
        ) from None


def evaluate(runtimes: list[Runtime], models: dict[str, Path], split: data.Split, work: Path) -> list[dict]:
    """One entry per runtime: its engine, version and every cell. work: a scratch folder."""
    X = split.X_test.astype(np.float32)
    references = {name: reference_predictions(path, X) for name, path in models.items()}
    rows = []
    X_path = work / "X.f32"
    X.astype("<f4").tofile(X_path)
    for i, runtime in enumerate(runtimes):
        report = run_runtime(runtime, models, X_path, len(X), work / str(i))
        cells = cells_of(report, models, references, split.y_test)
        rows.append(
            {"engine": report["engine"], "version": report["version"], "where": str(runtime.where), "cells": cells}
        )
        shipped = [c for c in cells if c["shipped"]]
        print(
            f"compat: {report['engine']} {report['version']}: {sum(c['ok'] for c in shipped)}/{len(shipped)} pass",
            file=sys.stderr,
        )
    return rows


def write_rejected(model_path: Path, params_path: Path, work: Path) -> dict[str, Path]:
    """Each graph not shipped, built from the same model and parameters, as a file in work."""
    try:
        params = qparams.load_params(params_path)
    except FileNotFoundError:
        raise UserError(f"{params_path} is missing; run `make all` first") from None
    except Exception as err:  # a file that is not save_params' joblib fails in many ways
        raise UserError(
            f"{params_path} cannot be read as quantization parameters ({type(err).__name__}); "
            "give the quant_params.joblib that `make quantize` writes"
        ) from None
    model = quantize.load_model(model_path)
    paths = {}
    for i, graph in enumerate(rejected.REJECTED):
        paths[graph.name] = work / f"rejected-{i}.onnx"
        paths[graph.name].write_bytes(graph.build(model, params).SerializeToString())
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.compat.matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, required=True, help="input: the split from pipeline.stages.data")
    for variant in VARIANTS:
        parser.add_argument(f"--{variant}", type=Path, required=True, help=f"input: the {variant} ONNX model")
    parser.add_argument(
        "--model",
        type=Path,
        help="input: the sklearn model; with --params, also run the graphs not shipped (reported only)",
    )
    parser.add_argument("--params", type=Path, help="input: the quantization parameters, with --model")
    parser.add_argument(
        "--runtime", action="append", default=[], metavar="KIND:PATH", help="a runtime to run the models on (repeat)"
    )
    parser.add_argument("--json", type=Path, required=True, help="output: every cell (JSON)")
    parser.add_argument("--markdown", type=Path, required=True, help="output: one row per runtime (Markdown)")
    args = parser.parse_args(argv)
    if (args.model is None) != (args.params is None):
        parser.error("--model and --params go together")
    runtimes = [Runtime.parse(spec) for spec in args.runtime]
    if not runtimes:
        parser.error("give at least one --runtime")
    models = {v: getattr(args, v) for v in VARIANTS}
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; run `make all` first")
    split = data.load_split(args.split)
    with tempfile.TemporaryDirectory(prefix="housing-compat-") as tmp:
        work = Path(tmp)
        if args.model is not None:
            models.update(write_rejected(args.model, args.params, work))
        rows = evaluate(runtimes, models, split, work)
    print(terminal_table(rows))
    artifacts.write_json(
        args.json,
        {
            "tolerance": tolerances.TOL_COMPAT,
            "reference": f"onnxruntime {ort.__version__}, ORT_DISABLE_ALL",
            "rows_checked": int(split.X_test.shape[0]),
            "machine": machine(),
            "runtimes": rows,
            "provenance": artifacts.provenance(
                "compat",
                {
                    "split": args.split,
                    **{v: models[v] for v in VARIANTS},
                    **({"model": args.model, "quant_params": args.params} if args.model else {}),
                },
            ),
        },
    )
    artifacts.write_text(args.markdown, markdown(rows))
    shipped = sum(c["shipped"] for r in rows for c in r["cells"])
    failed = [(r["engine"], r["version"], c) for r in rows for c in r["cells"] if c["shipped"] and not c["ok"]]
    if failed:
        engine, version, cell = failed[0]
        raise CompatFailure(
            f"{len(failed)} of {shipped} cells fail, the first "
            f"{cell['model']} on {engine} {version} ({cell['setting']}): {cell_text(cell)}"
        )
    print(
        f"compat: every model loads and agrees within {tolerances.TOL_COMPAT:g} on "
        f"{len(rows)} runtimes ({shipped} cells)"
    )
    return 0


if __name__ == "__main__":
    run_cli(main, "pipeline.compat.matrix")
