"""Build the ONNX file of an embedding backend from a local sentence-transformers model (no download).

Run in a child process by :func:`nearrec.embedding.onnx.ensure_onnx_model` so that the worker never imports
torch (its memory stays that of onnxruntime alone)::

    python -m nearrec.embedding.onnx_build MODEL_DIR BACKEND OUT_FILE [u8s8|u8u8]

The graph takes ``input_ids``, ``attention_mask`` and ``token_type_ids`` and returns the mean-pooled,
L2-normalised sentence vector (``embedding``), then onnxruntime's transformer optimizer fuses attention,
layer norms and GELU. ``onnx-int8`` keeps the query, key and value projections apart (multi-head attention
fusion) and turns every linear layer into int8 (:mod:`nearrec.embedding.onnx_quant`; the last argument
picks the integer layout for this CPU).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from nearrec.errors import ConfigError

OPSET = 17


def check_mean_pooling(model_dir: Path) -> None:
    """The ONNX graph does mean pooling + normalisation: refuse a model that pools otherwise."""
    modules = _json(model_dir / "modules.json", [])
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    pooling = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    config = _json(model_dir / str(pooling.get("path", "")) / "config.json", {}) if pooling else {}
    modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v)
    if kinds[:2] != ["Transformer", "Pooling"] or modes != ["pooling_mode_mean_tokens"]:
        raise ConfigError(
            f"embedding model {model_dir}: the onnx backends support Transformer + mean Pooling models "
            f"only (found modules {kinds}, pooling {modes}); set NEARREC_EMBEDDING_BACKEND=torch"
        )


def build(model_dir: Path, backend: str, out: Path, kernels: str = "u8s8") -> None:
    """Write the ``backend`` ONNX file of ``model_dir`` to ``out`` (``kernels``: the int8 layout)."""
    from nearrec.embedding.onnx_quant import KERNELS, quantise

    if backend not in ("onnx", "onnx-int8"):
        raise ConfigError(f"unknown onnx backend {backend!r}")
    if kernels not in KERNELS:
        raise ConfigError(f"unknown int8 kernels {kernels!r}; choose from {', '.join(KERNELS)}")
    check_mean_pooling(model_dir)
    with tempfile.TemporaryDirectory(prefix="nearrec-onnx-") as tmp:
        raw, fused = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx"
        config = _export(model_dir, raw)
        _fuse(raw, fused, config, separate_projections=backend == "onnx-int8")
        if backend == "onnx":
            fused.replace(out)
        elif quantise(fused, out, model_dir / "tokenizer.json", kernels) == 0:
            raise ConfigError(f"onnx-int8: found no linear layer to quantise in {model_dir}")


def _export(model_dir: Path, out: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager")
    model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    ids = torch.ones(2, 16, dtype=torch.long)
    mask = ids.clone()
    mask[1, 9:] = 0  # a padded row, so that the traced graph keeps the attention mask
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["embedding"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            Pooled(),
            (ids, mask, torch.zeros_like(ids)),
            str(out),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return dict(model.config.to_dict())


def _fuse(src: Path, out: Path, config: dict[str, Any], *, separate_projections: bool) -> None:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    # MultiHeadAttention takes the query, key and value projections as three MatMuls, which int8 replaces;
    # the Attention op would pack them inside itself (as fast in fp32).
    options.use_multi_head_attention = separate_projections
    optimised = optimize_model(
        str(src),
        model_type="bert",
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
        opt_level=1,
        optimization_options=options,
    )
    optimised.save_model_to_file(str(out))


def _json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(
            "usage: python -m nearrec.embedding.onnx_build MODEL_DIR BACKEND OUT_FILE [u8s8|u8u8]",
            file=sys.stderr,
        )
        return 2
    import warnings

    warnings.simplefilter("ignore")  # the exporter's tracer warnings are about code paths not taken
    try:
        build(Path(argv[0]), argv[1], Path(argv[2]), *argv[3:])
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
