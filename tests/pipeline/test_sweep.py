"""`python -m pipeline.reports.sweep`: every width 2 to 8, each exactly what `make quantize BITS=b` would
store and report, as JSON, Markdown and a PNG that is a real image; bad inputs and a missing
matplotlib are one line with nothing written. Integration tests run on the session's build in
a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest

from helpers import run_module
from pipeline import config
from pipeline.quantization import quant_eval, quantizer
from pipeline.reports import sweep
from pipeline.stages import data, quantize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("sweep.json", "sweep.md", "sweep.png")


def sweep_args(split: Path, model: Path, out: Path) -> list[str]:
    return [
        "--split",
        str(split),
        "--model",
        str(model),
        "--json",
        str(out / "sweep.json"),
        "--markdown",
        str(out / "sweep.md"),
        "--png",
        str(out / "sweep.png"),
    ]


@pytest.fixture(scope="module")
def swept(built, tmp_path_factory) -> tuple[Path, str]:
    """The sweep of the session's build, run as a user would; its folder and its stdout."""
    out = tmp_path_factory.mktemp("sweep")
    result = run_module(
        "pipeline.reports.sweep",
        *sweep_args(built / config.ARTIFACT_NAMES["split"], built / config.ARTIFACT_NAMES["model"], out),
    )
    assert result.returncode == 0, result.stderr.decode()
    return out, result.stdout.decode()


@pytest.mark.integration
def test_prints_one_line_per_width_and_writes_all_three(swept):
    out, stdout = swept
    lines = stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == [str(b) for b in config.ALLOWED_BITS]
    assert len(lines) == len(config.ALLOWED_BITS) + 1 and lines[-1].startswith("sweep: wrote")
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no temporary left


@pytest.mark.integration
def test_the_png_is_a_real_two_panel_sized_image(swept):
    import matplotlib.image

    path = swept[0] / "sweep.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= 1200 and height >= 600 and width > height
    assert np.ptp(pixels[..., :3]) > 0.5  # something is drawn, not a blank canvas


@pytest.mark.integration
@pytest.mark.parametrize("bits", [3, 8])
def test_each_width_is_what_quantize_stores_and_reports(built, swept, bits):
    """The JSON's entry equals a direct run of the quantizer and its report, exactly."""
    doc = json.loads((swept[0] / "sweep.json").read_text())
    assert [w["bits"] for w in doc["widths"]] == list(config.ALLOWED_BITS)
    entry = next(w for w in doc["widths"] if w["bits"] == bits)
    split = data.load_split(built / config.ARTIFACT_NAMES["split"])
    float_model = joblib.load(built / config.ARTIFACT_NAMES["model"])
    params, found = quantize.quantize(float_model.coef_, split.X_train, split.y_train, bits)
    report = quant_eval.report(params, found, float_model, split)
    assert entry["codes"] == params.codes.tolist()
    assert entry["scale"] == float(params.scale) and entry["zero_point"] == int(params.zero_point)
    assert entry["intercept"] == float(params.intercept)
    assert entry["metrics"] == json.loads(json.dumps(report))
    assert entry["metrics"]["search"]["excess_train_mse"] == found.excess_mse
    assert entry["naive"]["test_r2"] == report["naive_round_to_nearest_test_r2"]
    naive_codes, naive_scale, naive_zero = quantizer.naive_codes(float_model.coef_, bits)
    assert entry["naive"]["codes"] == naive_codes.tolist() and entry["naive"]["scale"] == float(naive_scale)
    assert entry["naive"]["zero_point"] == naive_zero
    assert doc["float_test_r2"] == report["float_test_r2"]
    assert set(doc["provenance"]["inputs"]) == {"split", "model"}


@pytest.mark.integration
def test_ours_is_never_worse_than_naive_in_training_mse(swept):
    """What the plot shows: on the training error it minimises, ours beats naive at every width,
    whether naive keeps the float intercept or refits it."""
    for w in json.loads((swept[0] / "sweep.json").read_text())["widths"]:
        ours = w["metrics"]["train_mse_increase_relative"]
        assert ours <= w["naive"]["intercept_refitted"]["train_mse_increase_relative"] + 1e-12, w["bits"]
        assert ours <= w["naive"]["train_mse_increase_relative"], w["bits"]


@pytest.mark.integration
def test_the_markdown_has_one_row_per_width_widest_first(swept):
    text = (swept[0] / "sweep.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == sorted(config.ALLOWED_BITS, reverse=True)
    assert all(r.count("|") == 9 for r in rows)  # 8 columns
    doc = json.loads((swept[0] / "sweep.json").read_text())
    three = next(w for w in doc["widths"] if w["bits"] == 3)
    row3 = next(r for r in rows if r.startswith("| 3 |"))
    assert f"{three['metrics']['test']['r2']:.4f}" in row3 and f"{three['scale']:.6g}" in row3
    assert f"test R² {doc['float_test_r2']:.4f}" in text


@pytest.mark.integration
def test_same_inputs_give_byte_identical_outputs(built, swept, tmp_path, capsys):
    """No timestamps, no matplotlib version in the PNG: a re-run (here in-process) is identical."""
    args = sweep_args(built / config.ARTIFACT_NAMES["split"], built / config.ARTIFACT_NAMES["model"], tmp_path)
    assert sweep.main(args) == 0
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == (swept[0] / name).read_bytes(), name


def synthetic_split(path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        X_train=rng.normal(size=(50, 8)),
        X_test=rng.normal(size=(10, 8)),
        y_train=rng.normal(size=50),
        y_test=rng.normal(size=10),
    )


def one_line_error(result) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_missing_model_is_one_line_and_writes_nothing(tmp_path):
    synthetic_split(tmp_path / "split.npz")
    out = tmp_path / "out"
    result = run_module("pipeline.reports.sweep", *sweep_args(tmp_path / "split.npz", tmp_path / "model.joblib", out))
    err = one_line_error(result)
    assert err.startswith("pipeline.reports.sweep: error: ") and "model.joblib is missing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.npz"]


def test_without_matplotlib_is_one_line_naming_the_test_requirements(tmp_path):
    """A matplotlib that fails to import (shadowed on PYTHONPATH) stops the sweep before any work."""
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    out = tmp_path / "out"
    result = run_module(
        "pipeline.reports.sweep",
        *sweep_args(tmp_path / "split.npz", tmp_path / "model.joblib", out),
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )
    err = one_line_error(result)
    assert "matplotlib" in err and "make .venv/.test-installed" in err
    assert not out.exists()
