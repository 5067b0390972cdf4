"""Nearest-neighbour retrieval that keeps the service's guarantees: the business filter, active items only,
never a banned (seen or excluded) item, and exactly ``needed`` results while candidates last.

The most recent ``seen_filter_limit`` banned ids go into the store's ``must_not has_id`` filter; the older
ones are removed after the fact, paging through candidates until there are enough. The hybrid method is ONE
store query: the model's and the text prefetches, each under the same filter and exclusions, fused by
weighted reciprocal rank fusion (:meth:`Retriever.fused`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from nearrec.config import Settings
from nearrec.errors import ValidationError
from nearrec.filters import And, Eq, FilterExpr
from nearrec.model.cf import CFMeta
from nearrec.model.fusion import mmr_rerank
from nearrec.query.methods import Method
from nearrec.vectors import payload
from nearrec.vectors.base import AnyVector, Hit, VectorStore

TEXT = "text"
"""Name of the text vector of items and users."""
ACTIVE = Eq(payload.ACTIVE, 1)
MAX_PAGES = 12
MODEL_CACHE_ITEMS = 250_000
"""Trained item vectors kept in memory (~65 MB of 65-d float32 ones), see :class:`ModelVectors`."""
MODEL_CACHE_TTL = 300.0

FloatVector = np.ndarray[Any, np.dtype[np.float32]]
FloatMatrix = np.ndarray[Any, np.dtype[np.float32]]


def read_vectors(
    store: VectorStore, collection: str, ids: Sequence[int], using: str
) -> dict[int, FloatVector]:
    """The dense ``using`` vector of each point of ``ids`` that has one, as float32. Asks for that vector
    only; a collection without it (a later training dropped it) refuses the name: then none has it."""
    try:
        hits = store.retrieve(collection, list(ids), with_vectors=[using])
    except ValidationError:
        hits = store.retrieve(collection, list(ids), with_vectors=True)  # an error again if not the name
    return {
        h.id: np.asarray(h.vector[using], dtype=np.float32) for h in hits if h.vector and using in h.vector
    }


def next_page(page: int, missing: int, rest_left: int, fetched: int, dropped: int) -> int:
    """The size of the next page of candidates when ``missing`` results are still wanted: sized by the share
    of banned ids met so far (a model ranks the user's own older items high, so that share can be large),
    at least double the last page, and never more than what surely completes the list (``missing`` plus the
    banned ids not met yet)."""
    kept = max(fetched - dropped, 1) / fetched
    return min(missing + max(rest_left, 0), max(2 * page, math.ceil(1.5 * missing / kept)))


class ModelVectors:
    """The trained model's dense item vectors, cached (thread safe) as the rows of one matrix, so a history's
    vectors are one fancy index (a fold-in of 200 items costs microseconds, not a stack of 200 arrays).

    `nearrec train` writes each model under a new vector name (``cf<generation>``) and swaps the model
    record only once all are written, so an item's vector under one name does not change: the cache is keyed
    by the name and emptied when it changes. It is also emptied every ``ttl`` seconds (an absent vector is
    cached too), so a point removed or rewritten since is seen within that time. Every call also reads one
    cached item from the store (the probe): when its vector is gone (a later training dropped the vector a
    reader of the old model record still names), the cache is emptied and the call reads the store, as
    without a cache. Reads ask the store for the model's vector only (a point's every vector, the 384-d text
    one too, costs ~30 us an item to convert). Rows are only appended, and the table is replaced whole past
    ``max_items`` rows, so readers use its arrays outside the lock."""

    def __init__(self, max_items: int = MODEL_CACHE_ITEMS, ttl: float = MODEL_CACHE_TTL) -> None:
        self.max_items = max_items
        self.ttl = ttl
        self._table = _Table(None, 0.0)
        self._lock = threading.Lock()

    def get(
        self, store: VectorStore, collection: str, ids: Sequence[int], using: str
    ) -> dict[int, FloatVector]:
        """``{id: vector}`` of the ids that have one."""
        found, rows = self.rows(store, collection, ids, using)
        return dict(zip(np.asarray(ids, dtype=np.int64)[found].tolist(), rows, strict=True))

    def rows(
        self, store: VectorStore, collection: str, ids: Sequence[int], using: str
    ) -> tuple[npt.NDArray[np.bool_], FloatMatrix]:
        """Which of ``ids`` have the ``using`` vector (a mask) and their vectors, in the order of ``ids``."""
        now = time.monotonic()
        with self._lock:
            if self._table.name != using or now - self._table.created > self.ttl:
                self._table = _Table(using, now)
            table = self._table
            slot = np.fromiter((table.slots.get(i, -1) for i in ids), np.int64, len(ids))
            present, matrix = table.present, table.matrix
        cached = slot >= 0
        usable = cached.copy()
        usable[cached] = present[slot[cached]]
        missing = [ids[n] for n in np.flatnonzero(~cached).tolist()]
        probe = [ids[int(np.argmax(usable))]] if usable.any() else []
        found = read_vectors(store, collection, [*missing, *probe], using) if missing or probe else {}
        if probe and probe[0] not in found:  # the vector is gone: start again from the store
            with self._lock:
                if self._table is table:
                    self._table = table = _Table(using, now)
            cached[:], usable[:], missing = False, False, list(ids)
            found = read_vectors(store, collection, missing, using)
        if missing:
            self._add(table, missing, found)
        if not missing or not found:
            return usable, matrix[slot[usable]]  # all from memory (or no new one has the vector)
        out = np.zeros((len(ids), next(iter(found.values())).shape[0]), dtype=np.float32)
        if usable.any():
            out[usable] = matrix[slot[usable]]
        for n in np.flatnonzero(~cached).tolist():
            vector = found.get(ids[n])
            if vector is not None:
                out[n], usable[n] = vector, True
        return usable, out[usable]

    def _add(self, table: _Table, missing: list[int], found: dict[int, FloatVector]) -> None:
        with self._lock:
            if self._table is not table:
                return
            if table.size + len(missing) > self.max_items:
                self._table = table = _Table(table.name, table.created)
            table.append(missing, found)


class _Table:
    """The rows of :class:`ModelVectors`: item id -> row, whether the row has a vector, the vectors."""

    def __init__(self, name: str | None, created: float) -> None:
        self.name, self.created = name, created
        self.slots: dict[int, int] = {}
        self.size = 0
        self.present = np.zeros(0, dtype=np.bool_)
        self.matrix: FloatMatrix = np.zeros((0, 0), dtype=np.float32)

    def append(self, ids: list[int], found: dict[int, FloatVector]) -> None:
        """New rows for ``ids`` (zeros and ``present`` false for those not in ``found``); the arrays grow by
        copy (readers keep the old ones)."""
        dim = next((v.shape[0] for v in found.values()), self.matrix.shape[1])
        if self.size and dim != self.matrix.shape[1]:  # not under one name; start again, to be safe
            self.slots, self.size = {}, 0
        end = self.size + len(ids)
        if end > self.present.shape[0] or dim != self.matrix.shape[1]:
            capacity = max(2 * end, 1024)
            matrix, present = np.zeros((capacity, dim), dtype=np.float32), np.zeros(capacity, dtype=np.bool_)
            if self.size:
                matrix[: self.size], present[: self.size] = (
                    self.matrix[: self.size],
                    self.present[: self.size],
                )
            self.matrix, self.present = matrix, present
        for n, i in enumerate(ids, start=self.size):
            vector = found.get(i)
            if vector is not None:
                self.matrix[n], self.present[n] = vector, True
        self.slots.update(zip(ids, range(self.size, end), strict=True))
        self.size = end


class Retriever:
    """Queries of the items collection (thread safe; no database access)."""

    def __init__(self, store: VectorStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.items = settings.items_collection
        self._model_vectors = ModelVectors()

    def vectors(self, ids: Sequence[int], using: str = TEXT) -> dict[int, FloatVector]:
        """The ``using`` vector of each item that has one."""
        return read_vectors(self.store, self.items, ids, using)

    def points(self, ids: Sequence[int], using: str = TEXT) -> dict[int, Hit]:
        """The points of ``ids`` that have a ``using`` vector, with their vectors and payload."""
        return {
            h.id: h
            for h in self.store.retrieve(self.items, list(ids), with_vectors=True)
            if h.vector and using in h.vector
        }

    def model_rows(self, ids: Sequence[int], using: str) -> tuple[npt.NDArray[np.bool_], FloatMatrix]:
        """Which of ``ids`` have the model's ``using`` vector, and those vectors as rows (:class:`ModelVectors`)."""
        return self._model_vectors.rows(self.store, self.items, ids, using)

    def model(
        self,
        cf_vector: AnyVector,
        text: Callable[[], Any],
        meta: CFMeta,
        method: Method,
        expr: FilterExpr | None,
        banned: Sequence[int],
        needed: int,
        diversity: float,
    ) -> list[Hit]:
        """The model's list: ONE fused query (model + text prefetches, weighted RRF) for ``hybrid`` with a
        text weight, else the model's nearest items; an item-item list short of ``needed`` (few items share
        history with the user) is completed by the text list, ranked after the model's. ``text`` gives the
        user's text vector (or None), fetched only when it is used."""
        pool = 5 * needed if diversity > 0 else needed
        weight = meta.text_weight if method == "hybrid" else 0.0
        text_vector = text() if weight > 0 else None
        if weight > 0 and text_vector is not None:
            hits = self.fused(cf_vector, meta, text_vector, weight, expr, banned, pool)
        elif diversity > 0 and not meta.sparse:
            return self.nearest(cf_vector, expr, banned, needed, diversity, using=meta.vector)
        else:
            hits = self.nearest(cf_vector, expr, banned, pool, 0.0, using=meta.vector)
        if len(hits) < pool and weight <= 0 and meta.sparse:
            text_vector = text()
        if len(hits) < pool and text_vector is not None:
            taken = {h.id for h in hits}
            more = self.nearest(text_vector, expr, [*banned, *taken], pool - len(hits), 0.0)
            floor = min((h.score for h in hits), default=0.0)
            hits += [Hit(h.id, floor - 1.0 + h.score / 2, h.payload) for h in more]
        if diversity > 0:
            pool_hits = hits[: max(100, 5 * needed)]
            return mmr_rerank(pool_hits, self.vectors([h.id for h in pool_hits]), needed, diversity)
        return hits[:needed]

    def fused(
        self,
        cf_vector: AnyVector,
        meta: CFMeta,
        text_vector: Any,
        weight: float,
        expr: FilterExpr | None,
        banned: Sequence[int],
        needed: int,
    ) -> list[Hit]:
        """One store query: the model and text prefetches (filter and pushed exclusions in each) fused by
        weighted RRF; the seen ids beyond the pushed ones are removed after the fact. Then the query asks
        for ``needed`` + that many hits, most of them dropped: it returns ids and scores only, and the
        payloads of the ``needed`` kept are read by id (converting a payload costs the store more than
        the search itself past a few hundred hits, all of it under the GIL)."""
        full = And((ACTIVE, expr)) if expr is not None else ACTIVE
        limit = self.settings.seen_filter_limit
        pushed, rest = banned[:limit], set(banned[limit:])
        hits = self.store.query_fused(
            self.items,
            [(cf_vector, meta.vector, 1.0), (text_vector, TEXT, weight)],
            limit=needed + len(rest),
            filter=full,
            exclude_ids=pushed,
            prefetch_limit=max(meta.candidates, needed + len(rest)),
            method="rrf",
            with_payload=not rest,
        )
        kept = [h for h in hits if h.id not in rest]
        kept.sort(key=lambda h: (-h.score, h.id))
        kept = kept[:needed]
        if not rest or not kept:
            return kept
        payloads = {p.id: p.payload for p in self.store.retrieve(self.items, [h.id for h in kept])}
        return [Hit(h.id, h.score, payloads[h.id]) for h in kept if h.id in payloads]

    def nearest(
        self,
        vector: Any,
        expr: FilterExpr | None,
        banned: Sequence[int],
        needed: int,
        diversity: float,
        using: str = TEXT,
    ) -> list[Hit]:
        """``needed`` nearest active items matching ``expr``, none of ``banned``, paging past the ones that
        the store filter could not hold."""
        full = And((ACTIVE, expr)) if expr is not None else ACTIVE
        limit = self.settings.seen_filter_limit
        pushed, rest = banned[:limit], set(banned[limit:])
        collected: list[Hit] = []
        taken: set[int] = set()
        page = needed + min(len(rest), 4 * needed)
        fetched = dropped = 0
        for _ in range(MAX_PAGES):
            hits = self._page(vector, using, full, pushed, fetched, page, diversity)
            fetched += len(hits)
            for hit in hits:
                if hit.id in rest:
                    dropped += 1
                elif hit.id not in taken:
                    taken.add(hit.id)
                    collected.append(hit)
            if len(collected) >= needed or len(hits) < page:
                break
            page = next_page(page, needed - len(collected), len(rest) - dropped, fetched, dropped)
        if diversity <= 0:  # equal scores come back in engine order, which may vary: make ties stable
            collected.sort(key=lambda h: (-h.score, h.id))
        return collected[:needed]

    def _page(
        self,
        vector: Any,
        using: str,
        full: FilterExpr,
        pushed: Sequence[int],
        fetched: int,
        page: int,
        diversity: float,
    ) -> list[Hit]:
        """The ``page`` candidates after the first ``fetched`` ones."""
        if diversity > 0:
            return self.store.query_mmr(
                self.items,
                vector,
                using,
                fetched + page,
                diversity=diversity,
                candidates_limit=max(100, 5 * (fetched + page)),
                filter=full,
                exclude_ids=pushed,
            )[fetched:]
        return self.store.query(
            self.items, vector, using, page, filter=full, exclude_ids=pushed, offset=fetched
        )


__all__ = ["ACTIVE", "TEXT", "ModelVectors", "Retriever"]
