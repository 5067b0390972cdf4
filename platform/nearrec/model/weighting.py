"""What a ranking model is fitted and served with: a candidate configuration (:class:`ModelConfig`), the
training interactions as dense indices (:class:`Interactions`) and the history-weighting rule shared by
training, validation and serving (:func:`base_weights`, :func:`history`). No I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from nearrec.model.cf import CFMeta
from nearrec.model.ease import binary_matrix, decayed_history

Family = Literal["ease", "knn", "ridge"]


@dataclass(frozen=True)
class ModelConfig:
    """One candidate. ``low_weight`` is the weight of non-positive interactions in the training matrix and
    the history (0 drops them); ``type_weights`` multiplies positive interactions by type (default 1).
    Serving cost of item-item models: ``top_n`` weights kept per item column, and ``history`` the most recent
    distinct items in a user's query (None: all)."""

    family: Family = "ease"
    regularization: float = 100.0
    rank: int = 64
    neighbours: int = 100
    half_life: float | None = 10.0
    low_weight: float = 0.5
    type_weights: tuple[tuple[str, float], ...] = ()
    text_weight: float = 0.0
    top_n: int = 512
    history: int | None = None

    def label(self) -> str:
        main = {
            "ease": f"lambda {self.regularization:g}",
            "knn": f"neighbours {self.neighbours}",
            "ridge": f"rank {self.rank}, lambda {self.regularization:g}",
        }[self.family]
        types = ", ".join(f"{k} x{w:g}" for k, w in self.type_weights if w != 1.0)
        hl = "none" if self.half_life is None else f"{self.half_life:g}"
        extra = f", types {types}" if types else ""
        if self.family != "ridge":
            extra += f", top {self.top_n}, history {'all' if self.history is None else self.history}"
        return f"{self.family} ({main}), half-life {hl}, low {self.low_weight:g}{extra}, text {self.text_weight:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "regularization": self.regularization,
            "rank": self.rank,
            "neighbours": self.neighbours,
            "half_life": self.half_life,
            "low_weight": self.low_weight,
            "type_weights": dict(self.type_weights),
            "text_weight": self.text_weight,
            "top_n": self.top_n,
            "history": self.history,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelConfig:
        return cls(
            family=raw.get("family", "ease"),
            regularization=float(raw.get("regularization", 100.0)),
            rank=int(raw.get("rank", 64)),
            neighbours=int(raw.get("neighbours", 100)),
            half_life=None if raw.get("half_life") is None else float(raw["half_life"]),
            low_weight=float(raw.get("low_weight", 0.5)),
            type_weights=tuple(
                sorted((str(k), float(v)) for k, v in dict(raw.get("type_weights", {})).items())
            ),
            text_weight=float(raw.get("text_weight", 0.0)),
            top_n=int(raw.get("top_n", 512)),
            history=None if raw.get("history") is None else int(raw["history"]),
        )


@dataclass(frozen=True)
class Interactions:
    """Training interactions as dense indices. ``positive``: the product's rule (rating >= threshold or a
    type with a positive weight). ``timestamps`` None: no usable time order."""

    user_idx: NDArray[np.int64]
    item_idx: NDArray[np.int64]
    kinds: Sequence[str]
    positive: NDArray[np.bool_]
    timestamps: NDArray[np.float64] | None
    n_users: int
    n_items: int

    def subset(self, mask: NDArray[np.bool_]) -> Interactions:
        return Interactions(
            self.user_idx[mask], self.item_idx[mask], [k for k, m in zip(self.kinds, mask, strict=True) if m],
            self.positive[mask], None if self.timestamps is None else self.timestamps[mask],
            self.n_users, self.n_items,
        )  # fmt: skip


def served_config(meta: CFMeta) -> ModelConfig:
    """The history-weighting rule (and family) a served model was fitted with."""
    family: Family = "ridge" if meta.family == "ridge" else ("knn" if meta.family == "knn" else "ease")
    return ModelConfig(
        family=family,
        regularization=meta.regularization,
        rank=meta.rank,
        half_life=meta.half_life,
        low_weight=meta.non_positive_weight,
        type_weights=tuple(sorted(meta.type_weights.items())),
        text_weight=meta.text_weight,
        top_n=meta.top_n,
        history=meta.history,
    )


def base_weights(kinds: Sequence[str], positive: ArrayLike, config: ModelConfig) -> NDArray[np.float64]:
    """Per-interaction weight before recency: the type weight if positive, else ``low_weight``."""
    pos = np.asarray(positive, dtype=bool)
    types = dict(config.type_weights)
    if types:
        typed = np.fromiter((types.get(k, 1.0) for k in kinds), dtype=np.float64, count=pos.size)
    else:
        typed = np.ones(pos.size)
    return np.where(pos, typed, config.low_weight)


def history(data: Interactions, config: ModelConfig) -> sp.csr_matrix:
    """Users x items history weights under ``config`` (the query vector of every user)."""
    b = base_weights(data.kinds, data.positive, config)
    return decayed_history(
        data.user_idx, data.item_idx, b, data.timestamps, data.n_users, data.n_items, config.half_life,
        config.history if config.family != "ridge" else None,
    )  # fmt: skip


def training_matrix(data: Interactions, config: ModelConfig) -> sp.csr_matrix:
    """The 0/1 matrix the model is fitted on: interactions with a positive base weight."""
    keep = base_weights(data.kinds, data.positive, config) > 0
    return binary_matrix(data.user_idx[keep], data.item_idx[keep], data.n_users, data.n_items)


__all__ = [
    "Family",
    "Interactions",
    "ModelConfig",
    "base_weights",
    "history",
    "served_config",
    "training_matrix",
]
