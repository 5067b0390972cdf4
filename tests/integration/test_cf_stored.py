"""The users' stored cf fold-ins (``users.cf_vector``): written by the worker, read in the one statement of a
recommendation only while they are exactly what the query-time fold-in would give. Real Postgres, real
embedded store, real worker and train job."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from factories import Stack
from factories import genre_catalog as catalog
from nearrec.config import Settings
from nearrec.jobs.train import train
from nearrec.model.cf import CFMeta
from nearrec.model.tuning import ModelConfig
from nearrec.model.user_vector import UserVectorParams
from nearrec.postgres import outbox
from nearrec.postgres import query_repo as repo
from nearrec.postgres.engine import transaction
from nearrec.query.collaborative import CF_HISTORY, cf_tag, cf_user_vector
from nearrec.vectors.base import AnyVector, Sparse

STATES = {
    "parked": text("UPDATE sync_outbox SET attempts = 3, failed_at = now()"),
    "retrying": text("UPDATE sync_outbox SET attempts = 1, available_at = now() + interval '1 hour'"),
}
XMIN = text("SELECT xmin FROM users WHERE id = :id")
EXPLAINED = "EXPLAIN (ANALYZE, FORMAT JSON) " + repo.USER_WITH_HISTORY
RIDGE = ModelConfig(family="ridge", rank=8, regularization=1.0, text_weight=0.2)
EASE = ModelConfig(family="ease", regularization=3.0, half_life=4.0, low_weight=0.5, text_weight=0.2)


@pytest.fixture
def stack(db: Engine, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    settings.popular_window_days = 36500
    st = Stack(sessions, settings, tmp_path / "vectors")
    yield st
    st.store.close()


def community(stack: Stack) -> tuple[dict[str, int], dict[str, int]]:
    """Users "d*" watch drama items, "h*" horror items (views, then a purchase: two event types)."""
    items = stack.add_items(catalog(20))
    users = {}
    for n in range(10):
        for group, genre in (("d", "drama"), ("h", "horror")):
            uid = stack.add_user(f"{group}{n}")
            users[f"{group}{n}"] = uid
            stack.interact(uid, [items[f"{genre}-{(n + j) % 12}"] for j in range(5)])
            stack.interact(uid, [items[f"{genre}-{(n + 7) % 12}"]], kind="purchase")
    stack.sync()
    return items, users


def meta_of(stack: Stack) -> CFMeta:
    meta = stack.service.cf_meta()
    assert meta is not None
    return meta


def read(stack: Stack, user: str, tag: str | None) -> repo.UserRead:
    with stack.sessions() as session:
        found = repo.user_request(session, user, stack.settings.seen_types, CF_HISTORY, cf_tag=tag)
    assert found is not None
    return found


def fold_in(stack: Stack, user: str) -> AnyVector | None:
    """The query-time fold-in of the user's events as the read returns them without a tag."""
    events = read(stack, user, None).events
    assert len(events) > 0
    params = UserVectorParams.from_settings(stack.settings)
    return cf_user_vector(stack.service.retriever, events, meta_of(stack), params)


def same(a: AnyVector | None, b: AnyVector | None) -> bool:
    if isinstance(a, Sparse) or isinstance(b, Sparse):
        return a == b
    if a is None or b is None:
        return a is b
    x, y = np.asarray(a), np.asarray(b)
    return x.dtype == y.dtype == np.float32 and np.array_equal(x, y)


def recs(stack: Stack, user: str, method: str) -> list[tuple[str, float]]:
    return [(r.item_id, r.score) for r in stack.service.recommend(user, k=6, method=method)]


def tag_now(stack: Stack) -> str:
    return stack.service.cf_tag(meta_of(stack))


def enqueue(stack: Stack, user_id: int) -> None:
    with transaction(stack.sessions) as session:
        outbox.enqueue(session, "user", [user_id])


@pytest.mark.parametrize("config", [RIDGE, EASE], ids=["dense", "sparse"])
def test_the_stored_fold_in_is_the_query_time_one_and_gives_the_same_answers(
    stack: Stack, config: ModelConfig
) -> None:
    items, users = community(stack)
    report = train(stack.sessions, stack.store, stack.settings, config, seed=0)
    assert report.users_enqueued == len(users)  # every user's stored vector is of no model yet
    assert not read(stack, "d3", tag_now(stack)).folded  # their refresh is pending
    stack.sync()
    tag = tag_now(stack)
    for user in users:
        stored = read(stack, user, tag)
        assert stored.folded and len(stored.events) == 0  # the vector instead of the events
        assert stored.cf is not None and same(stored.cf, fold_in(stack, user)), user
        assert isinstance(stored.cf, Sparse) == config.family.startswith("ease")
    fast = {m: recs(stack, "d3", m) for m in ("cf", "hybrid")}
    enqueue(stack, users["d3"])  # a pending refresh: the read falls back to the events
    assert not read(stack, "d3", tag).folded
    assert {m: recs(stack, "d3", m) for m in ("cf", "hybrid")} == fast
    assert all(r.startswith("drama-") for r, _ in fast["cf"][:3])


