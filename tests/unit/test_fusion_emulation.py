"""The tuner's emulation of the hybrid (:func:`nearrec.model.validation.rrf_fuse` on
:func:`nearrec.model.ease.listed_scores`) ranks exactly like the served fused query of a real engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from nearrec.model.ease import listed_scores, prune_columns
from nearrec.model.validation import rrf_fuse
from nearrec.vectors.base import PointRecord, Sparse
from nearrec.vectors.edge import EdgeVectorStore

N_ITEMS, DIM, DEPTH, LIMIT = 60, 8, 25, 20
COL = "items"


def _example() -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    raw = rng.normal(size=(N_ITEMS, N_ITEMS)) * (rng.random((N_ITEMS, N_ITEMS)) < 0.25)
    np.fill_diagonal(raw, 0.0)
    weights = prune_columns(raw, 4)  # most items share no weight with a short history
    text = rng.normal(size=(N_ITEMS, DIM))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    history = np.zeros(N_ITEMS)
    history[[3, 17, 40]] = [1.0, 0.5, 0.25]
    user_text = rng.normal(size=DIM)
    return weights, text, history, user_text / np.linalg.norm(user_text)


@pytest.mark.parametrize("weight", [0.05, 0.35, 0.61])  # no RRF ties between the two lists here
def test_emulated_fusion_ranks_like_the_served_fused_query(tmp_path: Path, weight: float) -> None:
    weights, text, history, user_text = _example()
    seen = [3, 17, 40, 8]
    store = EdgeVectorStore(tmp_path / "vectors")
    try:
        store.ensure_collection(COL, {"text": DIM}, sparse=["ii1"])
        points = []
        for j in range(N_ITEMS):
            start, end = weights.indptr[j], weights.indptr[j + 1]
            named: dict[str, object] = {"text": text[j]}
            if end > start:  # point id == item index
                named["ii1"] = Sparse(weights.indices[start:end].tolist(), weights.data[start:end].tolist())
            points.append(PointRecord(j, named, {}))  # type: ignore[arg-type]
        store.upsert(COL, points)
        query = Sparse(np.flatnonzero(history).tolist(), history[history != 0].tolist())
        served = store.query_fused(
            COL, [(query, "ii1", 1.0), (user_text, "text", weight)], limit=LIMIT,
            exclude_ids=seen, prefetch_limit=DEPTH,
        )  # fmt: skip
    finally:
        store.close()
    cf = listed_scores(sp.csr_matrix(history[None, :]), weights)
    assert np.isinf(cf).sum() > N_ITEMS // 2  # the example does exercise unreachable items
    t = (text @ user_text)[None, :].astype(np.float64)
    cf[0, seen], t[0, seen] = -np.inf, -np.inf
    fused = rrf_fuse(cf, t, weight, DEPTH)[0]
    listed = np.flatnonzero(np.isfinite(fused))
    want = listed[np.argsort(-fused[listed], kind="stable")][:LIMIT]
    assert [h.id for h in served] == want.tolist()
    np.testing.assert_allclose([h.score for h in served], fused[want], rtol=1e-5)
