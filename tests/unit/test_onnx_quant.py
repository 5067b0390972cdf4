"""The onnx-int8 recipe on small graphs run by onnxruntime: smoothing is exact, per-token int8 layers stay
within int8 rounding of fp32 whatever the rows' scales, both integer layouts give the same vectors, and the
CPU decides the layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nearrec.embedding.onnx import backend_tag, int8_kernels, onnx_model_file
from nearrec.embedding.onnx_quant import calibration_texts, int8_weight, linear_layers, per_token_int8, smooth

RNG = np.random.default_rng(7)
W1 = (RNG.standard_normal((16, 24)) * 0.2).astype(np.float32)
W2 = (RNG.standard_normal((16, 8)) * 0.2).astype(np.float32)
W3 = (RNG.standard_normal((24, 4)) * 0.2).astype(np.float32)


def two_layer_model() -> Any:
    """y1 = relu(x W1) W3 and y2 = x W2: two linear layers share the input x (as query, key, value do)."""
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"], name="first"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "W3"], ["y1"], name="third"),
        helper.make_node("MatMul", ["x", "W2"], ["y2"], name="second"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 16])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in ("y1", "y2")],
        [numpy_helper.from_array(w, n) for w, n in ((W1, "W1"), (W2, "W2"), (W3, "W3"))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: Any, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(y) for y in session.run(None, {"x": x})]


def inputs() -> np.ndarray:
    """Rows of very different magnitudes and one outlier channel: per-token scales must follow each row."""
    x = RNG.standard_normal((2, 5, 16)).astype(np.float32)
    x[0, 0] *= 100.0
    x[1, 2] *= 0.01
    x[:, :, 3] *= 8.0
    return x


def test_smoothing_moves_the_range_into_the_weights_without_changing_the_result() -> None:
    model, x = two_layer_model(), inputs()
    ranges = {"x": np.abs(x).max(axis=(0, 1)), "r": np.full(24, 2.0, dtype=np.float32)}
    smooth(model, ranges, alpha=0.7)
    for want, got in zip(run(two_layer_model(), x), run(model, x), strict=True):
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert not np.allclose(weights["W1"], W1)  # the weights did change
    assert sorted(linear_layers(model)) == ["r_smoothed", "x_smoothed"]


def test_per_token_int8_layers_stay_within_int8_rounding_of_fp32() -> None:
    x = inputs()
    model = two_layer_model()
    assert per_token_int8(model, unsigned_weights=False) == 3
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 3 and "MatMul" not in ops
    assert ops.count("QuantizeLinear") == 2  # x is quantised once for its two layers
    assert not {"W1", "W2", "W3"} & {i.name for i in model.graph.initializer}  # fp32 weights dropped
    want = run(two_layer_model(), x)
    for ref, got in zip(want, run(model, x), strict=True):
        # per row: the error scales with that row, so the tiny row is as exact as the huge one
        err = np.abs(got - ref).max(axis=-1) / np.maximum(np.abs(ref).max(axis=-1), 1e-9)
        assert err.max() < 0.05, err
        assert got.shape == ref.shape
    # a row of zeros stays zeros (no division by zero)
    zeros = np.zeros((1, 3, 16), dtype=np.float32)
    assert all(np.array_equal(y, np.zeros_like(y)) for y in run(model, zeros))


def test_both_integer_layouts_give_the_same_vectors() -> None:
    x = inputs()
    signed, unsigned = two_layer_model(), two_layer_model()
    per_token_int8(signed, unsigned_weights=False)
    per_token_int8(unsigned, unsigned_weights=True)
    for a, b in zip(run(signed, x), run(unsigned, x), strict=True):
        assert np.allclose(a, b, rtol=1e-6, atol=1e-7)
    q, scale, zero = int8_weight(W1, unsigned=True)
    s, _, _ = int8_weight(W1, unsigned=False)
    assert q.dtype == np.uint8 and s.dtype == np.int8 and set(zero.tolist()) == {128}
    assert np.array_equal(q.astype(np.int16) - 128, s) and np.abs(s).max() == 127
    assert np.allclose(s * scale, W1, atol=scale.max() / 2 + 1e-7)


def test_the_cpu_picks_the_integer_layout_and_the_cache_file(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n")
    vnni = int8_kernels(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    plain = int8_kernels(cpuinfo)
    missing = int8_kernels(tmp_path / "absent")
    import platform

    if platform.machine().lower() in ("arm64", "aarch64"):
        assert vnni == plain == missing == "u8s8"
    else:
        assert (vnni, plain, missing) == ("u8s8", "u8u8", "u8u8")
    assert backend_tag("onnx-int8") == "onnx-int8.2" and backend_tag("onnx") == "onnx"
    names = {onnx_model_file(tmp_path, "m@1", "onnx-int8", k).name for k in ("u8s8", "u8u8")}
    assert len(names) == 2 and all(".onnx-int8.2-u8" in n for n in names)
    assert ".onnx.ort-" in onnx_model_file(tmp_path, "m@1", "onnx").name


def test_calibration_texts_are_the_bundled_demo_catalog() -> None:
    texts = calibration_texts()
    assert len(texts) >= 300 and all(t.strip() for t in texts)
    assert len({t for t in texts}) == len(texts)


@pytest.mark.parametrize("kernels", ["u8s8", "u8u8"])
def test_weight_ranges_fit_eight_bits(kernels: str) -> None:
    q, scale, _ = int8_weight(W3 * 1000.0, unsigned=kernels == "u8u8")
    assert scale.dtype == np.float32 and scale.shape == (4,)
    assert q.min() >= (1 if kernels == "u8u8" else -127) and q.max() <= (255 if kernels == "u8u8" else 127)
