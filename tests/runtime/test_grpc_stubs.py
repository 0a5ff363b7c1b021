"""The committed V2 gRPC stubs are what grpcio-tools generates from the vendored proto today, and
the proto is KServe's, licence header and all: an edit to either without the other fails here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_proto", ROOT / "runtime" / "generate_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_proto(tmp_path):
    generator = load_generator()
    for fresh in generator.generate(tmp_path):
        committed = generator.SRC / generator.PROTO.parent / fresh.name
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed.name} is stale: run make proto"


def test_the_proto_is_the_vendored_spec():
    text = (load_generator().SRC / "housing_runtime/serving/proto/grpc_predict_v2.proto").read_text()
    assert text.startswith("// Copyright 2022 The KServe Authors.\n")
    assert "// Licensed under the Apache License, Version 2.0" in text.splitlines()[2]
    assert "package inference;" in text and "service GRPCInferenceService" in text
