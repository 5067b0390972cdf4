"""Scoring an evaluation: every test user's top k from the query service with each method, and the metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nearrec.config import Settings
from nearrec.errors import NotFoundError
from nearrec.evaluation import metrics
from nearrec.evaluation.dataset import Interactions
from nearrec.evaluation.split import LeaveOneOutSplit
from nearrec.query.methods import Method
from nearrec.query.service import QueryService
from nearrec.vectors.base import VectorStore

Progress = Callable[[str, int, int], None]
"""(stage, done, total)."""


def score_methods(
    query: QueryService,
    store: VectorStore,
    settings: Settings,
    data: Interactions,
    split: LeaveOneOutSplit,
    methods: Sequence[Method],
    k: int,
    progress: Progress | None,
) -> tuple[dict[str, dict[str, float]], dict[str, list[list[str]]], dict[str, float]]:
    """Query every test user with every method: metrics, ranked item ids and seconds per method."""
    code, n_catalogue, item_matrix = _catalogue(store, settings, data)
    users = [data.users[int(u)] for u in split.test_users]
    relevant = [[int(i)] for i in split.test_items]
    results: dict[str, dict[str, float]] = {}
    ranked_ids: dict[str, list[list[str]]] = {}
    timings: dict[str, float] = {}
    for method in methods:
        started = time.perf_counter()
        lists, durations = _top_k(query, users, method, k, progress)
        seconds = time.perf_counter() - started
        timings[f"query {method}"] = seconds
        ranked = np.full((len(users), k), -1, dtype=np.int64)
        for row, items in enumerate(lists):
            for col, item in enumerate(items[:k]):
                ranked[row, col] = code.get(item, -1)
        results[method] = _metrics(ranked, relevant, k, max(n_catalogue, 1), item_matrix)
        results[method]["ms_per_query"] = round(1000 * seconds / max(len(users), 1), 2)
        results[method]["p50_ms"] = round(1000 * float(np.median(durations)) if durations else 0.0, 2)
        ranked_ids[method] = lists
    return results, ranked_ids, timings


def _catalogue(
    store: VectorStore, settings: Settings, data: Interactions
) -> tuple[dict[str, int], int, np.ndarray[Any, np.dtype[np.float32]]]:
    """Item codes (the file's, then the catalogue's other items), the catalogue size and the text vectors by
    code (for the diversity metric)."""
    code = {name: n for n, name in enumerate(data.items)}
    point_code: dict[int, int] = {}
    vectors: dict[int, list[float]] = {}
    for hit in store.scroll(settings.items_collection, with_vectors=True):
        ext = hit.payload.get("external_id")
        if ext is None:
            continue
        if ext not in code:
            code[str(ext)] = len(code)
        point_code[hit.id] = code[str(ext)]
        if hit.vector and "text" in hit.vector:
            vectors[code[str(ext)]] = hit.vector["text"]
    dim = len(next(iter(vectors.values()))) if vectors else 1
    item_matrix = np.zeros((len(code), dim), dtype=np.float32)
    for c, vec in vectors.items():
        item_matrix[c] = vec
    return code, len(point_code), item_matrix


def _top_k(
    query: QueryService, users: Sequence[str], method: Method, k: int, progress: Progress | None
) -> tuple[list[list[str]], list[float]]:
    """Every user's top k ids, and each query's duration in seconds."""
    lists: list[list[str]] = []
    durations: list[float] = []
    for n, user in enumerate(users):
        tick = time.perf_counter()
        try:
            recs = query.recommend(user, k=k, method=method)
            lists.append([r.item_id for r in recs])
        except NotFoundError:
            lists.append([])
        durations.append(time.perf_counter() - tick)
        if progress is not None and (n % 50 == 0 or n == len(users) - 1):
            progress(f"query {method}", n + 1, len(users))
    return lists, durations


def _metrics(
    ranked: np.ndarray[Any, np.dtype[np.int64]],
    relevant: Sequence[Sequence[int]],
    k: int,
    n_items: int,
    item_vectors: np.ndarray[Any, np.dtype[np.float32]],
) -> dict[str, float]:
    return {
        f"ndcg@{k}": metrics.ndcg_at_k(ranked, relevant, k),
        f"recall@{k}": metrics.recall_at_k(ranked, relevant, k),
        f"hit_rate@{k}": metrics.hit_rate(ranked, relevant, k),
        f"mrr@{k}": metrics.mrr(ranked, relevant, k),
        f"coverage@{k}": metrics.catalogue_coverage(ranked, n_items, k),
        f"ild@{k}": metrics.intra_list_diversity(ranked, item_vectors, k),
    }


__all__ = ["score_methods"]
