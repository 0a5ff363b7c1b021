"""make compat's driver and runner on the engines .venv has: the pinned onnxruntime and onnx's
reference evaluator. The full matrix (older onnxruntime releases, OpenVINO, tract,
onnxruntime-node) is `make compat`, which .ci/run runs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pytest

from helpers import run_module
from pipeline import config
from pipeline.compat import matrix, rejected
from pipeline.compat.rejected import matmul_dequant_model
from pipeline.graphs import tolerances
from pipeline.quantization import qparams

ENGINES_HERE = [f"onnxruntime:{sys.executable}", f"reference:{sys.executable}"]


def matrix_args(built: Path, out: Path, runtimes: list[str], **models: Path) -> list[str]:
    paths = {v: models.get(v, built / config.ONNX_NAMES[v]) for v in ("float", "dequant", "uint8")}
    return [
        "--split",
        str(built / config.ARTIFACT_NAMES["split"]),
        *(a for v, p in paths.items() for a in (f"--{v}", str(p))),
        *(a for r in runtimes for a in ("--runtime", r)),
        "--json",
        str(out / "compat.json"),
        "--markdown",
        str(out / "compat.md"),
    ]


def test_every_model_agrees_on_the_pinned_onnxruntime_and_the_reference_evaluator(built, tmp_path):
    result = run_module("pipeline.compat.matrix", *matrix_args(built, tmp_path, ENGINES_HERE))
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads((tmp_path / "compat.json").read_text())
    assert report["tolerance"] == tolerances.TOL_COMPAT
    onnxruntime, reference = report["runtimes"]
    assert onnxruntime["version"] == ort.__version__
    # A plain session plus every optimization level, for each of the three models.
    levels = len(ort.GraphOptimizationLevel.__members__) + 1
    assert len(onnxruntime["cells"]) == 3 * levels and len(reference["cells"]) == 3
    for cell in onnxruntime["cells"] + reference["cells"]:
        assert cell["loads"] and cell["ok"] and cell["max_abs_diff"] <= tolerances.TOL_COMPAT, cell
        assert cell["test_r2"] > tolerances.PUBLISHED_TEST_R2 - 0.01
    table = (tmp_path / "compat.md").read_text().splitlines()
    assert len(table) == 2 + 2 and all(line.count("ok, R²") == 3 for line in table[2:])


def test_a_model_that_a_runtime_computes_differently_fails_the_matrix(built, tmp_path):
    """The DequantizeLinear -> MatMul graph: onnxruntime's optimizer fuses it into MatMulNBits,
    so the optimized sessions disagree with the unoptimized reference."""
    params = qparams.load_params(built / config.ARTIFACT_NAMES["quant_params"])
    fused = tmp_path / "matmul.onnx"
    fused.write_bytes(matmul_dequant_model(params).SerializeToString())
    result = run_module("pipeline.compat.matrix", *matrix_args(built, tmp_path, ENGINES_HERE[:1], uint8=fused))
    stderr = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1 and "cells fail" in stderr[-1] and "uint8 on onnxruntime" in stderr[-1]
    cells = json.loads((tmp_path / "compat.json").read_text())["runtimes"][0]["cells"]
    wrong = {c["setting"] for c in cells if not c["ok"]}
    assert {"default", "ORT_ENABLE_ALL"} <= wrong and "ORT_DISABLE_ALL" not in wrong
    assert all(c["ok"] for c in cells if c["model"] != "uint8")


def test_a_runtime_that_crashes_fails_each_of_its_cells(built, tmp_path):
    result = run_module("pipeline.compat.matrix", *matrix_args(built, tmp_path, ["tract:/bin/false"]))
    assert result.returncode == 1
    (row,) = json.loads((tmp_path / "compat.json").read_text())["runtimes"]
    assert len(row["cells"]) == 3 and not any(c["loads"] or c["ok"] for c in row["cells"])


@pytest.mark.parametrize(
    "spec,message",
    [
        ("tvm:/usr/bin/python3", "KIND one of"),
        ("openvino:/nonexistent/python", "is not an executable Python"),
        ("tract:/etc/passwd", "is not an executable Python"),
        ("onnxruntime-node:/tmp", "holds no node_modules/onnxruntime-node"),
    ],
)
def test_a_bad_runtime_is_one_line_before_anything_runs(built, tmp_path, spec, message):
    result = run_module("pipeline.compat.matrix", *matrix_args(built, tmp_path, [spec]))
    stderr = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(stderr) == 1 and message in stderr[0]
    assert not (tmp_path / "compat.json").exists()


def test_the_graphs_not_shipped_are_reported_and_never_fail_the_target(built, tmp_path):
    """With --model and --params the matrix also runs each rejected graph: the pinned
    onnxruntime fuses the MatMul form wrongly and the reference evaluator refuses opset 13, yet
    the target passes, because only the shipped models decide it."""
    extra = [
        "--model",
        str(built / config.ARTIFACT_NAMES["model"]),
        "--params",
        str(built / config.ARTIFACT_NAMES["quant_params"]),
    ]
    result = run_module("pipeline.compat.matrix", *matrix_args(built, tmp_path, ENGINES_HERE), *extra)
    assert result.returncode == 0, result.stderr.decode()
    onnxruntime, reference = json.loads((tmp_path / "compat.json").read_text())["runtimes"]
    names = {r.name for r in rejected.REJECTED}
    assert {c["model"] for c in onnxruntime["cells"] if not c["shipped"]} == names

    def cells(row, model):
        return {c["setting"]: c for c in row["cells"] if c["model"] == model}

    fused = cells(onnxruntime, "uint8 as MatMul")
    assert not fused["default"]["ok"] and fused["default"]["test_r2"] < 0 and fused["ORT_DISABLE_ALL"]["ok"]
    (opset13,) = cells(reference, "uint8 at opset 13").values()
    assert not opset13["loads"] and "DequantizeLinear" in opset13["error"]
    table = (tmp_path / "compat.md").read_text()
    assert "| onnxruntime | " + ort.__version__ in table and "does not load" in table


def test_model_and_params_go_together(built, tmp_path):
    result = run_module(
        "pipeline.compat.matrix",
        *matrix_args(built, tmp_path, ENGINES_HERE),
        "--model",
        str(built / config.ARTIFACT_NAMES["model"]),
    )
    assert result.returncode == 2 and b"--model and --params go together" in result.stderr


@pytest.mark.parametrize(
    "output,error",
    [
        ('{"engine": "tract", "version": "0", "results": []}', "the runner reported no result"),
        ("this is not JSON", "unreadable report from the runner"),
    ],
)
def test_a_runner_that_reports_nothing_usable_fails_each_cell(built, tmp_path, output, error):
    """A runner that skips the models, or prints garbage, must not pass by having no cells."""
    fake = tmp_path / "python"  # writes the report where the runner would: into --out
    fake.write_text(f"""#!/bin/sh
while [ "$1" != --out ]; do shift; done
echo '{output}' > "$2/report.json"
""")
    fake.chmod(0o755)
    result = run_module("pipeline.compat.matrix", *matrix_args(built, tmp_path, [f"tract:{fake}"]))
    assert result.returncode == 1, result.stderr.decode()
    (row,) = json.loads((tmp_path / "compat.json").read_text())["runtimes"]
    assert len(row["cells"]) == 3 and all(not c["ok"] and error in c["error"] for c in row["cells"])


def test_a_runner_that_hangs_is_stopped_with_everything_it_started(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix, "RUNNER_TIMEOUT_S", 1)
    marker = tmp_path / "grandchild.pid"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {marker}\nwait\n")
    fake.chmod(0o755)
    report = matrix.run_runtime(matrix.Runtime("tract", fake), {"float": fake}, fake, 1, tmp_path / "out")
    assert report["crashed"] == "no answer in 1 s"
    grandchild = int(marker.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]
