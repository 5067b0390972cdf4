"""QueryService end to end: ingested rows -> outbox -> real worker -> embedded Qdrant engine -> queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from factories import GENRE_WORDS, GENRES, Stack, deactivate_items, ids
from factories import genre_catalog as catalog
from nearrec.config import Settings
from nearrec.errors import NotFoundError, ValidationError
from nearrec.postgres import query_repo
from nearrec.postgres.engine import read_sessions
from nearrec.postgres.models import Item
from nearrec.query.service import QueryService


@pytest.fixture
def stack(db: Engine, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    settings.seen_filter_limit = 50  # small, so the post-filter path beyond the store filter is exercised
    st = Stack(sessions, settings, tmp_path / "vectors")
    yield st
    st.store.close()


def test_recommend_never_returns_seen_items_and_follows_taste(stack: Stack) -> None:
    items = stack.add_items(catalog())
    u = stack.add_user("alice")
    seen = [items[f"horror-{i}"] for i in range(5)]
    stack.interact(u, seen, "like")
    stack.sync()
    recs = stack.service.recommend("alice", k=10)
    assert len(recs) == 10
    assert not {f"horror-{i}" for i in range(5)} & set(ids(recs))
    assert all(r.item_id.startswith("horror-") for r in recs[:5])  # her taste comes first
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)


def test_user_with_five_thousand_seen_items(stack: Stack) -> None:
    rows = [
        {
            "external_id": f"it-{i}",
            "title": f"T{i}",
            "text": f"{GENRE_WORDS[GENRES[i % 4]]} item{i}",
            "attributes": {"genre": GENRES[i % 4]},
        }
        for i in range(5200)
    ]
    items = stack.add_items(rows)
    u = stack.add_user("binge")
    seen_ids = [items[f"it-{i}"] for i in range(5000)]
    stack.interact(u, seen_ids)
    stack.sync()
    recs = stack.service.recommend("binge", k=50)
    assert len(recs) == 50
    returned = {int(r.item_id.split("-")[1]) for r in recs}
    assert all(i >= 5000 for i in returned)


def test_seen_ids_come_newest_first_once_each_and_only_of_the_seen_types(stack: Stack) -> None:
    items = stack.add_items(catalog())
    u = stack.add_user("again")
    a, b, c, d = (items[f"comedy-{i}"] for i in range(4))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    stack.interact(u, [a], "view", t0 - timedelta(hours=1))
    stack.interact(u, [c], "view", t0)  # b and c at the same time: the smaller id first
    stack.interact(u, [b], "view", t0)
    stack.interact(u, [a], "view", t0 + timedelta(hours=1))  # a again: now the most recent view
    stack.interact(u, [d], "purchase", t0 + timedelta(hours=2))
    with stack.sessions() as session:
        found = query_repo.user_with_history(session, "again", None, 0)
        assert found is not None and found[1] == [d, a, *sorted([b, c])] and found[2] == []
        found = query_repo.user_with_history(session, "again", ["view"], 2)
        assert found is not None and found[1] == [a, *sorted([b, c])]
        assert [(e.item_id, e.type) for e in found[2]] == [(d, "purchase"), (a, "view")]  # any type
        assert query_repo.user_with_history(session, "nobody", None, 0) is None


def test_seen_all_but_three_matching_a_filter(stack: Stack) -> None:
    items = stack.add_items(catalog())
    u = stack.add_user("nearly-done")
    comedy = [f"comedy-{i}" for i in range(25)]
    left = {"comedy-3", "comedy-11", "comedy-19"}
    stack.interact(u, [items[c] for c in comedy if c not in left])
    stack.sync()
    recs = stack.service.recommend("nearly-done", k=10, filter={"genre": "comedy"})
    assert set(ids(recs)) == left
    # offset pages past them
    assert ids(stack.service.recommend("nearly-done", k=10, filter={"genre": "comedy"}, offset=3)) == []


def test_exclude_ids_and_inactive_items(stack: Stack) -> None:
    items = stack.add_items(catalog())
    u = stack.add_user("carol")
    stack.interact(u, [items["scifi-0"]], "like")
    stack.sync()
    first = ids(stack.service.recommend("carol", k=3))
    again = ids(stack.service.recommend("carol", k=3, exclude_ids=[first[0]]))
    assert first[0] not in again
    assert deactivate_items(stack.sessions, [first[1]]) == 1
    stack.sync()
    assert first[1] not in ids(stack.service.recommend("carol", k=50))


@pytest.mark.parametrize(
    ("flt", "check"),
    [
        ({"genre": "drama"}, lambda a: a["genre"] == "drama"),
        ({"genre": {"in": ["drama", "comedy"]}}, lambda a: a["genre"] in ("drama", "comedy")),
        ({"genre": {"ne": "scifi"}}, lambda a: a["genre"] != "scifi"),
        ({"year": {"gte": 1993, "lt": 1996}}, lambda a: 1993 <= a["year"] < 1996),
        ({"price": {"gt": 10.5}}, lambda a: a["price"] > 10.5),
        ({"price": {"lte": 6}}, lambda a: a["price"] <= 6),
        ({"in_stock": True}, lambda a: a["in_stock"] is True),
        ({"tags": "odd"}, lambda a: "odd" in a["tags"]),
        ({"not": {"genre": "scifi"}}, lambda a: a["genre"] != "scifi"),
        (
            {"and": [{"genre": "horror"}, {"in_stock": False}]},
            lambda a: a["genre"] == "horror" and not a["in_stock"],
        ),
        (
            {"or": [{"genre": "horror"}, {"year": 1990}]},
            lambda a: a["genre"] == "horror" or a["year"] == 1990,
        ),
    ],
)
def test_every_filter_operator(stack: Stack, flt: dict[str, Any], check: Any) -> None:
    stack.add_items(catalog(10))
    stack.sync()
    fields = ["genre", "year", "price", "in_stock", "tags"]
    recs = stack.service.search("spaceship laughter ghost tears", k=40, filter=flt, fields=fields)
    assert recs, flt
    assert all(check(r.fields) for r in recs), flt
    expected = sum(1 for row in catalog(10) if check(row["attributes"]))
    assert len(recs) == min(40, expected)


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"colour": "red"}, "filter.colour"),
        ({"year": "recent"}, "filter.year"),
        ({"and": [{"genre": "drama"}, {"price": {"gte": "cheap"}}]}, "filter.and[1].price"),
        ({"genre": {"like": "dr%"}}, "filter.genre"),
        ("{not json", "filter"),
    ],
)
def test_bad_filters_name_the_path(stack: Stack, flt: Any, message: str) -> None:
    stack.add_items(catalog(2))
    stack.sync()
    with pytest.raises(ValidationError) as err:
        stack.service.search("ghost", filter=flt)
    assert message in str(err.value)


def test_popular_items_far_down_the_list_are_found_under_a_narrow_filter(stack: Stack) -> None:
    """The popularity list is read a few items at a time; when the filter keeps few of them, the reads grow
    until the list is complete, in popularity order."""
    items = stack.add_items(catalog(n_per_genre=8))
    order = [f"{g}-{i}" for g in GENRES if g != "scifi" for i in range(8)] + [f"scifi-{i}" for i in range(8)]
    now = datetime.now(UTC) - timedelta(days=1)
    for n in range(len(order)):  # the item at position p is interacted with by len(order) - p users
        stack.interact(stack.add_user(f"fan{n}"), [items[e] for e in order[: n + 1]], start=now)
    stack.add_user("newbie")
    stack.sync()
    assert ids(stack.service.recommend("newbie", k=3, filter={"genre": "scifi"})) == [
        "scifi-0",
        "scifi-1",
        "scifi-2",
    ]
    assert ids(stack.service.recommend("newbie", k=2)) == ["drama-0", "drama-1"]


def test_cold_start_popular_profile_and_unknown(stack: Stack) -> None:
    items = stack.add_items(catalog())
    fans = [stack.add_user(f"fan{i}") for i in range(3)]
    now = datetime.now(UTC) - timedelta(days=1)
    for n, f in enumerate(fans):
        stack.interact(f, [items["drama-7"], items["scifi-2"]][: n + 1], start=now)
    stack.add_user("newbie")
    stack.add_user("writer", profile="ghost haunted cellar scream")
    stack.sync()

    popular = stack.service.recommend("newbie", k=2, explain=True)
    assert ids(popular) == ["drama-7", "scifi-2"]
    assert popular[0].reason is not None and popular[0].reason.kind == "popular"
    assert ids(stack.service.recommend("newbie", k=5, filter={"genre": "scifi"})) == ["scifi-2"]

    profile = stack.service.recommend("writer", k=5, explain=True)
    assert all(r.item_id.startswith("horror-") for r in profile)
    assert profile[0].reason is not None and profile[0].reason.kind == "profile"

    with pytest.raises(NotFoundError):
        stack.service.recommend("nobody")


def test_explain_names_the_history_item(stack: Stack) -> None:
    items = stack.add_items(catalog())
    u = stack.add_user("dave")
    stack.interact(u, [items["scifi-1"], items["comedy-1"]], "like")
    stack.sync()
    for rec in stack.service.recommend("dave", k=6, explain=True):
        assert rec.reason is not None and rec.reason.kind == "history"
        expected = "scifi-1" if rec.item_id.startswith("scifi") else "comedy-1"
        assert rec.reason.item_id == expected
        assert 0 < rec.reason.similarity <= 1


def test_diversity_changes_the_result(stack: Stack) -> None:
    items = stack.add_items(catalog())
    u = stack.add_user("erin")
    stack.interact(u, [items["horror-0"], items["horror-1"], items["comedy-0"]], "like")
    stack.sync()
    plain = stack.service.recommend("erin", k=8)
    diverse = stack.service.recommend("erin", k=8, diversity=0.9)
    assert ids(plain) != ids(diverse)
    genres = lambda recs: {r.item_id.split("-")[0] for r in recs}  # noqa: E731
    assert len(genres(diverse)) >= len(genres(plain))
    with pytest.raises(ValidationError):
        stack.service.recommend("erin", diversity=1.5)


def test_similar_search_and_anonymous(stack: Stack) -> None:
    stack.add_items(catalog())
    stack.sync()
    sim = stack.service.similar_items("scifi-3", k=5)
    assert "scifi-3" not in ids(sim)
    assert all(r.item_id.startswith("scifi-") for r in sim)
    with pytest.raises(NotFoundError):
        stack.service.similar_items("nope")

    assert stack.service.search("haunted ghost night", k=3)[0].item_id.startswith("horror-")

    anon = stack.service.recommend_anonymous(liked=["comedy-1", "comedy-2"], disliked=["horror-1"], k=5)
    assert "comedy-1" not in ids(anon) and "comedy-2" not in ids(anon)
    assert all(r.item_id.startswith("comedy-") for r in anon)
    text_only = stack.service.recommend_anonymous(text="robot alien galaxy", k=3)
    assert all(r.item_id.startswith("scifi-") for r in text_only)
    with pytest.raises(NotFoundError):
        stack.service.recommend_anonymous(liked=["missing"])


def test_title_and_fields_come_from_postgres(stack: Stack) -> None:
    stack.add_items(catalog(3))
    stack.sync()
    rec = stack.service.search("spaceship robot", k=1, fields=["year", "genre"])[0]
    with stack.sessions() as s:
        title = s.scalar(select(Item.title).where(Item.external_id == rec.item_id))
    assert rec.title == title
    assert set(rec.fields) == {"year", "genre"}


def test_one_request_holds_one_connection_even_when_explained(stack: Stack, database_url: str) -> None:
    """A pool of ONE connection, no overflow: a request that checked out a second connection while holding
    the first (explainers, a cold popularity cache) would time out."""
    items = stack.add_items(catalog(5))
    alice = stack.add_user("alice")
    stack.interact(
        alice, [items["horror-0"], items["horror-1"]], "like", start=datetime.now(UTC) - timedelta(days=1)
    )
    stack.add_user("newbie")  # no history, no profile: the popularity list, computed on first use
    stack.sync()
    engine = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    try:
        service = QueryService(
            read_sessions(engine), stack.store, stack.settings, embedder=lambda: stack.embedder
        )
        recs = service.recommend("alice", k=3, explain=True, filter={"genre": "horror"})
        assert recs and all(r.reason is not None and r.reason.kind == "history" for r in recs)
        assert {r.reason.item_id for r in recs if r.reason} <= {"horror-0", "horror-1"}
        cold = service.recommend("newbie", k=2, explain=True)
        assert ids(cold) == ["horror-0", "horror-1"]  # the popular list, filled on the request's connection
        assert cold[0].reason is not None and cold[0].reason.kind == "popular"
        session = service.recommend_anonymous(liked=["horror-0"], k=3, explain=True)
        assert session and session[0].reason is not None and session[0].reason.kind == "history"
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()
