"""The Items and Users pages' data: search, an item with its vector state and similar items, a user with
their history beside the recommendations of every method."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nearrec.errors import NearrecError, NotFoundError, ValidationError
from nearrec.postgres import dashboard_repo as repo
from nearrec.query.methods import METHODS
from nearrec.query.service import Recommendation
from nearrec.vectors.payload import ACTIVE, CONTENT_HASH

if TYPE_CHECKING:
    from nearrec.api.deps import State

PAGE = 20
K = 10
SEARCH_K = 20
CONTAINS_MIN = repo.CONTAINS_MIN


@dataclass
class ItemSearch:
    query: str
    matches: repo.ItemMatches
    semantic: list[Recommendation]
    semantic_error: str | None = None


def search_items(s: State, query: str) -> ItemSearch:
    """Ids and titles containing ``query`` (Postgres) and the semantic search (the vector store)."""
    with s.runtime.read_sessions() as session:
        if not query.strip():
            return ItemSearch(query, repo.ItemMatches(repo.newest_items(session), False, False), [])
        matches = repo.find_items(session, query)
    try:
        semantic = s.query.search(query, k=SEARCH_K)
        error = None
    except NearrecError as exc:
        semantic, error = [], str(exc)
    return ItemSearch(query, matches, semantic, error)


@dataclass
class VectorState:
    status: str  # current | stale | missing | inactive-flag | no-text | unavailable
    message: str
    vectors: list[str] = field(default_factory=list)


def vector_state(s: State, item: repo.ItemDetail) -> VectorState:
    """Is the item's point current? Its payload's content hash and active flag against the row."""
    if not (item.text or "").strip():
        return VectorState("no-text", "the item has no text, so no vector is expected")
    try:
        found = s.runtime.vector_store.retrieve(s.settings.items_collection, [item.id], with_vectors=True)
    except NearrecError as exc:
        return VectorState("unavailable", f"the vector store did not answer: {exc}")
    if not found:
        return VectorState("missing", "no point in the vector store yet")
    point = found[0]
    names = sorted(point.vector or {})
    if point.payload.get(CONTENT_HASH) != item.content_hash:
        return VectorState("stale", "the point was embedded from another text (content hash differs)", names)
    if point.payload.get(ACTIVE) != (1 if item.active else 0):
        return VectorState("stale", "the point's active flag differs from the row", names)
    return VectorState("current", "the point matches the row (content hash and active flag)", names)


@dataclass
class ItemPage:
    item: repo.ItemDetail
    vector: VectorState
    similar: list[Recommendation]
    filter: str
    error: str | None


def item_page(s: State, item_id: str, filter: str) -> ItemPage:
    with s.runtime.read_sessions() as session:
        item = repo.item_detail(session, item_id)
    if item is None:
        raise NotFoundError(f"unknown item {item_id!r}")
    similar, error = similar_items(s, item_id, filter)
    return ItemPage(item, vector_state(s, item), similar, filter, error)


def similar_items(s: State, item_id: str, filter: str) -> tuple[list[Recommendation], str | None]:
    try:
        return s.query.similar_items(item_id, k=K, filter=filter or None), None
    except (ValidationError, NotFoundError) as exc:
        return [], str(exc)


@dataclass
class MethodList:
    method: str
    recs: list[Recommendation]
    error: str | None = None
    seen: set[str] = field(default_factory=set)  # of recs, those the user has seen (always none)


@dataclass
class Recommendations:
    """The recommendations panel. ``lazy``: the lists are not computed here; the panel holds a placeholder
    per method that the browser fills with one request each (:func:`method_panel`)."""

    filter: str
    diversity: float
    default_method: str
    lists: list[MethodList]
    seen: set[str]
    seen_total: int
    error: str | None = None
    lazy: bool = False
    methods: tuple[str, ...] = METHODS


@dataclass
class History:
    rows: list[repo.HistoryRow]
    page: int
    pages: int
    total: int


@dataclass
class UserPage:
    user: repo.UserDetail
    history: History
    recs: Recommendations


def _user(s: State, user_id: str) -> repo.UserDetail:
    with s.runtime.read_sessions() as session:
        user = repo.user_detail(session, user_id)
    if user is None:
        raise NotFoundError(f"unknown user {user_id!r}")
    return user


def user_history(s: State, user: repo.UserDetail, page: int) -> History:
    pages = max(1, math.ceil(user.interactions / PAGE))
    page = min(max(page, 1), pages)
    with s.runtime.read_sessions() as session:
        rows = repo.history(session, user.id, PAGE, (page - 1) * PAGE)
    return History(rows, page, pages, user.interactions)


def recommendations(
    s: State, user: repo.UserDetail, filter: str, diversity: float, lazy: bool = False
) -> Recommendations:
    """Every method's list (with reasons) and which of the listed items the user has seen: none, always.
    ``lazy``: only check the filter and count the seen items (the lists come from :func:`method_panel`)."""
    diversity = min(max(diversity, 0.0), 1.0)
    default = "text"
    try:
        s.query.parse_filter(filter or None)
        default = s.query.resolve_method(None)[0]
    except ValidationError as exc:
        return Recommendations(filter, diversity, default, [], set(), 0, str(exc), lazy)
    types = s.settings.seen_types
    if lazy:
        with s.runtime.read_sessions() as session:
            total = repo.seen_count(session, user.id, types)
        return Recommendations(filter, diversity, default, [], set(), total, lazy=True)
    # The four lists are independent: compute them at once (the stores' waits release the GIL).
    with ThreadPoolExecutor(max_workers=len(METHODS), thread_name_prefix="nearrec-dashboard") as pool:
        lists = list(pool.map(lambda m: method_list(s, user, m, filter, diversity), METHODS))
    shown = list({r.item_id for m in lists for r in m.recs})
    with s.runtime.read_sessions() as session:
        seen = repo.seen_among(session, user.id, shown, types)
        total = repo.seen_count(session, user.id, types)
    for m in lists:
        m.seen = {r.item_id for r in m.recs} & seen
    return Recommendations(filter, diversity, default, lists, seen, total)


def method_panel(s: State, user: repo.UserDetail, method: str, filter: str, diversity: float) -> MethodList:
    """One method's list, and which of its items the user has seen (none, always): one placeholder of the
    lazy panel."""
    if method not in METHODS:
        raise NotFoundError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    found = method_list(s, user, method, filter, min(max(diversity, 0.0), 1.0))
    with s.runtime.read_sessions() as session:
        found.seen = repo.seen_among(session, user.id, [r.item_id for r in found.recs], s.settings.seen_types)
    return found


def method_list(s: State, user: repo.UserDetail, method: str, filter: str, diversity: float) -> MethodList:
    try:
        recs = s.query.recommend(
            user.external_id, k=K, filter=filter or None, diversity=diversity, explain=True, method=method
        )
    except ValidationError as exc:  # e.g. cf before `nearrec train`
        return MethodList(method, [], str(exc))
    return MethodList(method, recs)


def user_page(s: State, user_id: str, page: int, filter: str, diversity: float, lazy: bool) -> UserPage:
    user = _user(s, user_id)
    return UserPage(user, user_history(s, user, page), recommendations(s, user, filter, diversity, lazy))


def user_partial(s: State, user_id: str) -> repo.UserDetail:
    """The user row alone (for a partial update of one panel)."""
    return _user(s, user_id)


def find_users(s: State, query: str) -> repo.UserMatches:
    with s.runtime.read_sessions() as session:
        if query.strip():
            return repo.find_users(session, query)
        return repo.UserMatches(repo.recently_active_users(session), False, False)


def reason_text(rec: Recommendation) -> str:
    """A short sentence for the reason of a recommendation."""
    r = rec.reason
    if r is None:
        return ""
    if r.kind == "history":
        return f"close to {r.title or r.item_id} from the history (cosine {r.similarity:.2f})"
    return {
        "popular": "popular among all users",
        "profile": "close to the user's profile text",
        "item": "similar to this item",
        "query": "matches the query",
        "session": "close to the session",
    }.get(r.kind, r.kind)


def attributes(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Attribute (name, value) pairs, sorted, values as short text."""
    out = []
    for name in sorted(doc):
        value = doc[name]
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        out.append((name, text))
    return out
