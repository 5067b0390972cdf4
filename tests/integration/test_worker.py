"""The outbox worker on a real Postgres and the real embedded Qdrant engine (hashing embedder)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker
from sync_support import (
    CountingEmbedder,
    add_items,
    add_user,
    catalog,
    content_hash,
    delete_item,
    indexed_fields,
    interact,
    item_text,
    open_store,
    outbox_count,
    outbox_rows,
    update_item,
)

from nearrec.config import Settings
from nearrec.errors import ModelMismatchError
from nearrec.model.user_vector import UserVectorParams, build_user_vector, history_weights
from nearrec.postgres.models import OutboxRow
from nearrec.postgres.outbox import enqueue
from nearrec.sync.check import check_stores
from nearrec.sync.worker import SyncWorker, describe_error
from nearrec.vectors.base import VectorStore
from nearrec.vectors.edge import EdgeVectorStore

ITEMS = "nearrec_items"
later = timedelta(hours=1)
USERS = "nearrec_users"


@dataclass
class Env:
    sessions: sessionmaker[Session]
    settings: Settings
    store: VectorStore
    embedder: CountingEmbedder
    worker: SyncWorker

    def check(self) -> None:
        with self.sessions.begin() as s:
            report = check_stores(s, self.store, self.settings, self.embedder.model_id)
        assert report.ok, (report.problems, report.items, report.users)


def make_env(kind: str, sessions: sessionmaker[Session], settings: Settings) -> Env:
    settings.embedding_model = "hashing:64"
    store = open_store(kind, settings)
    embedder = CountingEmbedder(64)
    return Env(sessions, settings, store, embedder, SyncWorker(sessions, store, embedder, settings))


@pytest.fixture(params=["edge", "qdrant-local"])
def env(
    request: pytest.FixtureRequest, db: Engine, sessions: sessionmaker[Session], settings: Settings
) -> Iterator[Env]:
    """A worker on either engine (the same behaviour is expected from both)."""
    e = make_env(request.param, sessions, settings)
    yield e
    e.store.close()


@pytest.fixture
def edge_env(db: Engine, sessions: sessionmaker[Session], settings: Settings) -> Iterator[Env]:
    """A worker on the embedded default store (for the CLI, which opens it itself)."""
    e = make_env("edge", sessions, settings)
    yield e
    e.store.close()


def test_items_reach_the_store_with_payload_and_indexes(env: Env) -> None:
    ids = add_items(env.sessions, catalog(30))
    report = env.worker.drain()
    assert report.items.embedded == 30 and report.failed == 0
    assert outbox_count(env.sessions) == 0
    assert env.store.count(ITEMS) == 30
    hit = env.store.retrieve(ITEMS, [ids[4]], with_vectors=True)[0]
    assert hit.payload == {
        "external_id": "i4",
        "content_hash": content_hash(item_text(4)),
        "active": 1,
        "genre": "robot",
        "year": 1994,
        "price": 6.0,
        "new": 1,
        "nearrec:title": "Item 4",
        "nearrec:fields": {"new": True},  # the attributes the top level does not hold as Postgres does
    }
    expected = env.embedder.embed([item_text(4)])[0]
    assert np.allclose(hit.vector["text"], expected, atol=1e-5)  # type: ignore[index]
    # the alias points to a physical collection holding the model id
    assert env.store.resolve_alias(
        ITEMS,
    ).startswith(ITEMS + "_")  # type: ignore[union-attr]
    assert env.store.get_metadata(ITEMS)["embedding_model"] == "hashing:64"
    if isinstance(env.store, EdgeVectorStore):  # qdrant-client's local mode keeps no payload indexes
        assert {"external_id", "active", "genre", "year", "price", "new"} <= indexed_fields(env.store, ITEMS)
    env.check()


def test_only_changed_texts_are_embedded_and_rows_are_coalesced(env: Env) -> None:
    ids = add_items(env.sessions, catalog(10))
    env.worker.drain()
    env.embedder.texts.clear()
    update_item(env.sessions, ids[0], text="a brand new text")
    update_item(env.sessions, ids[0], text="the final text")  # two rows for one item: coalesced
    update_item(env.sessions, ids[1], attributes={"genre": "war", "extra": "x"})  # payload only
    with env.sessions.begin() as s:
        enqueue(s, "item", ids[2:5])  # nothing changed at all
    report = env.worker.drain()
    assert dict(env.embedder.texts) == {"the final text": 1}
    assert report.items.embedded == 1 and report.items.rewritten == 1 and report.items.unchanged == 3
    assert outbox_count(env.sessions) == 0
    payload = env.store.retrieve(ITEMS, [ids[1]])[0].payload
    assert payload["genre"] == "war" and payload["extra"] == "x" and "year" not in payload
    env.check()


def test_identical_texts_are_embedded_once(env: Env) -> None:
    add_items(env.sessions, [{"external_id": f"d{k}", "text": "same words"} for k in range(5)])
    env.worker.drain()
    assert env.embedder.texts["same words"] == 1
    assert env.store.count(ITEMS) == 5


def test_inactive_items_keep_their_point_flagged_and_deleted_items_lose_it(env: Env) -> None:
    ids = add_items(env.sessions, catalog(6))
    env.worker.drain()
    env.embedder.texts.clear()
    update_item(env.sessions, ids[0], active=False)
    delete_item(env.sessions, ids[1])
    update_item(env.sessions, ids[2], text="   ")  # no text: nothing to embed, no point
    env.worker.drain()
    assert not env.embedder.texts  # deactivation does not re-embed
    assert env.store.retrieve(ITEMS, [ids[0]])[0].payload["active"] == 0
    assert env.store.retrieve(ITEMS, [ids[1], ids[2]]) == []
    assert env.store.count(ITEMS) == 4
    from nearrec.filters import Eq

    assert env.store.count(ITEMS, Eq("active", 1)) == 3
    env.check()
    update_item(env.sessions, ids[0], active=True)
    env.worker.drain()
    assert env.store.retrieve(ITEMS, [ids[0]])[0].payload["active"] == 1


def test_user_vectors_blend_history_and_profile(env: Env) -> None:
    ids = add_items(env.sessions, catalog(8))
    alice = add_user(env.sessions, "alice", profile="likes space robots")
    bob = add_user(env.sessions, "bob")  # neither history nor profile: no vector
    carol = add_user(env.sessions, "carol", profile="ocean music")
    events = [
        (ids[0], "view", None),
        (ids[1], "like", None),
        (ids[2], "rating", 2.0),
        (ids[3], "dislike", None),
    ]
    interact(env.sessions, alice, events)
    env.worker.drain()
    assert {h.id for h in env.store.retrieve(USERS, [alice, bob, carol])} == {alice, carol}

    params = UserVectorParams.from_settings(env.settings)
    item_vecs = env.embedder.embed([item_text(k) for k in (3, 2, 1, 0)])  # most recent first
    weights = history_weights([(t, v) for _, t, v in reversed(events)], params)
    profile = env.embedder.embed(["likes space robots"])[0]
    expected = build_user_vector(profile, item_vecs, weights, params.profile_weight)
    hit = env.store.retrieve(USERS, [alice], with_vectors=True)[0]
    assert expected is not None
    assert np.allclose(hit.vector["text"], expected, atol=1e-4)  # type: ignore[index]
    assert hit.payload["external_id"] == "alice" and hit.payload["interactions"] == 4
    carol_hit = env.store.retrieve(USERS, [carol], with_vectors=True)[0]
    assert np.allclose(carol_hit.vector["text"], env.embedder.embed(["ocean music"])[0], atol=1e-5)  # type: ignore[index]
    env.check()

    # A new interaction recomputes alice without re-embedding her unchanged profile.
    env.embedder.texts.clear()
    interact(env.sessions, alice, [(ids[5], "purchase", None)], start=datetime(2026, 2, 1, tzinfo=UTC))
    report = env.worker.drain()
    assert report.users.computed == 1 and report.users.profiles_embedded == 0
    assert not env.embedder.texts
    env.check()


def test_deleted_user_loses_vector(env: Env) -> None:
    from sqlalchemy import delete

    from nearrec.postgres.models import User

    ids = add_items(env.sessions, catalog(3))
    uid = add_user(env.sessions, "dave")
    interact(env.sessions, uid, [(ids[0], "view", None)])
    env.worker.drain()
    assert env.store.count(USERS) == 1
    with env.sessions.begin() as s:
        s.execute(delete(User).where(User.id == uid))
        enqueue(s, "user", [uid], op="delete")
    env.worker.drain()
    assert env.store.count(USERS) == 0
    env.check()


def test_user_waiting_for_unsynced_items_is_completed_later(env: Env) -> None:
    ids = add_items(env.sessions, catalog(4))
    uid = add_user(env.sessions, "erin")
    interact(env.sessions, uid, [(i, "view", None) for i in ids])
    # Process only the user's rows first: the items are still pending.
    with env.sessions.begin() as s:
        s.execute(update(OutboxRow).where(OutboxRow.entity == "item").values(available_at=func.now() + later))
    first = env.worker.run_batch()
    assert first.users.incomplete == 1
    assert env.store.retrieve(USERS, [uid]) == []  # no item vector yet, no profile: nothing to write
    assert [(r.entity, r.entity_id) for r in outbox_rows(env.sessions) if r.entity == "user"] == [
        ("user", uid)
    ]
    with env.sessions.begin() as s:
        s.execute(update(OutboxRow).where(OutboxRow.entity == "item").values(available_at=func.now()))
    env.worker.drain(wait_horizon=3)
    assert env.store.retrieve(USERS, [uid])[0].payload["interactions"] == 4
    env.check()


def test_worker_refuses_another_model(env: Env) -> None:
    add_items(env.sessions, catalog(3))
    env.worker.drain()
    other = SyncWorker(env.sessions, env.store, CountingEmbedder(32), env.settings)
    with pytest.raises(ModelMismatchError, match="nearrec reindex"):
        other.prepare()
    add_items(env.sessions, catalog(2, start=10))
    with pytest.raises(ModelMismatchError):
        other._schema = env.worker.schema  # bypass prepare: the per-batch check must also refuse
        other.run_batch()
    assert outbox_count(env.sessions) == 2  # nothing was lost


def test_notification_wakes_an_idle_worker_within_a_second(env: Env, database_url: str) -> None:
    env.settings.worker_poll_seconds = 5.0  # polling alone would be too slow: the NOTIFY must do it
    env.worker.prepare()
    stop = threading.Event()
    thread = threading.Thread(target=env.worker.run, args=(stop,), kwargs={"listen_url": database_url})
    thread.start()
    try:
        time.sleep(0.5)  # idle, waiting on LISTEN
        [item] = add_items(env.sessions, catalog(1))
        t0 = time.monotonic()
        while not env.store.retrieve(ITEMS, [item]) and time.monotonic() - t0 < 3:
            time.sleep(0.02)
        assert env.store.retrieve(ITEMS, [item]), "not synced"
        assert time.monotonic() - t0 < 1.0
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def test_describe_error_masks_secrets() -> None:
    exc = RuntimeError("cannot connect to postgresql://bob:hunter2@db:5432/x with api_key=abc123 token: zzz")
    text = describe_error(exc)
    assert "hunter2" not in text and "abc123" not in text and "zzz" not in text
    assert text.startswith("RuntimeError: cannot connect to postgresql://bob:***@db")
    assert len(describe_error(RuntimeError("x" * 5000))) <= 1000


def test_unknown_entity_rows_fail_without_blocking_others(env: Env) -> None:
    env.settings.worker_max_attempts = 1
    ids = add_items(env.sessions, catalog(3))
    with env.sessions.begin() as s:
        s.add(OutboxRow(entity="widget", entity_id=1, op="upsert"))
    report = env.worker.drain()
    assert report.failed == 1
    assert env.store.count(ITEMS) == len(ids)
    with env.sessions() as s:
        row = s.scalars(select(OutboxRow)).one()
    assert (
        row.entity == "widget"
        and row.failed_at is not None
        and "unknown outbox entity" in (row.last_error or "")
    )


def test_cli_worker_once_and_status(
    edge_env: Env, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from nearrec.cli.main import cli

    add_items(edge_env.sessions, catalog(12))
    edge_env.store.close()  # the CLI opens the embedded store itself
    monkeypatch.setenv("NEARREC_DATABASE_URL", database_url)
    monkeypatch.setenv("NEARREC_DATA_DIR", str(edge_env.settings.data_dir))
    monkeypatch.setenv("NEARREC_EMBEDDING_MODEL", "hashing:64")
    runner = CliRunner()
    result = runner.invoke(cli, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "12 items embedded" in result.output
    result = runner.invoke(cli, ["sync", "status"])
    assert result.exit_code == 0, result.output
    assert "0 pending" in result.output and "12 points" in result.output
    result = runner.invoke(cli, ["sync", "check"])
    assert result.exit_code == 0, result.output
    assert "the stores agree" in result.output


def test_cli_ingest_then_worker_once_leaves_the_stores_equal(
    db: Engine, database_url: str, settings: Settings, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from nearrec.cli.main import cli

    monkeypatch.setenv("NEARREC_DATABASE_URL", database_url)
    monkeypatch.setenv("NEARREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("NEARREC_EMBEDDING_MODEL", "hashing:64")
    ml = shared_dir / "datasets" / "movielens-100k"
    runner = CliRunner()
    for args in (
        ["ingest", "items", str(ml / "items.csv"), "--list-columns", "genres", "--quiet"],
        ["ingest", "users", str(ml / "users.csv"), "--id-column", "user_id", "--quiet"],
        ["ingest", "interactions", str(ml / "interactions.csv"), "--type", "rating", "--quiet"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    # two items are rejected: their year is not a number ("unkonwn", "V")
    assert "1680 items embedded" in result.output and "943 user vectors" in result.output
    result = runner.invoke(cli, ["sync", "check"])
    assert result.exit_code == 0, result.output
    with EdgeVectorStore(settings.data_dir / "vectors") as store:
        assert store.count(ITEMS) == 1680 and store.count(USERS) == 943
        hit = store.retrieve(ITEMS, [1])[0]
        assert isinstance(hit.payload["genres"], list) and hit.payload["active"] == 1
        schema = indexed_fields(store, ITEMS)
        # the two years that are not numbers were rejected rows: the column stays an integer, filterable
        assert {"genres", "active", "external_id", "year"} <= schema
