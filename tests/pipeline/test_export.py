"""Unit tests of the ONNX graphs, built from random weights: no dataset needed."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from helpers import california_like_rows, linear_model, random_params
from pipeline import config
from pipeline.compat.rejected import matmul_dequant_model
from pipeline.graphs import build, onnx_spec, tolerances, verify

LEVELS = list(verify.optimization_levels().items())


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("label,level", LEVELS, ids=[name for name, _ in LEVELS])
def test_uint8_graph_equals_numpy_dequantized_dot_product_at_every_level(seed, label, level):
    params = random_params(seed)
    blob = build.build_uint8_model(params).SerializeToString()
    X = california_like_rows(seed=seed)
    expected = X.astype(np.float64) @ params.weights().astype(np.float64) + float(params.intercept)
    got = verify.run_session(verify.make_session(blob, level), X)
    # float32 sums with terms up to |1400 * 1.28|: relative error of a few float32 ulps.
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerances.TOL_SYNTHETIC_UINT8_GRAPH)


def test_uint8_graph_structure_and_pinned_versions():
    model = build.build_uint8_model(random_params(1))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == onnx_spec.ONNX_IR_VERSION
    assert {(o.domain, o.version) for o in model.opset_import} == {("", onnx_spec.ONNX_OPSET)}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert inits["coef_codes"].dtype == np.uint8 and inits["coef_codes"].shape == (8,)
    assert inits["coef_scale"].shape == () and inits["coef_zero_point"].dtype == np.uint8
    # The only float weights stored are the scale and the intercept: no hidden float copy.
    floats = [n for n, a in inits.items() if a.dtype.kind == "f"]
    assert sorted(floats) == ["coef_scale", "intercept"]
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "DequantizeLinear" and "MatMul" not in ops and "Gemm" not in ops
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == onnx_spec.INPUT_NAME and inp.type.tensor_type.elem_type == TensorProto.FLOAT
    assert len(dims) == 2 and dims[0].dim_param == onnx_spec.BATCH_DIM and dims[1].dim_value == 8
    (out,) = model.graph.output
    assert out.type.tensor_type.shape.dim[0].dim_param == onnx_spec.BATCH_DIM


def test_skl2onnx_conversion_uses_only_standard_float32_ops_and_names_the_batch():
    """What lets OpenVINO, tract and onnxruntime 1.16 run the file: no ai.onnx.ml domain, no
    MatMul (bf16 in OpenVINO by default), opset 19 at IR 9, and a batch dimension named N."""
    model = build.convert_sklearn(linear_model(np.arange(8) * 0.1, 2.0))
    assert model.ir_version == onnx_spec.ONNX_IR_VERSION == 9
    assert {(o.domain, o.version) for o in model.opset_import} == {("", onnx_spec.ONNX_OPSET)}
    ops = [n.op_type for n in model.graph.node]
    assert ops[:2] == ["Mul", "ReduceSum"] and "MatMul" not in ops and "LinearRegressor" not in ops
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == onnx_spec.BATCH_DIM
    coef = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}["coef"]
    np.testing.assert_array_equal(coef, (np.arange(8) * 0.1).astype(np.float32))


def _weight_as_row(model):
    coef = next(t for t in model.graph.initializer if t.name == "coef")
    coef.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(coef).reshape(1, 8), "coef"))


def _name_taken(model):
    model.graph.initializer.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "feature_axis"))


@pytest.mark.parametrize("spoil", [None, _weight_as_row, _name_taken], ids=["no MatMul", "1x8 weight", "name taken"])
def test_the_rewrite_refuses_a_graph_it_does_not_know(spoil):
    if spoil is None:
        model = build.build_uint8_model(random_params(1))
    else:
        model = build.skl2onnx_graph(linear_model(np.arange(8) * 0.1, 2.0))
        build.matmul_as_dot_product(onnx.load_from_string(model.SerializeToString()))  # unspoilt: fine
        spoil(model)
    with pytest.raises(verify.VerificationError, match="not one MatMul"):
        build.matmul_as_dot_product(model)


@pytest.mark.parametrize("seed", range(3))
def test_skl2onnx_conversion_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    sk = linear_model(rng.normal(size=8) * 0.3, rng.normal() * 10)
    model = build.convert_sklearn(sk)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == onnx_spec.ONNX_IR_VERSION
    assert len({o.domain for o in model.opset_import}) == len(model.opset_import)  # no repeated domain
    X = california_like_rows(seed=seed)
    for _, level in LEVELS:
        got = verify.run_session(verify.make_session(model.SerializeToString(), level), X)
        np.testing.assert_allclose(
            got, sk.predict(X.astype(np.float64)), rtol=0, atol=tolerances.TOL_SYNTHETIC_SKL2ONNX
        )


def test_metadata_carries_features_bits_metrics_and_input_hashes(tmp_path):
    source = tmp_path / "params.joblib"
    source.write_bytes(b"stand-in input")
    model = build.add_metadata(
        build.build_uint8_model(random_params()), "uint8", 8, {"r2": 0.5}, {"quant_params": source}
    )
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["feature_names"]) == list(config.FEATURE_NAMES)
    assert props["bits"] == "8" and props["variant"] == "uint8"
    assert json.loads(props["metrics"]) == {"r2": 0.5}
    import hashlib

    assert json.loads(props["input_sha256"]) == {"quant_params": hashlib.sha256(b"stand-in input").hexdigest()}


def test_verification_rejects_the_fused_matmul_graph():
    params = random_params(2)
    good = build.build_uint8_model(params).SerializeToString()
    bad = matmul_dequant_model(params).SerializeToString()
    X = california_like_rows()
    with pytest.raises(verify.VerificationError, match="ORT_ENABLE_EXTENDED|ORT_ENABLE_ALL|default"):
        verify.run_check(verify.Check("matmul vs mul", bad, good, tolerances.TOL_UINT8_VS_DEQUANT), X)


def test_verification_rejects_a_wrong_weight():
    params = random_params(3)
    X = california_like_rows()
    sk = linear_model(params.weights(), params.intercept)
    wrong = linear_model(params.weights() + np.array([0, 0, 0, 0, 0, 0, 1e-3, 0]), params.intercept)
    with pytest.raises(verify.VerificationError, match="max \\|difference\\|"):
        verify.run_check(
            verify.Check(
                "wrong",
                build.convert_sklearn(wrong).SerializeToString(),
                sk.predict(X.astype(np.float64)),
                tolerances.TOL_DEQUANT_VS_SKLEARN,
            ),
            X,
        )


def test_checker_rejects_an_invalid_graph():
    model = build.build_uint8_model(random_params())
    model.graph.node[1].input[1] = "no_such_tensor"
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model, full_check=True)
