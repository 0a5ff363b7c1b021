"""Generates the V2 gRPC stubs (``housing_runtime/serving/proto/*_pb2*.py``) from the vendored
``grpc_predict_v2.proto`` with grpcio-tools: ``make proto`` writes them into the checkout, and
tests/runtime/test_grpc_stubs.py writes them into a temporary folder and checks that the
committed ones match. They are committed so that neither a wheel build nor the image needs
grpcio-tools (8 MB, a build-only tool).

    python runtime/generate_proto.py [OUT_DIR]    # default: runtime/src
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent / "src"
PROTO = Path("housing_runtime/serving/proto/grpc_predict_v2.proto")
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """The stubs for PROTO, written under ``out_dir`` (as package paths); the files written."""
    from grpc_tools import protoc  # a test and build-time tool only

    (out_dir / PROTO.parent).mkdir(parents=True, exist_ok=True)
    args = ["protoc", f"-I{SRC}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main([*args, str(SRC / PROTO)]) != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {PROTO}")
    return [out_dir / PROTO.parent / name for name in GENERATED]


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC):
        print(path)
