"""`make triton-repo`: a Triton model repository whose configs Triton's own schema accepts and whose
inputs and outputs are the ONNX graphs'; what is refused (a missing or mismatched manifest, a folder
the target did not make) is one line and leaves every folder as it was; the output is byte-stable.

Triton itself does not run here: its shipped model_config proto (tritonclient, in its own venv,
tests/triton_config_check.py) parses the configs instead. The make-driven tests are integration
tests (make all into a temporary folder); the others use synthetic artifacts and no dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from grpc_checks import client_python
from helpers import REPO, make, run_module, write_synthetic_artifacts
from housing_runtime.errors import UserError
from pipeline import config
from pipeline.deploy import triton

CHECK = REPO / "tests" / "triton_config_check.py"
PROG = "pipeline.deploy.triton"


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary folders a run might leave beside the repository."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".triton."))


def module_args(art: Path, output: Path) -> list[str]:
    models = [arg for v in config.MODEL_VARIANTS for arg in (f"--{v}", str(art / config.ONNX_NAMES[v]))]
    return ["--manifest", str(art / config.MANIFEST_NAME), *models, "--output", str(output)]


def one_error_line(out: subprocess.CompletedProcess) -> str:
    """The run's only stderr line, which must be the module's error (no traceback)."""
    lines = out.stderr.decode().strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr.decode()
    assert lines[0].startswith(f"{PROG}: error: "), lines
    return lines[0]


def make_error_lines(out: subprocess.CompletedProcess) -> list[str]:
    """The module's lines in a failed make's stderr (make adds its own `***` line)."""
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    return [line for line in out.stderr.splitlines() if line.startswith(f"{PROG}:")]


def onnx_tensors(values, skip: set[str]) -> list[dict]:
    """A graph's inputs or outputs as the config must declare them, read with onnx: numpy dtype
    (onnx's own mapping), dims without the batch dimension, which must be dynamic."""
    found = []
    for v in values:
        if v.name in skip:
            continue
        dims = v.type.tensor_type.shape.dim
        assert not dims[0].HasField("dim_value"), f"{v.name}'s batch dimension is fixed"
        found.append(
            {
                "name": v.name,
                "dtype": helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                "dims": [d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:]],
            }
        )
    return found


# ---- Through make, on the real models ------------------------------------------------------


@pytest.fixture(scope="module")
def built_repo(built, tmp_path_factory) -> Path:
    """`make triton-repo` into a private copy of the built artifacts (mtimes kept, so make
    rebuilds nothing of the pipeline); returns that artifacts folder."""
    art = tmp_path_factory.mktemp("triton") / "artifacts"
    shutil.copytree(built, art)
    out = make("triton-repo", artifacts=art)
    assert out.returncode == 0, out.stdout + out.stderr
    return art