def test_a_new_interaction_falls_back_until_the_worker_refreshes_the_user(stack: Stack) -> None:
    items, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, RIDGE, seed=0)
    stack.sync()
    tag = tag_now(stack)
    before = read(stack, "d3", tag)
    assert before.folded
    later = datetime(2030, 1, 1, tzinfo=UTC)
    stack.interact(users["d3"], [items[f"horror-{n}"] for n in range(3)], kind="purchase", start=later)
    after = read(stack, "d3", tag)
    assert not after.folded and after.cf is None  # the user's outbox row: the events, newest first
    assert after.events.item_ids[:3] == [items["horror-2"], items["horror-1"], items["horror-0"]]
    fresh = fold_in(stack, "d3")
    assert not same(fresh, before.cf)
    recommended = {r for r, _ in recs(stack, "d3", "cf")}
    assert not recommended & {"horror-0", "horror-1", "horror-2"}  # seen now
    stack.sync()
    again = read(stack, "d3", tag)
    assert again.folded and same(again.cf, fresh)  # the worker stored the new fold-in
    assert {r for r, _ in recs(stack, "d3", "cf")} == recommended


def test_a_new_training_or_other_settings_fall_back(stack: Stack) -> None:
    _, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, RIDGE, seed=0)
    stack.sync()
    first = tag_now(stack)
    assert read(stack, "h2", first).folded
    other = dataclasses.replace(UserVectorParams.from_settings(stack.settings), rating_threshold=2.0)
    assert not read(stack, "h2", cf_tag(meta_of(stack), other)).folded  # other settings: another tag
    report = train(stack.sessions, stack.store, stack.settings, RIDGE, seed=1)
    assert report.meta is not None and report.meta.generation == 2
    with transaction(stack.sessions) as session:  # no outbox row left: only the tag differs
        session.execute(text("DELETE FROM sync_outbox"))
    second = cf_tag(report.meta, UserVectorParams.from_settings(stack.settings))
    assert second != first
    assert not read(stack, "h2", second).folded and read(stack, "h2", first).folded
    enqueue(stack, users["h2"])
    stack.sync()
    stored = read(stack, "h2", second)
    assert stored.folded and not read(stack, "h2", first).folded


@pytest.mark.parametrize("state", ["parked", "retrying"])
def test_a_parked_or_retried_refresh_falls_back(stack: Stack, state: str) -> None:
    _, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, RIDGE, seed=0)
    stack.sync()
    tag = tag_now(stack)
    assert read(stack, "d1", tag).folded
    enqueue(stack, users["d1"])
    with transaction(stack.sessions) as session:
        session.execute(STATES[state])
    stack.sync()  # nothing to take: the row stays
    assert not read(stack, "d1", tag).folded
    assert read(stack, "d0", tag).folded  # other users keep theirs


def test_the_events_scan_is_skipped_when_the_stored_vector_is_used(stack: Stack) -> None:
    _, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, RIDGE, seed=0)
    stack.sync()
    tag = tag_now(stack)

    def events_scan_loops(user: str) -> int:
        params = {"external_id": user, "types": None, "history": CF_HISTORY, "excluded": [], "pending": 5}
        with stack.sessions() as session:
            plan = repo.driver(session).execute(EXPLAINED, {**params, "cf_tag": tag})
            [[doc]] = plan.fetchall()
        doc = doc if isinstance(doc, list) else json.loads(doc)
        return sum(n.get("Actual Loops", 0) for n in nodes(doc[0]["Plan"]) if scans_events(n))

    assert events_scan_loops("d4") == 0
    enqueue(stack, users["d4"])
    assert events_scan_loops("d4") == 1


def nodes(plan: dict[str, object]) -> Iterator[dict[str, object]]:
    yield plan
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        yield from nodes(child)


def scans_events(node: dict[str, object]) -> bool:
    """The scan of interactions under the events' subquery (alias ``h``)."""
    return node.get("Relation Name") == "interactions" and node.get("Alias") == "h"


def test_a_refresh_that_changes_nothing_does_not_rewrite_the_row(stack: Stack) -> None:
    items, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, RIDGE, seed=0)
    stack.sync()

    def version(user: int) -> str:
        with stack.sessions() as session:
            return str(session.execute(XMIN, {"id": user}).scalar_one())

    before = version(users["d5"]), version(users["d6"])
    enqueue(stack, users["d5"])
    stack.interact(users["d6"], [items["drama-11"]], start=datetime(2030, 1, 1, tzinfo=UTC))
    stack.sync()
    assert version(users["d5"]) == before[0]  # same fold-in: the row is left alone
    assert version(users["d6"]) != before[1] and read(stack, "d6", tag_now(stack)).folded
