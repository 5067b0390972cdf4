"""`nearrec train` and the cf / hybrid methods of the query service, end to end on real stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from factories import Stack, deactivate_items, history, ids, load_items
from factories import genre_catalog as catalog
from nearrec.config import Settings
from nearrec.errors import ValidationError
from nearrec.ingest.values import content_hash
from nearrec.jobs.train import train
from nearrec.model.cf import CFMeta
from nearrec.model.tuning import ModelConfig

CFG = ModelConfig(family="ridge", rank=8, regularization=1.0, text_weight=0.2)
CF_VECTOR = "cf1"
"""The model vector of the first training."""


@pytest.fixture
def stack(db: Engine, sessions: sessionmaker[Session], settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    settings.seen_filter_limit = 5  # small: exclusion beyond the store filter is exercised too
    settings.popular_window_days = 36500
    st = Stack(sessions, settings, tmp_path / "vectors")
    yield st
    st.store.close()


def community(stack: Stack) -> tuple[dict[str, int], dict[str, int]]:
    """Users "d*" watch drama items 0-11, users "h*" horror items 0-11 (their text is unrelated to that)."""
    items = stack.add_items(catalog(20))
    users = {}
    for n in range(12):
        for group, genre in (("d", "drama"), ("h", "horror")):
            uid = stack.add_user(f"{group}{n}")
            users[f"{group}{n}"] = uid
            picks = [items[f"{genre}-{(n + j) % 12}"] for j in range(6)]
            stack.interact(uid, picks)
    stack.sync()
    return items, users


def test_train_writes_cf_vectors_and_metadata(stack: Stack) -> None:
    items, users = community(stack)
    assert stack.service.resolve_method(None)[0] == "text"
    with pytest.raises(ValidationError, match="nearrec train"):
        stack.service.recommend("d0", method="cf")
    report = train(stack.sessions, stack.store, stack.settings, CFG, seed=0)
    assert report.item_vectors == 24 and report.users == 24
    meta = CFMeta.from_metadata(stack.store.get_metadata(stack.settings.items_collection))
    assert meta is not None and meta.dim == 9 and meta.rank == 8 and meta.items == 24 and meta.users == 24
    assert meta.vector == CF_VECTOR
    assert stack.store.vector_sizes(stack.settings.items_collection)[CF_VECTOR] == 9
    got = stack.store.retrieve(stack.settings.items_collection, [items["drama-0"], items["scifi-0"]], True)
    vectors = {h.id: h.vector or {} for h in got}
    assert CF_VECTOR in vectors[items["drama-0"]] and "text" in vectors[items["drama-0"]]
    assert CF_VECTOR not in vectors[items["scifi-0"]]  # no interactions: text only
    user = stack.store.retrieve(stack.settings.users_collection, [users["d0"]], True)[0]
    # users get no stored cf vector: queries fold a user in from their history (always fresh)
    assert user.vector is not None and CF_VECTOR not in user.vector and "text" in user.vector
    assert CF_VECTOR not in stack.store.vector_sizes(stack.settings.users_collection)


def test_cf_and_hybrid_follow_the_community_and_never_return_seen_items(stack: Stack) -> None:
    items, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, CFG, seed=0)
    assert stack.service.resolve_method(None)[0] == "hybrid"
    seen = {f"drama-{(3 + j) % 12}" for j in range(6)}
    for method in ("cf", "hybrid", None):
        recs = ids(stack.service.recommend("d3", k=6, method=method))
        assert not seen & set(recs)
        assert all(r.startswith("drama-") for r in recs[:3]), (method, recs)
    # hybrid reaches items with no cf vector through text; the full list covers the whole unseen catalogue
    everything = ids(stack.service.recommend("d3", k=200, method="hybrid"))
    assert len(everything) == 80 - 6 and not seen & set(everything)
    assert "scifi-5" in everything
    # past the store filter's bound the fused query returns ids only; the kept hits' payloads are read back
    shown = stack.service.recommend("d3", k=5, method="hybrid", fields=["genre"])
    assert all(r.fields["genre"] == r.item_id.split("-")[0] for r in shown)
    # filters and paging hold for cf too
    horror = ids(stack.service.recommend("d3", k=5, method="cf", filter={"genre": "horror"}))
    assert horror and all(r.startswith("horror-") for r in horror)
    first = ids(stack.service.recommend("d3", k=3, method="hybrid"))
    assert ids(stack.service.recommend("d3", k=2, offset=1, method="hybrid")) == first[1:3]


def test_query_time_fold_in_sees_new_interactions_and_inactive_items_never_return(stack: Stack) -> None:
    items, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, CFG, seed=0)
    before = ids(stack.service.recommend("h0", k=4, method="cf"))
    assert before[0].startswith("horror-"), before
    # h0 suddenly watches lots of drama: the query-time cf vector follows without retraining.
    history(
        stack.sessions,
        "h0",
        [(f"drama-{j}", "view", None) for j in range(6)],
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert deactivate_items(stack.sessions, ["drama-7"]) == 1
    stack.sync()
    recs = ids(stack.service.recommend("h0", k=4, method="cf"))
    assert recs[0].startswith("drama-") and sum(r.startswith("drama-") for r in recs) >= 2, recs
    assert not {f"drama-{j}" for j in range(6)} & set(recs)
    for method in ("cf", "hybrid", "text"):
        assert "drama-7" not in ids(stack.service.recommend("h0", k=100, method=method))


def test_popular_method_and_diversity_with_hybrid(stack: Stack) -> None:
    items, users = community(stack)
    train(stack.sessions, stack.store, stack.settings, CFG, seed=0)
    popular = ids(stack.service.recommend("d0", k=5, method="popular"))
    assert popular and not {f"drama-{j}" for j in range(6)} & set(popular)
    plain = stack.service.recommend("d0", k=5, method="hybrid")
    diverse = stack.service.recommend("d0", k=5, method="hybrid", diversity=0.9)
    assert len(diverse) == 5 and ids(diverse) != ids(plain)
    with pytest.raises(ValidationError, match="unknown method"):
        stack.service.recommend("d0", method="magic")
    assert np.isfinite([r.score for r in diverse]).all()


def test_anonymous_session_uses_the_trained_model(stack: Stack) -> None:
    community(stack)
    train(stack.sessions, stack.store, stack.settings, CFG, seed=0)
    liked = ["drama-0", "drama-1"]
    for method in ("cf", "hybrid", None):
        recs = ids(stack.service.recommend_anonymous(liked=liked, k=5, method=method))
        assert recs and not set(liked) & set(recs)
        assert all(r.startswith("drama-") for r in recs[:3]), (method, recs)
    # a session of items nobody interacted with has no cf signal: text carries it
    text_only = ids(stack.service.recommend_anonymous(liked=["scifi-0"], k=3, method="hybrid"))
    assert text_only and "scifi-0" not in text_only
    popular = ids(stack.service.recommend_anonymous(k=3, method="popular"))
    assert len(popular) == 3


def test_a_text_change_keeps_the_cf_vector(stack: Stack) -> None:
    items, _ = community(stack)
    train(stack.sessions, stack.store, stack.settings, CFG, seed=0)
    before = stack.store.retrieve(stack.settings.items_collection, [items["drama-0"]], True)[0].vector
    assert before is not None and CF_VECTOR in before
    load_items(stack.sessions, [{**catalog(1)[0], "text": "rewritten text"}])  # drama-0, new text
    stack.sync()
    after = stack.store.retrieve(stack.settings.items_collection, [items["drama-0"]], True)[0]
    assert after.payload["content_hash"] == content_hash("rewritten text")  # re-embedded...
    assert after.vector is not None and not np.allclose(after.vector["text"], before["text"])
    assert np.allclose(after.vector[CF_VECTOR], before[CF_VECTOR])  # ...and the collaborative vector survives
