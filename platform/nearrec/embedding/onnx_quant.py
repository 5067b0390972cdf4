"""The int8 recipe of ``NEARREC_EMBEDDING_BACKEND=onnx-int8``: smoothed, per-token int8 linear layers.

Every linear layer (query, key, value, attention output and both feed-forward layers of every block) runs as
an int8 x int8 matrix product with int32 accumulation (onnxruntime's ``MatMulIntegerToFloat``, VNNI where
the CPU has it), quantised so that the nearest neighbours stay torch's:

- weights per output channel, symmetric, 8 bits;
- activations per token (each row of each layer input gets its own scale, its largest magnitude / 127),
  computed while the model runs: a text's scales never depend on the other texts of its batch;
- SmoothQuant (Xiao et al., 2023): the few input channels with outlier magnitudes would take most of a
  token's 8 bits, so each input channel ``j`` of a layer is divided by ``s_j = a_j^alpha / w_j^(1-alpha)``
  (``a_j`` its largest magnitude over the calibration texts, ``w_j`` that of the weights' row ``j``) and the
  weights' row is multiplied by it: the same product, with the range spread between the two factors.

Calibration: the largest magnitude of each input channel of each layer, over the bundled demo catalog's
texts (shipped with nearrec, so the build needs nothing else).

Two integer layouts with the same exact integer arithmetic, hence the same vectors: ``u8s8`` (activations
unsigned, weights signed) is the fast one on CPUs with VNNI dot products (and on ARM); ``u8u8`` (weights
shifted to unsigned) avoids the 16-bit saturation of AVX2's ``vpmaddubsw`` on x86 CPUs without VNNI.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SMOOTH_ALPHA = 0.7
KERNELS = ("u8s8", "u8u8")
DEMO_ITEMS = Path(__file__).resolve().parents[1] / "demo" / "items.csv"
Array = npt.NDArray[np.float32]


def calibration_texts(path: Path = DEMO_ITEMS) -> list[str]:
    """The bundled demo catalog's item documents (title and description), the calibration texts."""
    with open(path, encoding="utf-8", newline="") as f:
        return [f"{r['title']}. {r['description']}" for r in csv.DictReader(f)]


def quantise(src: Path, out: Path, tokenizer_file: Path, kernels: str, alpha: float = SMOOTH_ALPHA) -> int:
    """Write the int8 model of the fp32 model ``src`` to ``out``; return the number of int8 layers."""
    import onnx

    if kernels not in KERNELS:
        raise ValueError(f"unknown int8 kernels {kernels!r}; choose from {', '.join(KERNELS)}")
    model = onnx.load(str(src))
    ranges = activation_ranges(model, tokenizer_file, calibration_texts())
    smooth(model, ranges, alpha)
    count = per_token_int8(model, unsigned_weights=kernels == "u8u8")
    onnx.save(model, str(out))
    return count


