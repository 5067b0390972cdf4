"""A deterministic embedder for tests and demos: feature hashing of the words of a text.

Texts that share words get similar vectors, so nearest-neighbour behaviour is meaningful, and nothing is
loaded: vectors are available in microseconds. Select it with ``NEARREC_EMBEDDING_MODEL=hashing`` (or
``hashing:<dims>``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from nearrec.embedding.base import Vectors

_WORD = re.compile(r"\w+", re.UNICODE)
DEFAULT_DIM = 64


class HashingEmbedder:
    """Each lower-cased word adds +1 or -1 to one of ``dim`` buckets (both chosen by a hash of the word)."""

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        if dim < 2:
            raise ValueError(f"dim must be at least 2, got {dim}")
        self._dim = dim
        self.calls = 0  # number of embed() calls, for tests and benchmarks

    @property
    def model_id(self) -> str:
        return f"hashing:{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower()) or [""]
            for word in words:
                digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, digest % self._dim] += 1.0 if (digest >> 63) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:  # words cancelled out: fall back to the hash of the whole text
                digest = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
                out[row, digest % self._dim] = 1.0
                norm = 1.0
            out[row] /= norm
        return out
