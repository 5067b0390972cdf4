"""User-vector math (pure numpy, no I/O): shared by the sync worker and the query service (anonymous sessions).

A user vector blends two unit vectors:

- the *history*: the weighted mean of the vectors of the items the user interacted with. An interaction's
  weight is the weight of its type (``interaction_weights``; a ``rating`` counts positive when its value
  is >= ``rating_threshold`` and negative below) times the recency decay ``0.5 ** (rank / half_life)``,
  where ``rank`` is 0 for the most recent interaction, 1 for the one before, and so on. Negative weights
  (e.g. ``dislike``) push the vector away from those items.
- the *profile*: the embedding of the user's profile text, with weight ``profile_weight`` relative to the
  history (both are unit length before blending). Without history the profile alone is the vector.

The result is L2-normalised. With neither history nor profile there is no vector (``None``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from nearrec.config import Settings

FloatArray = npt.NDArray[np.floating[Any]]
UNKNOWN_TYPE_WEIGHT = 1.0
"""Weight of an interaction type missing from ``interaction_weights``."""
NEGLIGIBLE = 1e-6
"""Interactions older than the rank where the decay falls below this are ignored (see ``history_limit``)."""


@dataclass(frozen=True, slots=True)
class UserVectorParams:
    """The user-vector knobs; their defaults live in :class:`nearrec.config.Settings` (``from_settings``)."""

    interaction_weights: Mapping[str, float]
    rating_threshold: float
    half_life: float
    profile_weight: float

    @classmethod
    def from_settings(cls, settings: Settings) -> UserVectorParams:
        return cls(
            interaction_weights=dict(settings.interaction_weights),
            rating_threshold=settings.rating_threshold,
            half_life=settings.half_life,
            profile_weight=settings.profile_weight,
        )

    @property
    def history_limit(self) -> int:
        """How many of the most recent interactions matter: beyond it the decay is below ``NEGLIGIBLE``."""
        return max(1, math.ceil(self.half_life * math.log2(1 / NEGLIGIBLE)))


def params_fingerprint(params: UserVectorParams) -> str:
    """A short digest of the settings: part of what stored user vectors record they were computed with."""
    doc = {
        "w": sorted(params.interaction_weights.items()),
        "r": params.rating_threshold,
        "h": params.half_life,
        "p": params.profile_weight,
    }
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:12]


def type_weight(kind: str, value: float | None, params: UserVectorParams) -> float:
    """Weight of one interaction before recency: its type's weight, signed by the rating for ``rating``."""
    weight = params.interaction_weights.get(kind, UNKNOWN_TYPE_WEIGHT)
    if kind == "rating" and value is not None and value < params.rating_threshold:
        return -abs(weight)
    return weight


def history_weights(
    events: Sequence[tuple[str, float | None]], params: UserVectorParams
) -> npt.NDArray[np.float64]:
    """Weights of a user's interactions given as ``(type, value)``, MOST RECENT FIRST."""
    ranks = np.arange(len(events), dtype=np.float64)
    decay = np.power(0.5, ranks / params.half_life)
    kinds = np.array([type_weight(k, v, params) for k, v in events], dtype=np.float64)
    return kinds * decay


def build_user_vector(
    profile_vec: FloatArray | None,
    item_vecs: FloatArray,
    weights: FloatArray,
    profile_weight: float = 0.3,
) -> npt.NDArray[np.float32] | None:
    """Blend a profile embedding with the weighted mean of item vectors; ``None`` when there is nothing.

    ``item_vecs`` is ``(n, dim)`` (n may be 0) and ``weights`` its ``n`` weights (see
    :func:`history_weights`); rows of unknown items must be dropped together with their weights.
    """
    item_vecs = np.asarray(item_vecs, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if item_vecs.ndim != 2 or item_vecs.shape[0] != weights.shape[0]:
        raise ValueError(f"item_vecs {item_vecs.shape} and weights {weights.shape} do not match")
    total: npt.NDArray[np.float64] | None = None
    denom = float(np.abs(weights).sum())
    if denom > 0:
        total = _unit((weights[:, None] * item_vecs).sum(axis=0) / denom)
    if profile_vec is not None:
        profile = _unit(np.asarray(profile_vec, dtype=np.float64).reshape(-1))
        if profile is not None:
            total = profile if total is None else total + max(profile_weight, 0.0) * profile
    out = None if total is None else _unit(total)
    return None if out is None else out.astype(np.float32)


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-12 else None
