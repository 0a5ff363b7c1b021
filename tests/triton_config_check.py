"""A Triton model repository's config.pbtxt files as Triton's own schema reads them: run by
tests/deploy/test_triton.py in tritonclient's venv (requirements-grpc-client.txt), which ships
Triton's generated model_config proto, so this file imports nothing of the project.

    python tests/triton_config_check.py REPOSITORY

Parses each ``REPOSITORY/*/config.pbtxt`` into ``inference.ModelConfig`` with protobuf's text
format parser (an unknown field or a wrong type is an error) and prints one JSON document, by
model folder: the fields the test compares, each data type also as the numpy dtype tritonclient
maps it to, and the version folders that hold a model.onnx.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import triton_to_np_dtype


def tensors(entries) -> list[dict]:
    return [
        {
            "name": t.name,
            "data_type": mc.DataType.Name(t.data_type),
            "dtype": np.dtype(triton_to_np_dtype(mc.DataType.Name(t.data_type).removeprefix("TYPE_"))).name,
            "dims": list(t.dims),
        }
        for t in entries
    ]


def read(folder: Path) -> dict:
    config = text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), mc.ModelConfig())
    return {
        "name": config.name,
        "platform": config.platform,
        "max_batch_size": config.max_batch_size,
        "input": tensors(config.input),
        "output": tensors(config.output),
        "dynamic_batching": config.HasField("dynamic_batching"),
        "max_queue_delay_microseconds": config.dynamic_batching.max_queue_delay_microseconds,
        "instance_group": [
            {"kind": mc.ModelInstanceGroup.Kind.Name(g.kind), "count": g.count} for g in config.instance_group
        ],
        "versions": sorted(p.parent.name for p in folder.glob("*/model.onnx")),
    }


def main(repository: str) -> dict:
    return {p.parent.name: read(p.parent) for p in sorted(Path(repository).glob("*/config.pbtxt"))}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
