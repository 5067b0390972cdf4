"""`sync check` / `--repair` and `reindex` on a real Postgres and the real embedded Qdrant engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sync_support import CountingEmbedder, add_items, add_user, catalog, interact, outbox_count, update_item

from nearrec.cli.main import cli
from nearrec.cli.reindex_cmd import run_reindex
from nearrec.config import Settings
from nearrec.errors import ModelMismatchError
from nearrec.sync import last_check
from nearrec.sync.check import check_stores, repair
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.base import PointRecord
from nearrec.vectors.edge import EdgeVectorStore
from nearrec.vectors.payload import META_SEARCH

ITEMS, USERS = "nearrec_items", "nearrec_users"


@pytest.fixture
def synced(
    db: Engine, sessions: sessionmaker[Session], settings: Settings
) -> Iterator[tuple[EdgeVectorStore, SyncWorker, list[int], list[int]]]:
    settings.embedding_model = "hashing:64"
    store = EdgeVectorStore(settings.data_dir / "vectors")
    worker = SyncWorker(sessions, store, CountingEmbedder(64), settings)
    items = add_items(sessions, catalog(20))
    users = [add_user(sessions, f"u{k}", profile="loves ghosts" if k == 0 else None) for k in range(3)]
    for k, uid in enumerate(users):
        interact(sessions, uid, [(items[k], "view", None), (items[k + 5], "like", None)])
    worker.drain()
    yield store, worker, items, users
    store.close()


def test_check_finds_each_kind_of_drift_and_repair_fixes_it(
    synced: tuple[EdgeVectorStore, SyncWorker, list[int], list[int]],
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    store, worker, items, users = synced
    with sessions.begin() as s:
        assert check_stores(s, store, settings, "hashing:64").ok
    store.delete(ITEMS, [items[0]])  # missing
    store.upsert(ITEMS, [PointRecord(99999, {"text": np.ones(64)}, {"external_id": "ghost"})])  # extra
    store.set_payload(ITEMS, [items[1]], {"content_hash": "0" * 64})  # stale
    store.set_payload(ITEMS, [items[2]], {"active": 0})  # active flag differs
    store.set_payload(ITEMS, [items[3]], {"genre": "tampered"})  # payload differs
    store.delete(USERS, [users[0]])  # missing user
    store.set_payload(USERS, [users[1]], {"content_hash": "x"})  # stale user
    with sessions.begin() as s:
        report = check_stores(s, store, settings, "hashing:64")
    assert not report.ok
    assert report.items.missing == [items[0]] and report.items.extra == [99999]
    assert report.items.stale == [items[1]] and report.items.active == [items[2]]
    assert report.items.payload == [items[3]]
    assert report.users.missing == [users[0]] and report.users.stale == [users[1]] and not report.users.extra
    with sessions.begin() as s:
        assert repair(s, report) == 7
    worker.drain()
    with sessions.begin() as s:
        assert check_stores(s, store, settings, "hashing:64").ok
    assert store.retrieve(ITEMS, [99999]) == []


def test_check_reports_a_model_mismatch(
    synced: tuple[EdgeVectorStore, SyncWorker, list[int], list[int]],
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    store = synced[0]
    with sessions.begin() as s:
        report = check_stores(s, store, settings, "hashing:32")
    assert not report.ok and "run `nearrec reindex`" in report.problems[0]


def test_reindex_swaps_in_new_model_collections_and_keeps_other_vectors(
    synced: tuple[EdgeVectorStore, SyncWorker, list[int], list[int]],
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    store, worker, items, users = synced
    old_items = store.resolve_alias(ITEMS)
    old_users = store.resolve_alias(USERS)
    store.ensure_collection(old_items, {"cf": 8})  # type: ignore[arg-type]  # e.g. collaborative vectors
    store.update_vectors(ITEMS, {items[0]: {"cf": np.arange(1, 9, dtype=np.float32)}})

    new_model = CountingEmbedder(32)
    changed: list[int] = []

    def meanwhile(phase: str, n: int) -> None:
        # A concurrent writer: an item already rebuilt changes and an old-model worker applies it to the old
        # collection (the alias still points there). Reindex must catch up with it.
        if phase == "items" and not changed:
            update_item(sessions, items[1], text="rewritten during the reindex")
            worker.drain()
            changed.append(items[1])

    report = run_reindex(sessions, store, new_model, settings, chunk=10, progress=meanwhile)
    assert changed and report.requeued >= 1
    assert store.resolve_alias(ITEMS) == report.items_collection != old_items
    assert store.resolve_alias(USERS) == report.users_collection != old_users
    assert set(report.dropped) == {old_items, old_users}
    assert old_items not in store.list_collections()
    assert store.get_metadata(ITEMS)["embedding_model"] == "hashing:32"
    assert store.vector_sizes(ITEMS) == {"text": 32, "cf": 8}
    hit = store.retrieve(ITEMS, [items[0]], with_vectors=True)[0]
    assert np.allclose(hit.vector["cf"], np.arange(1, 9) / np.linalg.norm(np.arange(1, 9)), atol=1e-5)  # type: ignore[index]
    assert store.count(ITEMS) == 20 and store.count(USERS) == 3

    with pytest.raises(ModelMismatchError):  # the old model's worker must not write into the new vectors
        SyncWorker(sessions, store, CountingEmbedder(64), settings).prepare()
    SyncWorker(sessions, store, new_model, settings).drain()  # applies what was requeued
    assert outbox_count(sessions) == 0
    with sessions.begin() as s:
        assert check_stores(s, store, settings, "hashing:32").ok
    assert new_model.texts["rewritten during the reindex"] == 1


def test_cli_check_repair_and_reindex(
    synced: tuple[EdgeVectorStore, SyncWorker, list[int], list[int]],
    database_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, _, items, _ = synced
    store.delete(ITEMS, [items[0]])
    store.close()
    monkeypatch.setenv("NEARREC_DATABASE_URL", database_url)
    monkeypatch.setenv("NEARREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("NEARREC_EMBEDDING_MODEL", "hashing:64")
    runner = CliRunner()
    result = runner.invoke(cli, ["sync", "check", "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["items"]["missing"] == {"count": 1, "ids": [items[0]]} and not doc["ok"]
    result = runner.invoke(cli, ["sync", "check", "--repair"])
    assert result.exit_code == 1 and "enqueued 1 outbox rows" in result.output
    with EdgeVectorStore(settings.data_dir / "vectors") as recorded:  # the dashboard reads it there
        last = last_check.last(recorded.get_metadata(ITEMS))
    assert last is not None and not last["ok"] and last["enqueued"] == 1 and last["items"]["missing"] == 1
    assert runner.invoke(cli, ["worker", "--once"]).exit_code == 0
    result = runner.invoke(cli, ["sync", "check"])
    assert result.exit_code == 0, result.output

    monkeypatch.setenv("NEARREC_EMBEDDING_MODEL", "hashing:48")  # a model change
    result = runner.invoke(cli, ["worker", "--once"])
    assert result.exit_code == 1 and "nearrec reindex" in result.output
    result = runner.invoke(cli, ["reindex"])
    assert result.exit_code == 0, result.output
    assert "reindexed with hashing:48: 20 items" in result.output
    result = runner.invoke(cli, ["sync", "check"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["sync", "status", "--json"])
    doc = json.loads(result.output)
    assert doc["vectors"]["items"]["model"] == "hashing:48" and doc["vectors"]["items"]["points"] == 20
    assert doc["outbox"]["pending"] == 0
    assert doc["vectors"]["items"]["search"] == {}  # 20 points: no graph, nothing calibrated
    with EdgeVectorStore(settings.data_dir / "vectors") as store:  # as the worker records a calibration
        store.set_metadata(ITEMS, {META_SEARCH: {"vectors": {"text": {"ef": 64, "recall": 0.97}}}})
    result = runner.invoke(cli, ["sync", "status"])
    assert "search text: hnsw_ef 64 (recall@10 0.97)" in result.output


def test_status_works_while_another_process_owns_the_embedded_store(
    synced: tuple[EdgeVectorStore, SyncWorker, list[int], list[int]],
    database_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import subprocess
    import sys
    import time

    synced[0].close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from nearrec.vectors.edge import EdgeVectorStore as S; "
            "s = S(sys.argv[1]); print('ready', flush=True); time.sleep(30)",
            str(settings.data_dir / "vectors"),
        ],
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "platform")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        monkeypatch.setenv("NEARREC_DATABASE_URL", database_url)
        monkeypatch.setenv("NEARREC_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("NEARREC_EMBEDDING_MODEL", "hashing:64")
        result = CliRunner().invoke(cli, ["sync", "status"])
        assert result.exit_code == 1, result.output  # the backlog is shown, but a store is unreachable
        assert "0 pending" in result.output and f"used by process {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.wait()
        time.sleep(0)


def test_check_before_any_worker_run(db: Engine, sessions: sessionmaker[Session], settings: Settings) -> None:
    with EdgeVectorStore(settings.data_dir / "vectors") as store:
        with sessions.begin() as s:
            assert check_stores(s, store, settings, "hashing:64").ok  # nothing anywhere: in agreement
        ids = add_items(sessions, catalog(3))
        with sessions.begin() as s:
            report = check_stores(s, store, settings, "hashing:64")
        assert report.items.missing == ids and not report.problems and not report.ok
