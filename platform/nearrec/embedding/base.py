"""The Embedder protocol: text in, unit-length float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
"""A 2-D float32 array, one L2-normalised row per text."""


@runtime_checkable
class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """Identifies the model: vectors made by different ids must never be mixed in one collection."""
        ...

    @property
    def dim(self) -> int:
        """Dimensions of every vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts`` (in order) as an array of shape ``(len(texts), dim)``, rows of unit length."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating[Any]]) -> Vectors:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    out = np.asarray(vectors, dtype=np.float32)
    if out.ndim == 1:
        out = out.reshape(1, -1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
