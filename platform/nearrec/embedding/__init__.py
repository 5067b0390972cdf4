"""Embedders: text -> unit-length float32 vectors.

:func:`load_embedder` picks one from the settings: ``NEARREC_EMBEDDING_MODEL`` empty means the bundled
all-MiniLM-L6-v2; a directory or a cached model name loads that sentence-transformers model; ``hashing`` or
``hashing:<dims>`` selects the deterministic :class:`HashingEmbedder` (tests, demos).
"""

from __future__ import annotations

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
    from nearrec.embedding.sentence import SentenceTransformerEmbedder, default_model_path

    return SentenceTransformerEmbedder(
        name or default_model_path(),
        batch_size=settings.embedding_batch_size,
        torch_threads=settings.torch_threads,
    )


def configured_model_id(settings: Settings) -> str:
    """The ``model_id`` :func:`load_embedder` would report, without loading the model."""
    from pathlib import Path

    name = settings.embedding_model.strip()
    dims = _hashing_dims(name)
    if dims is not None:
        return HashingEmbedder(dims).model_id
    from nearrec.embedding.sentence import default_model_path, model_fingerprint

    path = Path(name).expanduser() if name else default_model_path()
    return model_fingerprint(path) if path.is_dir() else name


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
