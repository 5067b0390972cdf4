"""The query service: recommendations, similar items, semantic search, anonymous sessions.

Seen items are never returned and inactive items never appear (:mod:`nearrec.query.retrieval`: the payload
flag ``active`` in the store filter). The second guard, against items changed in Postgres whose points the
worker has not rewritten yet: ``recommend`` reads the ids of the items with a pending outbox row in its one
database round trip (with the user's history and the excluded ids) and keeps them out of the store query,
so every hit's point is current and the answer (external id, title, fields) comes from the hits' payload;
past ``seen_filter_limit`` pending items (a bulk load), or for points written before the payload held titles,
it reads the result rows from Postgres and drops the inactive ones, as the other calls do
(:func:`nearrec.query.results.finish`).

``recommend`` has the retrieval methods of :mod:`nearrec.query.methods`: ``text`` (the user's text vector),
``cf`` (the trained model's list: the user's recent history as the model's query vector, always fresh: the
fold-in the worker stored in Postgres when it is exactly what the events would give now, else the events
folded in at query time, :mod:`nearrec.query.collaborative`), ``hybrid`` (ONE fused store query: the
model's and the text prefetches, ``candidates`` each, fused by weighted RRF with the text weight the tuner
chose, :meth:`~nearrec.query.retrieval.Retriever.model`) and ``popular`` (:mod:`nearrec.query.popular`, the
cold-start list). Every prefetch carries the same filter and exclusions, so the fused result keeps every
guarantee. The default is ``hybrid`` once `nearrec train` has written model vectors, else ``text``; a user
with no model-known history falls back to text, then to popularity.

Every call uses ONE database session (one pooled connection), ``explain=True`` included; ``recommend`` makes
ONE round trip on it when the store is in line with Postgres
(:mod:`nearrec.query.explain`); a cold cache read inside a request is filled on that same session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding.base import Embedder
from nearrec.errors import NotFoundError, ValidationError
from nearrec.filters import FieldType, FilterExpr, FilterInput, read_filter
from nearrec.model.cf import CFMeta
from nearrec.model.user_vector import UserVectorParams, build_user_vector, history_weights
from nearrec.postgres import query_repo as repo
from nearrec.postgres.engine import read_connection
from nearrec.query.cache import Refreshing
from nearrec.query.collaborative import CF_HISTORY, cf_tag, cf_user_vector, load_cf_meta, session_timeline
from nearrec.query.explain import EXPLAIN_HISTORY, constant_reason, history_explainer, items_explainer
from nearrec.query.methods import CF_METHODS, Method, check_method, default_method
from nearrec.query.popular import Popular
from nearrec.query.results import Explainer, Reason, Recommendation, check_page, finish, recommendation_dict
from nearrec.query.retrieval import TEXT, FloatVector, Retriever
from nearrec.query.schema import AttributeSchema
from nearrec.vectors.base import Hit, VectorStore

CF_TTL = 30.0


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
        self.retriever = Retriever(store, settings)
        self.popular = Popular(sessions, store, settings)
        self._embedder_provider = embedder
        self._embedder: Embedder | None = None
        self._params = UserVectorParams.from_settings(settings)
        self._schema = AttributeSchema(sessions, store, self.items)
        self._cf_cache = Refreshing(lambda: (load_cf_meta(self.store, self.items),), CF_TTL)
        self._cf_tag: tuple[CFMeta, str] | None = None

    # --- public API -------------------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        filter: FilterInput = None,
        exclude_ids: Sequence[str] = (),
        diversity: float = 0.0,
        explain: bool = False,
        offset: int = 0,
        fields: Sequence[str] = (),
        method: str | None = None,
    ) -> list[Recommendation]:
        """Top ``k`` items for a known user, never one they have seen (see the module docstring)."""
        check_page(k, offset, diversity)
        expr = self.parse_filter(filter)
        chosen, meta = self.resolve_method(method)
        model = meta is not None and chosen in CF_METHODS
        history = CF_HISTORY if model else 0
        # The stored fold-in when usable (not with explain: its reasons read the events)
        tag = self.cf_tag(meta) if model and meta is not None and not explain else None
        bound = self.settings.seen_filter_limit  # the ids the store filter holds (the rest: after the fact)
        with read_connection(self.sessions) as connection:  # the one read; the session connects only if used
            read = repo.user_request(
                connection,
                user_id,
                self.settings.seen_types,
                max(history, EXPLAIN_HISTORY) if explain else history,
                exclude_ids,
                pending=bound + 1,
                cf_tag=tag,
            )
        if read is None:
            raise NotFoundError(f"unknown user {user_id!r}")
        with self.sessions() as session:
            # Items with pending vector work go first into the store's must_not has_id list; past the bound
            # (a bulk load), the answer's rows are read from Postgres instead, as the second guard.
            pending = read.pending if len(read.pending) <= bound else []
            banned = list(dict.fromkeys([*pending, *read.excluded, *read.seen]))
            hits, popular = self._user_hits(session, read, chosen, meta, expr, banned, offset + k, diversity)
            explainer: Explainer | None = None
            if explain and popular:
                explainer = constant_reason("popular")
            elif explain:
                explainer = (
                    history_explainer(session, self.retriever, read.user.id, self._params, read.events)
                    if read.seen
                    else constant_reason("profile")
                )
            return finish(session, hits[offset:], fields, explainer, len(read.pending) <= bound)

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        filter: FilterInput = None,
        fields: Sequence[str] = (),
        explain: bool = False,
    ) -> list[Recommendation]:
        """Items closest to ``item_id`` (itself excluded)."""
        check_page(k, 0, 0.0)
        expr = self.parse_filter(filter)
        with self.sessions() as session:
            internal = repo.item_ids_by_external(session, [item_id]).get(item_id)
            if internal is None:
                raise NotFoundError(f"unknown item {item_id!r}")
            found = self.store.retrieve(self.items, [internal], with_vectors=True)
            if not found or not found[0].vector or TEXT not in found[0].vector:
                raise NotFoundError(f"item {item_id!r} has no vector yet (is a worker running?)")
            hits = self.retriever.nearest(np.asarray(found[0].vector[TEXT]), expr, [internal], k, 0.0)
            return finish(session, hits, fields, constant_reason("item", item_id) if explain else None)

    def search(
        self, text: str, k: int = 10, filter: FilterInput = None, fields: Sequence[str] = ()
    ) -> list[Recommendation]:
        """Semantic search: items whose text is closest to ``text``."""
        check_page(k, 0, 0.0)
        if not text.strip():
            raise ValidationError("search text is empty", path="text")
        expr = self.parse_filter(filter)
        vector = self.embedder.embed([text])[0]
        hits = self.retriever.nearest(vector, expr, [], k, 0.0)
        with self.sessions() as session:
            return finish(session, hits, fields, None)

    def recommend_anonymous(
        self,
        liked: Sequence[str] = (),
        disliked: Sequence[str] = (),
        text: str | None = None,
        k: int = 10,
        filter: FilterInput = None,
        diversity: float = 0.0,
        fields: Sequence[str] = (),
        explain: bool = False,
        method: str | None = None,
    ) -> list[Recommendation]:
        """Recommendations for a session: items liked / disliked so far (oldest first) and optional free
        text. ``method`` as for :meth:`recommend`: with cf vectors trained, the liked items are also folded
        into a cf vector and the two lists are fused."""
        check_page(k, 0, diversity)
        expr = self.parse_filter(filter)
        chosen, meta = self.resolve_method(method)
        with self.sessions() as session:
            ids = self._internal_ids(session, [*liked, *disliked], path="liked")
            liked_ids, disliked_ids = ids[: len(liked)], ids[len(liked) :]
            vector = self._session_vector(liked_ids, disliked_ids, text)
            cf_vector = None
            if meta is not None and chosen in CF_METHODS and ids:
                cf_vector = cf_user_vector(
                    self.retriever, session_timeline(liked_ids, disliked_ids), meta, self._params
                )
            if chosen == "popular" or (vector is None and cf_vector is None):
                hits = self.popular.hits(session, expr, set(ids), k)
                return finish(session, hits, fields, constant_reason("popular") if explain else None)
            if cf_vector is not None and meta is not None:
                hits = self.retriever.model(cf_vector, lambda: vector, meta, chosen, expr, ids, k, diversity)
            else:
                hits = self.retriever.nearest(vector, expr, ids, k, diversity)
            recent_first = list(reversed(liked_ids))
            explainer = (
                items_explainer(session, self.retriever, recent_first) if explain and liked_ids else None
            )
            return finish(session, hits, fields, explainer)

    # --- methods ----------------------------------------------------------------------------------------

    def cf_meta(self) -> CFMeta | None:
        """The trained collaborative model's record (None before `nearrec train`), refreshed in the
        background."""
        return self._cf_cache.get()[0]

    def cf_tag(self, meta: CFMeta) -> str:
        """The tag of the stored fold-ins ``meta`` and this service's settings can use
        (:func:`~nearrec.query.collaborative.cf_tag`), computed once per model record."""
        known = self._cf_tag
        if known is None or known[0] is not meta:
            known = self._cf_tag = (meta, cf_tag(meta, self._params))
        return known[1]

    def resolve_method(self, method: str | None) -> tuple[Method, CFMeta | None]:
        """The method to use (default: hybrid when cf vectors exist, else text) and the cf record."""
        checked = check_method(method)
        meta = self.cf_meta() if checked is None or checked in CF_METHODS else None
        if checked is None:
            return default_method(meta is not None), meta
        if checked in CF_METHODS and meta is None:
            raise ValidationError(
                f"method {checked!r} needs collaborative vectors; run `nearrec train` first", path="method"
            )
        return checked, meta

    # --- filters ----------------------------------------------------------------------------------------

    def parse_filter(self, filter: FilterInput) -> FilterExpr | None:
        """Validate a filter (mapping or JSON string) against the item attributes present in Postgres."""
        return read_filter(filter, self.attribute_schema)

    def attribute_schema(self) -> dict[str, FieldType]:
        """Attribute name -> type: what the worker recorded in the items collection when it indexed the
        attributes (a scan of Postgres before anything was synced), refreshed in the background."""
        return self._schema.get()

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

    def _user_hits(
        self,
        session: Session,
        read: repo.UserRead,
        method: Method,
        meta: CFMeta | None,
        expr: FilterExpr | None,
        banned: list[int],
        needed: int,
        diversity: float,
    ) -> tuple[list[Hit], bool]:
        """The ``needed`` best hits of a known user by ``method``, and whether they are the popularity list
        (asked for, or the fallback of a user with no vector). The model's query vector: the stored fold-in
        when the read returned it, else the fold-in of the events it returned."""
        user = read.user
        if method == "popular":
            return self.popular.hits(session, expr, set(banned), needed), True
        if meta is not None and method in CF_METHODS:
            cf_vector = (
                read.cf if read.folded else cf_user_vector(self.retriever, read.events, meta, self._params)
            )
            if cf_vector is not None:
                text = (
                    (lambda: self._user_vector(user)) if method == "hybrid" or meta.sparse else (lambda: None)
                )
                hits = self.retriever.model(cf_vector, text, meta, method, expr, banned, needed, diversity)
                return hits, False
        vector = self._user_vector(user)
        if vector is None:
            return self.popular.hits(session, expr, set(banned), needed), True
        return self.retriever.nearest(vector, expr, banned, needed, diversity), False

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

    def _user_vector(self, user: repo.UserRow) -> FloatVector | None:
        found = self.store.retrieve(self.users, [user.id], with_vectors=[TEXT])  # not the profile's
        if found and found[0].vector and TEXT in found[0].vector:
            return np.asarray(found[0].vector[TEXT], dtype=np.float32)
        if user.profile and user.profile.strip():  # not synced yet: the profile alone is the vector
            profile: FloatVector = self.embedder.embed([user.profile])[0]
            return profile
        return None

    def _session_vector(
        self, liked_ids: Sequence[int], disliked_ids: Sequence[int], text: str | None
    ) -> FloatVector | None:
        """The text vector of an anonymous session: its items (the last liked one freshest) and free text."""
        profile = self.embedder.embed([text])[0] if text and text.strip() else None
        if not liked_ids and not disliked_ids and profile is None:
            return None
        order = [*reversed(liked_ids), *disliked_ids]
        vecs = self.retriever.vectors(order)
        events = [("like", None) for _ in liked_ids] + [("dislike", None) for _ in disliked_ids]
        known = [i for i in order if i in vecs]
        weights = history_weights([e for e, i in zip(events, order, strict=True) if i in vecs], self._params)
        mat = np.stack([vecs[i] for i in known]) if known else np.zeros((0, 1))
        return build_user_vector(profile, mat, weights, self._params.profile_weight)


__all__ = ["QueryService", "Reason", "Recommendation", "recommendation_dict"]
