"""Synthetic interaction logs where the right model family is known (pure numpy, seeded; no I/O).

- :func:`sequential`: users read items along hidden chains (item ``c[k]`` is followed by ``c[k + 1]``), with
  occasional random jumps. The next item depends on the last one only: item-item co-occurrence, which a
  low-rank model cannot hold, so an item-item model (EASE with a small lambda) must win.
- :func:`low_rank`: users pick items by a low-rank taste (``softmax(u . v)`` over items, a few factors),
  with few interactions per user and no order. A factor model generalises from sparse histories; the
  item-item model overfits pair counts, so the low-rank ridge model must win.

Both return :class:`SyntheticLog` (one positive interaction per row, timestamps = reading order), used by
the tests and by ``bench/quality.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["SyntheticLog", "low_rank", "sequential"]


@dataclass(frozen=True)
class SyntheticLog:
    user_idx: NDArray[np.int64]
    item_idx: NDArray[np.int64]
    timestamps: NDArray[np.float64]
    n_users: int
    n_items: int
    family: str
    """The family that must win on this log ("ease" or "ridge")."""

    def __len__(self) -> int:
        return int(self.user_idx.size)


def sequential(
    n_users: int = 2000, n_items: int = 1500, length: int = 12, jump: float = 0.1, seed: int = 0
) -> SyntheticLog:
    """Users walk hidden item chains: each step goes to the next item of the chain, else (``jump``) to a
    random item. Items are never repeated within a user."""
    rng = np.random.default_rng(seed)
    chain = rng.permutation(n_items)
    position = np.empty(n_items, dtype=np.int64)
    position[chain] = np.arange(n_items)
    popularity = rng.zipf(1.6, size=n_items).astype(np.float64)
    start_p = popularity / popularity.sum()
    users: list[int] = []
    items: list[int] = []
    times: list[float] = []
    for u in range(n_users):
        current = int(rng.choice(n_items, p=start_p))
        seen = {current}
        walk = [current]
        while len(walk) < length:
            if rng.random() < jump:
                nxt = int(rng.integers(n_items))
            else:
                nxt = int(chain[(position[current] + 1) % n_items])
            if nxt in seen:
                nxt = int(rng.integers(n_items))
                if nxt in seen:
                    continue
            seen.add(nxt)
            walk.append(nxt)
            current = nxt
        users.extend([u] * len(walk))
        items.extend(walk)
        times.extend(float(1000 * u + t) for t in range(len(walk)))
    return SyntheticLog(
        np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64),
        np.asarray(times, dtype=np.float64), n_users, n_items, "ease",
    )  # fmt: skip


def low_rank(
    n_users: int = 2000, n_items: int = 800, rank: int = 3, per_user: int = 8, sharpness: float = 3.0,
    seed: int = 0,
) -> SyntheticLog:  # fmt: skip
    """Users draw ``per_user`` distinct items from ``softmax(sharpness * u . v)`` with unit-norm rank-``rank``
    factors; times are random (no sequence to exploit)."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, rank))
    v = rng.normal(size=(n_items, rank))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    logits = sharpness * (u @ v.T)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    users: list[int] = []
    items: list[int] = []
    for n in range(n_users):
        picked = rng.choice(n_items, size=per_user, replace=False, p=p[n])
        users.extend([n] * per_user)
        items.extend(int(i) for i in picked)
    times = rng.random(len(users)) * 1e6
    return SyntheticLog(
        np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), times, n_users, n_items, "ridge"
    )
