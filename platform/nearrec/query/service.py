"""The query service: recommendations, similar items, semantic search, anonymous sessions.

Seen items are never returned: the most recent ``seen_filter_limit`` seen ids go into the vector store's
``must_not has_id`` filter, the older ones are removed after the fact, and the service keeps paging through
candidates until it has ``offset + k`` results or the candidates run out. Inactive items are filtered out by
the payload flag ``active`` and, as a second guard, by the Postgres row read for every result.

``recommend`` has three retrieval methods (``method``): ``text`` (the user's text vector), ``cf`` (the
collaborative vector, folded in at query time from the user's recent history and the items' stored "cf"
vectors, so it is always fresh) and ``hybrid`` (both lists, ``hybrid_candidates`` each, fused by weighted
DBSF, see :mod:`nearrec.model.fusion`). Each list goes through the same ``_nearest`` (filters, exclusion,
paging), so the fused result keeps every guarantee. The default is ``hybrid`` once `nearrec train` has
written cf vectors, else ``text``; a user with no cf-known history falls back to text, then to popularity.
``popular`` ranks by interaction count (the cold-start list).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding.base import Embedder
from nearrec.errors import NotFoundError, ValidationError
from nearrec.filters import And, Eq, FieldType, FilterExpr, matches, parse_filter
from nearrec.jobs.train import CF_VECTOR, CFMeta, cf_values
from nearrec.model.cf import fold_in_user
from nearrec.model.fusion import augment_user, fuse_dbsf, item_factors_from_stored, mmr_rerank
from nearrec.model.user_vector import UserVectorParams, build_user_vector, history_weights
from nearrec.postgres import query_repo as repo
from nearrec.query.cache import Refreshing
from nearrec.sync.collections import ItemSchema, attribute_types
from nearrec.vectors.base import CollectionNotFoundError, Hit, VectorStore

TEXT = "text"
ACTIVE = Eq("active", 1)
SCHEMA_TTL = 30.0
POPULAR_TTL = 30.0
POPULAR_POOL = 2000
EXPLAIN_HISTORY = 50
MAX_PAGES = 12
CF_TTL = 30.0
CF_HISTORY = 200
"""Most recent interactions folded into the query-time cf vector (older ones weigh < 1e-6 at half-life 10)."""

Method = Literal["text", "cf", "hybrid", "popular"]
METHODS: tuple[str, ...] = ("text", "cf", "hybrid", "popular")

ReasonKind = Literal["history", "profile", "popular", "query", "item", "session"]


@dataclass(frozen=True, slots=True)
class Reason:
    """Why an item was recommended: the history item (or profile, query...) it is closest to."""

    kind: ReasonKind
    similarity: float
    item_id: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    item_id: str
    score: float
    title: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    reason: Reason | None = None


class QueryService:
    """Thread safe; one per process. Reads Postgres through ``sessions`` and vectors through ``store``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: VectorStore,
        settings: Settings,
        embedder: Callable[[], Embedder] | None = None,
    ) -> None:
        """``sessions`` only read (autocommit ones save two round trips per call, see
        :func:`nearrec.postgres.engine.read_sessions`). ``embedder`` provides the text model, called on first use
        (search, profile-only users); default: load the configured model."""
        self.sessions = sessions
        self.store = store
        self.settings = settings
        self.items = settings.items_collection
        self.users = settings.users_collection
        self._embedder_provider = embedder
        self._embedder: Embedder | None = None
        self._params = UserVectorParams.from_settings(settings)
        self._schema = Refreshing(self._load_schema, SCHEMA_TTL)
        self._popular_cache = Refreshing(self._load_popular, POPULAR_TTL)
        self._cf_cache = Refreshing(self._load_cf_meta, CF_TTL)

    # --- public API -------------------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        filter: Any = None,
        exclude_ids: Sequence[str] = (),
        diversity: float = 0.0,
        explain: bool = False,
        offset: int = 0,
        fields: Sequence[str] = (),
        method: str | None = None,
    ) -> list[Recommendation]:
        """Top ``k`` items for a known user, never one they have seen (see the module docstring)."""
        _check_page(k, offset, diversity)
        expr = self.parse_filter(filter)
        chosen, meta = self.resolve_method(method)
        history = CF_HISTORY if meta is not None and chosen in ("cf", "hybrid") else 0
        with self.sessions() as session:
            found = repo.user_with_history(session, user_id, self.settings.seen_types, history)
            if found is None:
                raise NotFoundError(f"unknown user {user_id!r}")
            user, seen, events = found
            banned = [*self._internal_ids(session, exclude_ids), *seen]
            needed = offset + k
            hits: list[Hit] | None = None
            if chosen == "popular":
                hits = self._popular_hits(expr, set(banned), needed)[offset:]
                return self._finish(
                    session, hits, fields, self._constant_reason("popular") if explain else None
                )
            if meta is not None and chosen in ("cf", "hybrid"):
                cf_vector = self._cf_user_vector(events, meta)
                if cf_vector is not None and chosen == "cf":
                    hits = self._nearest(cf_vector, expr, banned, needed, diversity, using=CF_VECTOR)
                elif cf_vector is not None:
                    hits = self._hybrid(cf_vector, self._user_vector(user), expr, banned, needed, diversity)
            if hits is None:
                vector = self._user_vector(user)
                if vector is None:
                    hits = self._popular_hits(expr, set(banned), needed)[offset:]
                    return self._finish(
                        session, hits, fields, self._constant_reason("popular") if explain else None
                    )
                hits = self._nearest(vector, expr, banned, needed, diversity)
            hits = hits[offset:]
            explainer = None
            if explain:
                explainer = self._history_explainer(user) if seen else self._constant_reason("profile")
            return self._finish(session, hits, fields, explainer)

    def similar_items(
        self, item_id: str, k: int = 10, filter: Any = None, fields: Sequence[str] = (), explain: bool = False
    ) -> list[Recommendation]:
        """Items closest to ``item_id`` (itself excluded)."""
        _check_page(k, 0, 0.0)
        expr = self.parse_filter(filter)
        with self.sessions() as session:
            internal = repo.item_ids_by_external(session, [item_id]).get(item_id)
            if internal is None:
                raise NotFoundError(f"unknown item {item_id!r}")
            found = self.store.retrieve(self.items, [internal], with_vectors=True)
            if not found or not found[0].vector or TEXT not in found[0].vector:
                raise NotFoundError(f"item {item_id!r} has no vector yet (is a worker running?)")
            hits = self._nearest(np.asarray(found[0].vector[TEXT]), expr, [internal], k, 0.0)
            return self._finish(
                session, hits, fields, self._constant_reason("item", item_id) if explain else None
            )

    def search(
        self, text: str, k: int = 10, filter: Any = None, fields: Sequence[str] = ()
    ) -> list[Recommendation]:
        """Semantic search: items whose text is closest to ``text``."""
        _check_page(k, 0, 0.0)
        if not text.strip():
            raise ValidationError("search text is empty", path="text")
        expr = self.parse_filter(filter)
        vector = self.embedder.embed([text])[0]
        hits = self._nearest(vector, expr, [], k, 0.0)
        with self.sessions() as session:
            return self._finish(session, hits, fields, None)

    def recommend_anonymous(
        self,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        text: str | None = None,
        k: int = 10,
        filter: Any = None,
        diversity: float = 0.0,
        fields: Sequence[str] = (),
        explain: bool = False,
        method: str | None = None,
    ) -> list[Recommendation]:
        """Recommendations for a session: items liked / disliked so far (oldest first) and optional free
        text. ``method`` as for :meth:`recommend`: with cf vectors trained, the liked items are also folded
        into a cf vector and the two lists are fused."""
        _check_page(k, 0, diversity)
        expr = self.parse_filter(filter)
        chosen, meta = self.resolve_method(method)
        with self.sessions() as session:
            return self._anonymous(
                session, liked, disliked, text, k, expr, diversity, fields, explain, chosen, meta
            )

    def _anonymous(
        self,
        session: Session,
        liked: Sequence[str],
        disliked: Sequence[str],
        text: str | None,
        k: int,
        expr: FilterExpr | None,
        diversity: float,
        fields: Sequence[str],
        explain: bool,
        method: str,
        meta: CFMeta | None,
    ) -> list[Recommendation]:
        ids = self._internal_ids(session, [*liked, *disliked], path="liked")
        liked_ids, disliked_ids = ids[: len(liked)], ids[len(liked) :]
        profile = self.embedder.embed([text])[0] if text and text.strip() else None
        vector = None
        if ids or profile is not None:
            vecs = self._vectors(ids)
            # Most recent first: the last liked item is the freshest signal.
            events = [("like", None) for _ in reversed(liked_ids)] + [("dislike", None) for _ in disliked_ids]
            order = [*reversed(liked_ids), *disliked_ids]
            known = [i for i in order if i in vecs]
            weights = history_weights(
                [e for e, i in zip(events, order, strict=True) if i in vecs], self._params
            )
            mat = np.stack([vecs[i] for i in known]) if known else np.zeros((0, 1))
            vector = build_user_vector(profile, mat, weights, self._params.profile_weight)
        cf_vector = None
        if meta is not None and method in ("cf", "hybrid") and ids:
            # The session as a history: liked items in order (the last one newest), dislikes as dislikes.
            timeline = [repo.TimedEvent(i, "like", None, float(n)) for n, i in enumerate(liked_ids)]
            timeline += [repo.TimedEvent(i, "dislike", None, float(len(liked_ids))) for i in disliked_ids]
            cf_vector = self._cf_user_vector(list(reversed(timeline)), meta)
        if method == "popular" or (vector is None and cf_vector is None):
            hits = self._popular_hits(expr, set(ids), k)
            return self._finish(session, hits, fields, self._constant_reason("popular") if explain else None)
        if cf_vector is not None and (method == "cf" or vector is None):
            hits = self._nearest(cf_vector, expr, ids, k, diversity, using=CF_VECTOR)
        elif cf_vector is not None:
            hits = self._hybrid(cf_vector, vector, expr, ids, k, diversity)
        else:
            hits = self._nearest(vector, expr, ids, k, diversity)
        explainer = self._items_explainer(list(reversed(liked_ids))) if explain and liked_ids else None
        return self._finish(session, hits, fields, explainer)

    # --- methods ----------------------------------------------------------------------------------------

    def cf_meta(self) -> CFMeta | None:
        """The trained collaborative model's metadata (None before `nearrec train`), refreshed in the
        background."""
        return self._cf_cache.get()[0]

    def _load_cf_meta(self) -> tuple[CFMeta | None]:
        meta = CFMeta.from_metadata(self.store.get_metadata(self.items))
        if meta is not None and self.store.vector_sizes(self.items).get(CF_VECTOR) != meta.dim:
            meta = None  # e.g. the collection was rebuilt by a reindex since the training
        return (meta,)

    def resolve_method(self, method: str | None) -> tuple[str, CFMeta | None]:
        """The method to use (default: hybrid when cf vectors exist, else text) and the cf metadata."""
        if method is not None and method not in METHODS:
            raise ValidationError(
                f"unknown method {method!r}; expected one of {', '.join(METHODS)}", path="method"
            )
        meta = self.cf_meta() if method in (None, "cf", "hybrid") else None
        if method is None:
            return ("hybrid" if meta is not None else "text"), meta
        if method in ("cf", "hybrid") and meta is None:
            raise ValidationError(
                f"method {method!r} needs collaborative vectors; run `nearrec train` first", path="method"
            )
        return method, meta

    # --- filters ----------------------------------------------------------------------------------------

    def parse_filter(self, filter: Any) -> FilterExpr | None:
        """Validate a filter (dict or JSON string) against the item attributes present in Postgres."""
        if filter is None or filter == {} or filter == "":
            return None
        if isinstance(filter, str):
            import json

            try:
                filter = json.loads(filter)
            except ValueError as exc:
                raise ValidationError(f"filter: not valid JSON ({exc})", path="filter") from exc
        return parse_filter(filter, self.attribute_schema())

    def attribute_schema(self) -> dict[str, FieldType]:
        """Attribute name -> type: what the worker recorded in the items collection when it indexed the
        attributes (a scan of Postgres before anything was synced), refreshed in the background."""
        return self._schema.get()

    def _load_schema(self) -> dict[str, FieldType]:
        try:
            recorded = attribute_types(self.store, self.items)
        except CollectionNotFoundError:
            recorded = None
        if recorded is not None:
            return recorded
        with self.sessions() as session:
            return ItemSchema.load(session).filterable()

    # --- internals --------------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            if self._embedder_provider is not None:
                self._embedder = self._embedder_provider()
            else:
                from nearrec.embedding import load_embedder

                self._embedder = load_embedder(self.settings)
        return self._embedder

    def _internal_ids(
        self, session: Session, external: Sequence[str], path: str = "exclude_ids"
    ) -> list[int]:
        if not external:
            return []
        found = repo.item_ids_by_external(session, list(external))
        missing = [e for e in external if e not in found]
        if missing and path != "exclude_ids":
            raise NotFoundError(f"unknown item(s) in {path}: {', '.join(map(repr, missing[:5]))}")
        return [found[e] for e in external if e in found]

    def _user_vector(self, user: repo.UserRow) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        found = self.store.retrieve(self.users, [user.id], with_vectors=True)
        if found and found[0].vector and TEXT in found[0].vector:
            return np.asarray(found[0].vector[TEXT], dtype=np.float32)
        if user.profile and user.profile.strip():  # not synced yet: the profile alone is the vector
            profile: np.ndarray[Any, np.dtype[np.float32]] = self.embedder.embed([user.profile])[0]
            return profile
        return None

    def _vectors(
        self, ids: Sequence[int], using: str = TEXT
    ) -> dict[int, np.ndarray[Any, np.dtype[np.float32]]]:
        hits = self.store.retrieve(self.items, list(ids), with_vectors=True)
        return {
            h.id: np.asarray(h.vector[using], dtype=np.float32)
            for h in hits
            if h.vector and using in h.vector
        }

    def _cf_user_vector(
        self, events: Sequence[repo.TimedEvent], meta: CFMeta
    ) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        """Fold the user's recent history into a cf query vector ``[u, 0]``; None if no item is known."""
        stored = self._vectors(list(dict.fromkeys(e.item_id for e in events)), using=CF_VECTOR)
        known = [e for e in events if e.item_id in stored]
        if not known:
            return None
        # Rows in internal id order, so timestamp ties break as in training (larger item id is newer).
        order = sorted(stored)
        rows = {item: n for n, item in enumerate(order)}
        factors = item_factors_from_stored(np.stack([stored[i] for i in order]), meta.scale)
        values = cf_values(
            [e.type for e in known], [np.nan if e.value is None else e.value for e in known], self._params
        )
        user = fold_in_user(
            factors, [rows[e.item_id] for e in known], values, [e.timestamp for e in known], meta.config()
        )
        if not np.any(user):
            return None
        return augment_user(user)

    def _hybrid(
        self,
        cf_vector: Any,
        text_vector: Any,
        expr: FilterExpr | None,
        banned: Sequence[int],
        needed: int,
        diversity: float,
    ) -> list[Hit]:
        """Fuse the cf and text candidate lists (each exclusion-safe) with weighted DBSF."""
        depth = max(self.settings.hybrid_candidates, needed)
        lists = [(self._nearest(cf_vector, expr, banned, depth, 0.0, using=CF_VECTOR), 1.0)]
        if text_vector is not None and self.settings.hybrid_text_weight > 0:
            text_hits = self._nearest(text_vector, expr, banned, depth, 0.0)
            lists.append((text_hits, self.settings.hybrid_text_weight))
        fused = fuse_dbsf(lists)
        if diversity > 0:
            pool = fused[: max(100, 5 * needed)]
            return mmr_rerank(pool, self._vectors([h.id for h in pool]), needed, diversity)
        return fused[:needed]

    def _nearest(
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
        fetched = 0
        for _ in range(MAX_PAGES):
            if diversity > 0:
                hits = self.store.query_mmr(
                    self.items,
                    vector,
                    using,
                    fetched + page,
                    diversity=diversity,
                    candidates_limit=max(100, 5 * (fetched + page)),
                    filter=full,
                    exclude_ids=pushed,
                )[fetched:]
            else:
                hits = self.store.query(
                    self.items, vector, using, page, filter=full, exclude_ids=pushed, offset=fetched
                )
            fetched += len(hits)
            for hit in hits:
                if hit.id not in rest and hit.id not in taken:
                    taken.add(hit.id)
                    collected.append(hit)
            if len(collected) >= needed or len(hits) < page:
                break
            page *= 2
        if diversity <= 0:  # equal scores come back in engine order, which may vary: make ties stable
            collected.sort(key=lambda h: (-h.score, h.id))
        return collected[:needed]

    def _load_popular(self) -> list[tuple[int, int]]:
        with self.sessions() as session:
            return repo.popular_item_ids(session, self.settings.popular_window_days, POPULAR_POOL)

    def _popular_hits(self, expr: FilterExpr | None, banned: Collection[int], needed: int) -> list[Hit]:
        """Most interacted-with items in the window that match the filter (cold start)."""
        counts = {i: n for i, n in self._popular_cache.get() if i not in banned}
        out: list[Hit] = []
        ids = list(counts)
        for start in range(0, len(ids), 500):
            for hit in self.store.retrieve(self.items, ids[start : start + 500]):
                payload = hit.payload
                if matches(ACTIVE, payload) and (expr is None or matches(expr, payload)):
                    out.append(Hit(hit.id, float(counts[hit.id]), payload))
                    if len(out) >= needed:
                        return out
        return out

    def _constant_reason(
        self, kind: ReasonKind, item: str | None = None
    ) -> Callable[[list[Hit]], list[Reason]]:
        return lambda hits: [Reason(kind, h.score, item) for h in hits]

    def _history_explainer(self, user: repo.UserRow) -> Callable[[list[Hit]], list[Reason]]:
        def explain(hits: list[Hit]) -> list[Reason]:
            with self.sessions() as session:
                events = repo.recent_events(session, user.id, EXPLAIN_HISTORY)
            positive = [
                e.item_id for e in events if history_weights([(e.type, e.value)], self._params)[0] > 0
            ]
            return self._items_explainer(list(dict.fromkeys(positive)))(hits)

        return explain

    def _items_explainer(self, history: list[int]) -> Callable[[list[Hit]], list[Reason]]:
        """For each hit, the history item whose vector is closest to it."""

        def explain(hits: list[Hit]) -> list[Reason]:
            if not hits or not history:
                return [Reason("profile", h.score) for h in hits]
            hist = self._vectors(history)
            known = [i for i in history if i in hist]
            cand = self._vectors([h.id for h in hits])
            if not known:
                return [Reason("profile", h.score) for h in hits]
            with self.sessions() as session:
                rows = repo.items_by_ids(session, known)
            hmat = np.stack([hist[i] for i in known])
            out = []
            for h in hits:
                if h.id not in cand:
                    out.append(Reason("profile", h.score))
                    continue
                sims = hmat @ cand[h.id]
                best = int(np.argmax(sims))
                row = rows.get(known[best])
                out.append(
                    Reason(
                        "history",
                        round(float(sims[best]), 4),
                        row.external_id if row else None,
                        row.title if row else None,
                    )
                )
            return out

        return explain

    def _finish(
        self,
        session: Session,
        hits: list[Hit],
        fields: Sequence[str],
        explainer: Callable[[list[Hit]], list[Reason]] | None,
    ) -> list[Recommendation]:
        """Join the hits with their Postgres rows (title, fields); drop any that are no longer active."""
        rows = repo.items_by_ids(session, [h.id for h in hits])
        hits = [h for h in hits if h.id in rows and rows[h.id].active]
        reasons: list[Reason | None] = list(explainer(hits)) if explainer else [None] * len(hits)
        out = []
        for hit, reason in zip(hits, reasons, strict=True):
            row = rows[hit.id]
            picked = {f: row.attributes.get(f) for f in fields} if fields else {}
            out.append(Recommendation(row.external_id, round(hit.score, 6), row.title, picked, reason))
        return out


def _check_page(k: int, offset: int, diversity: float) -> None:
    if not 1 <= k <= 1000:
        raise ValidationError(f"k must be between 1 and 1000, got {k}", path="k")
    if offset < 0:
        raise ValidationError(f"offset must be >= 0, got {offset}", path="offset")
    if not 0.0 <= diversity <= 1.0:
        raise ValidationError(f"diversity must be within [0, 1], got {diversity}", path="diversity")


def recommendation_dict(rec: Recommendation) -> dict[str, Any]:
    """A plain dict for JSON output (CLI --json, HTTP)."""
    out: dict[str, Any] = {"item_id": rec.item_id, "score": rec.score, "title": rec.title}
    if rec.fields:
        out["fields"] = rec.fields
    if rec.reason is not None:
        out["reason"] = {
            "kind": rec.reason.kind,
            "similarity": rec.reason.similarity,
            "item_id": rec.reason.item_id,
            "title": rec.reason.title,
        }
    return out


__all__ = ["METHODS", "Method", "QueryService", "Reason", "Recommendation", "recommendation_dict"]
