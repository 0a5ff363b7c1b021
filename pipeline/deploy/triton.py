"""A Triton Inference Server model repository of the three ONNX models, checked against the manifest.

    python -m pipeline.deploy.triton --manifest artifacts/manifest.json --float artifacts/model_float.onnx \
        --dequant artifacts/model_dequant.onnx --uint8 artifacts/model_uint8.onnx --output artifacts/triton

writes, for each variant, ``<output>/<variant>/1/model.onnx`` (the model's bytes as checked) and
``<output>/<variant>/config.pbtxt``, whose inputs and outputs (names, data types, dims) are read from
the ONNX graph, and a marker file saying this module made the folder. The repository is written into
a temporary sibling folder and swapped in whole, so a failure never leaves a half repository; a
folder at ``<output>`` that this module did not make is refused, never replaced. The configs carry
their provenance as ``#`` comments and no timestamp: the same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.text_encoding import CEscape

from housing_runtime.errors import UserError, run_cli, shown
from housing_runtime.files import nearest_existing_folder, sha256_file
from housing_runtime.integrity import read_checked, sha256_bytes
from housing_runtime.serving.options import MAX_ROWS
from pipeline.config import MODEL_VARIANTS

PROG = "pipeline.deploy.triton"
# Triton's ONNX Runtime backend reads <model>/<version>/model.onnx; one version, "1".
VERSION = "1"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
# In a folder this module made, and in no other: it may then replace the folder whole. Triton
# loads only the repository's subfolders, so a file at the top is ignored.
MARKER = ".housing-triton"
MARKER_TEXT = f"Made by {PROG} (make triton-repo), which replaces this folder whole when it runs again.\n"

# Triton's batch dimension is the models' dynamic N. max_batch_size also caps the rows of a single
# request (Triton refuses more), so it is the runtime server's own --max-rows default: a request
# `housing-runtime serve` accepts, Triton accepts too. It is a cap, not an allocation: 1,000,000
# rows of 8 float32 are 32 MB in, 4 MB out.
MAX_BATCH_SIZE = MAX_ROWS
# dynamic_batching is left at its defaults: max_queue_delay_microseconds 0. A row costs well under
# a microsecond on a CPU, so waiting for a batch to fill would add more latency than it saves;
# with no delay, Triton still merges the requests that queue while the instance is busy, which is
# when batching pays. One CPU instance: the work per request is a few multiply-adds per row, and
# the batcher, not more instances, is what absorbs concurrent clients.
INSTANCE_COUNT = 1

# ONNX element types (onnx.TensorProto's names) as Triton's model_config DataType names them.
TRITON_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FLOAT16": "TYPE_FP16",
    "BFLOAT16": "TYPE_BF16",
    "FLOAT": "TYPE_FP32",
    "DOUBLE": "TYPE_FP64",
    "STRING": "TYPE_STRING",
}


@dataclass(frozen=True)
class Tensor:
    """One input or output as Triton declares it: dims without the batch dimension, -1 if variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def triton_tensor(value: onnx.ValueInfoProto, where: str) -> Tensor:
    """``value``'s name, Triton data type and dims; its first dimension must be the dynamic batch."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise UserError(f"{where} {shown(value.name)} is a {kind}, not a tensor; Triton's ONNX backend needs tensors")
    elem = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
    if elem not in TRITON_TYPES:
        raise UserError(f"{where} {shown(value.name)} has ONNX type {elem}, which Triton has no type for")
    dims = value.type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        raise UserError(
            f"{where} {shown(value.name)} has no dynamic first (batch) dimension; re-export it with `make export`"
        )
    rest = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:])
    return Tensor(value.name, TRITON_TYPES[elem], rest)


def signature(model: onnx.ModelProto, path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """The graph's inputs (initializers excluded: older IR versions list them as inputs) and outputs."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [triton_tensor(v, f"{path.name}'s input") for v in model.graph.input if v.name not in weights]
    outputs = [triton_tensor(v, f"{path.name}'s output") for v in model.graph.output]
    return inputs, outputs


def quoted(text: str) -> str:
    """``text`` escaped for a protobuf text format string (between double quotes)."""
    return CEscape(text, as_utf8=True)


