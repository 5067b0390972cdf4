"""Embedders: text -> unit-length float32 vectors.

:func:`load_embedder` picks one from the settings: ``NEARREC_EMBEDDING_MODEL`` empty means the bundled
all-MiniLM-L6-v2; a directory or a cached model name loads that sentence-transformers model; ``hashing`` or
``hashing:<dims>`` selects the deterministic :class:`HashingEmbedder` (tests, demos).

``NEARREC_EMBEDDING_BACKEND`` says what runs a real model: ``torch`` (sentence-transformers), ``onnx`` (the
same model exported to ONNX, run by onnxruntime: same vectors, faster) or ``onnx-int8`` (the default: every
linear layer in int8, smoothed and per token, within the quality gate of torch's vectors, faster again).
The backend is part of the model id (``all-MiniLM-L6-v2@<hash>+onnx-int8.2``): vectors of two backends are
never mixed in one collection; changing it means ``nearrec reindex``, as for a model change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nearrec.embedding.base import Embedder, Vectors, l2_normalise
from nearrec.embedding.hashing import HashingEmbedder

if TYPE_CHECKING:
    from nearrec.config import Settings

__all__ = ["Embedder", "HashingEmbedder", "Vectors", "configured_model_id", "l2_normalise", "load_embedder"]


def load_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for (loading a real model takes a few seconds)."""
    name = settings.embedding_model.strip()
    dims = _hashing_dims(name)
    if dims is not None:
        return HashingEmbedder(dims)
    from nearrec.embedding.sentence import SentenceTransformerEmbedder, default_model_path, model_fingerprint

    if settings.embedding_backend == "torch":
        return SentenceTransformerEmbedder(
            name or default_model_path(),
            batch_size=settings.embedding_batch_size,
            torch_threads=settings.torch_threads,
        )
    from nearrec.embedding.onnx import OnnxEmbedder, ensure_onnx_model

    path = _onnx_model_dir(name, settings.embedding_backend)
    fingerprint = model_fingerprint(path)
    onnx_file = ensure_onnx_model(path, fingerprint, settings.embedding_backend, settings.data_dir / "models")
    return OnnxEmbedder(
        path,
        onnx_file,
        _with_backend(fingerprint, settings.embedding_backend),
        batch_size=settings.embedding_batch_size,
        batch_tokens=settings.embedding_batch_tokens,
        threads=settings.torch_threads,
    )


def configured_model_id(settings: Settings) -> str:
    """The ``model_id`` :func:`load_embedder` would report, without loading the model."""
    name = settings.embedding_model.strip()
    dims = _hashing_dims(name)
    if dims is not None:
        return HashingEmbedder(dims).model_id
    from nearrec.embedding.sentence import default_model_path, model_fingerprint

    if settings.embedding_backend != "torch":
        path = _onnx_model_dir(name, settings.embedding_backend)
        return _with_backend(model_fingerprint(path), settings.embedding_backend)
    path = Path(name).expanduser() if name else default_model_path()
    return model_fingerprint(path) if path.is_dir() else name


def _with_backend(model_id: str, backend: str) -> str:
    """``<model id>+<backend tag>``; torch keeps the bare model id (collections made before backends existed)."""
    from nearrec.embedding.onnx import backend_tag

    return model_id if backend == "torch" else f"{model_id}+{backend_tag(backend)}"


def _onnx_model_dir(name: str, backend: str) -> Path:
    """The model directory an onnx backend exports from (a name in the Hugging Face cache is not enough)."""
    from nearrec.embedding.sentence import default_model_path
    from nearrec.errors import ConfigError

    path = Path(name).expanduser() if name else default_model_path()
    if not path.is_dir():
        raise ConfigError(
            f"NEARREC_EMBEDDING_BACKEND={backend} needs a model directory, {name!r} is not one; "
            "set NEARREC_EMBEDDING_MODEL to the model's directory or NEARREC_EMBEDDING_BACKEND=torch"
        )
    return path


def _hashing_dims(name: str) -> int | None:
    """The dimensions of a ``hashing[:<dims>]`` model name; None for any other name."""
    from nearrec.errors import ConfigError

    if name != "hashing" and not name.startswith("hashing:"):
        return None
    _, _, dims = name.partition(":")
    try:
        value = int(dims) if dims else 64
    except ValueError:
        value = 0
    if value < 2:
        raise ConfigError(f"NEARREC_EMBEDDING_MODEL={name!r}: expected hashing or hashing:<dims>, dims >= 2")
    return value