def linear_layers(model: Any) -> dict[str, list[Any]]:
    """The MatMul nodes with a constant weight, grouped by their input (query, key and value share one)."""
    weights = {i.name for i in model.graph.initializer}
    groups: dict[str, list[Any]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def activation_ranges(
    model: Any, tokenizer_file: Path, texts: list[str], batch: int = 64
) -> dict[str, Array]:
    """The largest magnitude of each channel of each linear layer's input over ``texts`` (real tokens only)."""
    import onnx
    import onnxruntime as ort
    from tokenizers import Tokenizer

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = sorted(linear_layers(model))
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    encodings = tokenizer.encode_batch(texts)
    ranges: dict[str, Array] = {}
    for start in range(0, len(encodings), batch):
        part = encodings[start : start + batch]
        ids = np.zeros((len(part), max(len(e.ids) for e in part)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(part):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        inputs = {i.name for i in session.get_inputs()}
        outs = session.run(names, {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(names, outs, strict=True):
            top = np.abs(np.asarray(value)[mask.astype(bool)]).max(axis=0).astype(np.float32)
            ranges[name] = np.maximum(ranges[name], top) if name in ranges else top
    return ranges


def smooth(model: Any, ranges: dict[str, Array], alpha: float) -> None:
    """SmoothQuant, in place: weights' rows times ``s``, the layer input times ``1 / s`` (one Mul per input)."""
    from onnx import helper, numpy_helper

    weights = {i.name: i for i in model.graph.initializer}
    for source, nodes in linear_layers(model).items():
        w_max = np.max(
            [np.abs(numpy_helper.to_array(weights[n.input[1]])).max(axis=1) for n in nodes], axis=0
        )
        scale = (np.maximum(ranges[source], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)).astype(
            np.float32
        )
        smoothed = f"{source}_smoothed"
        for node in nodes:
            weight = numpy_helper.to_array(weights[node.input[1]]) * scale[:, None]
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), node.input[1]))
            node.input[0] = smoothed
        model.graph.initializer.append(numpy_helper.from_array(1 / scale, f"{source}_inverse_smoothing"))
        first = min(i for i, n in enumerate(model.graph.node) if smoothed in n.input)
        model.graph.node.insert(
            first, helper.make_node("Mul", [source, f"{source}_inverse_smoothing"], [smoothed])
        )


def per_token_int8(model: Any, *, unsigned_weights: bool) -> int:
    """Replace every linear layer by per-token u8 activations x per-channel int8 weights, in place."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    layers = {n.output[0]: x for x, nodes in linear_layers(model).items() for n in nodes}
    constants: dict[str, npt.NDArray[Any]] = {
        "q8_inverse_127": np.array(1 / 127, dtype=np.float32),
        "q8_one": np.array(1.0, dtype=np.float32),
        "q8_tiny": np.array(1e-12, dtype=np.float32),
        "q8_zero_point": np.array(128, dtype=np.uint8),
    }
    nodes: list[Any] = []
    quantised: set[str] = set()
    replaced: set[str] = set()
    for node in graph.node:
        source = layers.get(node.output[0])
        if source is None:
            nodes.append(node)
            continue
        if source not in quantised:
            nodes.extend(_quantise_rows(helper, source))
            quantised.add(source)
        prefix = node.output[0]
        weight = numpy_helper.to_array(weights[node.input[1]])
        replaced.add(node.input[1])
        q_weight, w_scale, w_zero = int8_weight(weight, unsigned=unsigned_weights)
        graph.initializer.extend(
            [
                numpy_helper.from_array(q_weight, prefix + "_q8"),
                numpy_helper.from_array(w_scale, prefix + "_q8_scale"),
                numpy_helper.from_array(w_zero, prefix + "_q8_zero"),
            ]
        )
        inputs = [
            f"{source}_u8",
            prefix + "_q8",
            "q8_one",
            prefix + "_q8_scale",
            "q8_zero_point",
            prefix + "_q8_zero",
        ]
        nodes.append(
            helper.make_node("MatMulIntegerToFloat", inputs, [prefix + "_q8_out"], domain="com.microsoft")
        )
        nodes.append(helper.make_node("Mul", [prefix + "_q8_out", f"{source}_row_scale"], [node.output[0]]))
    kept = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + [numpy_helper.from_array(v, k) for k, v in constants.items()])
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(layers)


def int8_weight(weight: Array, *, unsigned: bool) -> tuple[npt.NDArray[Any], Array, npt.NDArray[Any]]:
    """Symmetric per-output-channel 8-bit weights, their scales and zero points (128 when unsigned)."""
    scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127).astype(np.float32)
    q = np.clip(np.round(weight / scale), -127, 127).astype(np.int16)
    if unsigned:
        return (q + 128).astype(np.uint8), scale, np.full(weight.shape[1], 128, dtype=np.uint8)
    return q.astype(np.int8), scale, np.zeros(weight.shape[1], dtype=np.int8)


def _quantise_rows(helper: Any, x: str) -> list[Any]:
    """Nodes giving ``x_row_scale`` (each row's largest magnitude / 127) and ``x_u8`` (x / scale + 128)."""
    return [
        helper.make_node("Abs", [x], [f"{x}_abs"]),
        helper.make_node("ReduceMax", [f"{x}_abs"], [f"{x}_row_max"], axes=[-1], keepdims=1),
        helper.make_node("Max", [f"{x}_row_max", "q8_tiny"], [f"{x}_row_max_safe"]),
        helper.make_node("Mul", [f"{x}_row_max_safe", "q8_inverse_127"], [f"{x}_row_scale"]),
        helper.make_node("Div", [x, f"{x}_row_scale"], [f"{x}_scaled"]),
        helper.make_node("QuantizeLinear", [f"{x}_scaled", "q8_one", "q8_zero_point"], [f"{x}_u8"]),
    ]