def _tensor_block(key: str, tensors: list[Tensor]) -> list[str]:
    lines = [f"{key} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(map(str, t.dims))
        lines += ["  {", f'    name: "{quoted(t.name)}"', f"    data_type: {t.data_type}", f"    dims: [ {dims} ]"]
        lines.append("  }," if i < len(tensors) - 1 else "  }")
    return [*lines, "]"]


def render_config(variant: str, model: onnx.ModelProto, source: Path, data: bytes, manifest: Path) -> str:
    """config.pbtxt for one variant (protobuf text format; ``#`` starts a comment). File names
    only, never paths, so the bytes do not depend on where the artifacts are."""
    inputs, outputs = signature(model, source)
    lines = [
        f"# Generated by {PROG} (make triton-repo); edits are lost when it runs again.",
        f"# {VERSION}/{MODEL_FILE}: {source.name}, sha256 {sha256_bytes(data)}",
        f"# {source.name} checked against {manifest.name}, sha256 {sha256_file(manifest)}",
        f'name: "{quoted(variant)}"',
        'platform: "onnxruntime_onnx"',
        "# The models' dynamic batch dimension N; also the most rows in one request, as in housing-runtime serve.",
        f"max_batch_size: {MAX_BATCH_SIZE}",
        *_tensor_block("input", inputs),
        *_tensor_block("output", outputs),
        "# No queue delay (the default): a batch of this model costs less than waiting for one to fill.",
        "dynamic_batching { }",
        "instance_group [",
        "  {",
        f"    count: {INSTANCE_COUNT}",
        "    kind: KIND_CPU",
        "  }",
        "]",
    ]
    return "\n".join(lines) + "\n"


def repository_files(manifest: Path, models: dict[str, Path]) -> dict[str, bytes]:
    """Every file of the repository, by its path inside it; each model read once and checked
    against the manifest, so what is checked is what is written."""
    files: dict[str, bytes] = {MARKER: MARKER_TEXT.encode()}
    checked = {variant: read_checked(manifest, path) for variant, path in models.items()}
    for variant, data in checked.items():
        model = onnx.load_model_from_string(data)
        config = render_config(variant, model, models[variant], data, manifest)
        files[f"{variant}/{VERSION}/{MODEL_FILE}"] = data
        files[f"{variant}/{CONFIG_FILE}"] = config.encode()
    return files


def check_ours(output: Path) -> None:
    """Refuse to replace anything at ``output`` but a repository this module made."""
    if output.is_symlink() or (output.exists() and not (output.is_dir() and (output / MARKER).is_file())):
        raise UserError(
            f"{shown(str(output))} exists and was not made by make triton-repo; "
            "refusing to replace it (move it away, or pass another --output)"
        )


def swap_in(tmp: Path, output: Path) -> None:
    """Move the finished folder ``tmp`` onto ``output``, moving an earlier repository aside first and
    removing it after: at no moment is a half repository at ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if not output.exists():
        os.rename(tmp, output)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
    os.rename(output, old)  # onto the empty folder mkdtemp reserved
    try:
        os.rename(tmp, output)
    except BaseException:
        os.rename(old, output)
        raise
    shutil.rmtree(old)


def write_repository(output: Path, files: dict[str, bytes]) -> None:
    """``files`` as the repository at ``output``; the caller has checked that it may replace it."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=nearest_existing_folder(output)))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; Triton may run as another user
        # Plain writes: the folder is swapped in whole, so no file inside it needs its own rename.
        for name, data in sorted(files.items()):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        check_ours(output)  # again: a folder may have appeared while writing
        swap_in(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="input: manifest.json from make all")
    for variant in MODEL_VARIANTS:
        parser.add_argument(f"--{variant}", type=Path, required=True, help=f"input: the {variant} ONNX model")
    parser.add_argument("--output", type=Path, required=True, help="output: the repository folder (replaced whole)")
    args = parser.parse_args(argv)
    models = {variant: getattr(args, variant) for variant in MODEL_VARIANTS}
    check_ours(args.output)  # before reading anything, so a refusal is quick
    write_repository(args.output, repository_files(args.manifest, models))
    print(f"triton: {len(models)} models and their config.pbtxt written to {args.output}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