@pytest.fixture(scope="module")
def parsed(built_repo) -> dict:
    """Each config.pbtxt as tritonclient's model_config proto reads it (in its own venv)."""
    out = subprocess.run(
        [client_python(), str(CHECK), str(built_repo / "triton")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.integration
def test_the_repository_holds_a_folder_per_variant_and_nothing_else(built_repo):
    repo = built_repo / "triton"
    assert set(files_of(repo)) == {triton.MARKER} | {
        f"{v}/{name}" for v in config.MODEL_VARIANTS for name in ("config.pbtxt", "1/model.onnx")
    }
    for variant in config.MODEL_VARIANTS:
        model = (repo / variant / "1" / "model.onnx").read_bytes()
        assert model == (built_repo / config.ONNX_NAMES[variant]).read_bytes(), variant
    assert leftovers(built_repo) == []


@pytest.mark.integration
@pytest.mark.parametrize("variant", config.MODEL_VARIANTS)
def test_tritons_schema_reads_the_onnx_models_names_types_and_dims(built_repo, parsed, variant):
    model = onnx.load(built_repo / "triton" / variant / "1" / "model.onnx")
    weights = {init.name for init in model.graph.initializer}
    got = parsed[variant]
    assert got["name"] == variant and got["platform"] == "onnxruntime_onnx"
    assert got["versions"] == ["1"]
    assert got["max_batch_size"] > 0  # the batch dimension is Triton's, so dims leave it out
    for key, values, skip in (("input", model.graph.input, weights), ("output", model.graph.output, set())):
        declared = [{k: t[k] for k in ("name", "dtype", "dims")} for t in got[key]]
        assert declared == onnx_tensors(values, skip), key
    assert got["dynamic_batching"] is True
    assert [g["kind"] for g in got["instance_group"]] == ["KIND_CPU"]
    assert set(parsed) == set(config.MODEL_VARIANTS)


@pytest.mark.integration
@pytest.mark.parametrize("variant", config.MODEL_VARIANTS)
def test_each_config_names_its_inputs_hashes_and_maker_in_comments(built_repo, variant):
    text = (built_repo / "triton" / variant / "config.pbtxt").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")][:3]
    model_sha = hashlib.sha256((built_repo / config.ONNX_NAMES[variant]).read_bytes()).hexdigest()
    manifest_sha = hashlib.sha256((built_repo / config.MANIFEST_NAME).read_bytes()).hexdigest()
    assert PROG in header[0]
    assert model_sha in header[1] and manifest_sha in header[2]
    assert str(built_repo) not in text  # file names only: the bytes do not depend on the folder


@pytest.mark.integration
def test_the_target_is_up_to_date_once_built_and_rebuilds_byte_identical(built_repo):
    assert make("-q", "triton-repo", artifacts=built_repo).returncode == 0
    repo = built_repo / "triton"
    before = files_of(repo)
    config_file = repo / "uint8" / "config.pbtxt"
    os.utime(config_file, (0, 0))  # older than its inputs: make must run the module again
    out = make("triton-repo", artifacts=built_repo)
    assert out.returncode == 0, out.stderr
    assert config_file.stat().st_mtime > 0  # it did run
    assert files_of(repo) == before
    assert leftovers(built_repo) == []


@pytest.mark.integration
def test_make_refuses_a_folder_it_did_not_make_and_leaves_it_intact(built_copy):
    mine = built_copy / "triton"
    (mine / "uint8").mkdir(parents=True)
    (mine / "uint8" / "config.pbtxt").write_text("# my own config\n")
    before = files_of(mine)
    out = make("triton-repo", artifacts=built_copy)
    lines = make_error_lines(out)
    assert len(lines) == 1 and "was not made by make triton-repo" in lines[0], out.stderr
    assert files_of(mine) == before
    assert leftovers(built_copy) == []


# ---- The module on synthetic artifacts (no dataset) -----------------------------------------


@pytest.fixture()
def art(tmp_path) -> Path:
    return write_synthetic_artifacts(tmp_path / "artifacts")


def corrupt_model(art: Path) -> None:
    path = art / config.ONNX_NAMES["float"]
    path.write_bytes(path.read_bytes() + b"\0")


def drop_manifest(art: Path) -> None:
    (art / config.MANIFEST_NAME).unlink()


@pytest.mark.parametrize(
    "damage,words",
    [(drop_manifest, "manifest.json' not found"), (corrupt_model, "does not match its sha256")],
    ids=["missing-manifest", "mismatched-model"],
)
def test_a_missing_or_mismatched_manifest_is_one_line_and_leaves_no_repository(art, damage, words):
    damage(art)
    line = one_error_line(run_module(PROG, *module_args(art, art / "triton")))
    assert words in line
    assert not (art / "triton").exists() and leftovers(art) == []


def test_a_failed_run_leaves_the_previous_repository_as_it_was(art):
    assert run_module(PROG, *module_args(art, art / "triton")).returncode == 0
    before = files_of(art / "triton")
    corrupt_model(art)
    one_error_line(run_module(PROG, *module_args(art, art / "triton")))
    assert files_of(art / "triton") == before and leftovers(art) == []


def user_folder(path: Path) -> None:
    (path / "mine").mkdir(parents=True)
    (path / "mine" / "notes.txt").write_text("keep me\n")


def user_file(path: Path) -> None:
    path.write_text("keep me\n")


def symlink_to_a_repository(path: Path) -> None:
    """Even a link to a repository the module made: replacing it would replace the link's target."""
    target = path.parent / "elsewhere"
    assert run_module(PROG, *module_args(path.parent, target)).returncode == 0
    path.symlink_to(target)


@pytest.mark.parametrize("make_it", [user_folder, Path.mkdir, user_file, symlink_to_a_repository])
def test_anything_at_the_path_the_module_did_not_make_is_refused_and_kept(art, make_it):
    target = art / "triton"
    make_it(target)
    before = (target.is_symlink(), files_of(target) if target.is_dir() else target.read_bytes())
    line = one_error_line(run_module(PROG, *module_args(art, target)))
    assert "was not made by make triton-repo" in line
    assert (target.is_symlink(), files_of(target) if target.is_dir() else target.read_bytes()) == before
    assert leftovers(art) == []


def test_the_same_inputs_in_another_folder_give_the_same_bytes(art, tmp_path):
    assert run_module(PROG, *module_args(art, art / "triton")).returncode == 0
    elsewhere = shutil.copytree(art, tmp_path / "moved", ignore=shutil.ignore_patterns("triton"))
    assert run_module(PROG, *module_args(elsewhere, elsewhere / "deep" / "triton")).returncode == 0
    assert files_of(elsewhere / "deep" / "triton") == files_of(art / "triton")


# ---- Reading the graph -----------------------------------------------------------------------


def value(name: str, elem_type: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, shape)


@pytest.mark.parametrize(
    "elem_type,shape,data_type,dims",
    [
        (TensorProto.FLOAT, ["N", 8], "TYPE_FP32", (8,)),
        (TensorProto.DOUBLE, [None, 3, "M"], "TYPE_FP64", (3, -1)),
        (TensorProto.INT64, ["batch"], "TYPE_INT64", ()),
    ],
    ids=["float-rows", "double-variable-dim", "int64-vector"],
)
def test_a_tensor_is_declared_without_its_batch_dimension(elem_type, shape, data_type, dims):
    assert triton.triton_tensor(value("x", elem_type, shape), "input") == triton.Tensor("x", data_type, dims)


@pytest.mark.parametrize(
    "tensor,match",
    [
        (value("x", TensorProto.FLOAT, [4, 8]), "no dynamic first"),
        (value("x", TensorProto.FLOAT, []), "no dynamic first"),
        (value("x", TensorProto.COMPLEX64, ["N", 2]), "COMPLEX64"),
    ],
    ids=["fixed-batch", "scalar", "complex"],
)
def test_a_tensor_triton_cannot_batch_or_type_is_refused(tensor, match):
    with pytest.raises(UserError, match=match):
        triton.triton_tensor(tensor, "input")


def test_a_name_is_escaped_for_the_text_format():
    assert triton.quoted('in"put\\') == 'in\\"put\\\\'


@pytest.mark.integration
def test_the_deploy_pages_example_config_is_what_the_target_writes(built_repo):
    """docs/deploy.md shows uint8's config.pbtxt with its two hashes elided: the rest must be
    the generated file, byte for byte, so the page cannot drift from the generator."""
    page = (REPO / "docs" / "deploy.md").read_text()
    shown = page.split("# Generated by pipeline.deploy.triton", 1)[1].split("```", 1)[0]
    written = (
        (built_repo / "triton" / "uint8" / "config.pbtxt")
        .read_text()
        .split("# Generated by pipeline.deploy.triton", 1)[1]
    )
    elided = re.sub(r"sha256 [0-9a-f]{64}", "sha256 <elided>", written)
    assert re.sub(r"sha256 <sha256 of [^>]+>", "sha256 <elided>", shown) == elided
