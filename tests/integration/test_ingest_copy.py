"""The COPY path of interaction files, on a real Postgres: binary tuples, content keys equal to the SQL ones,
re-loads (whole and partial), repeats that create nothing, and loads of overlapping files at once."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.ingest import copy_write, direct
from nearrec.ingest.columnar import InteractionBatches
from nearrec.ingest.id_cache import IdCache
from nearrec.ingest.loader import LoadPlan, load
from nearrec.ingest.records import InteractionOptions
from nearrec.ingest.summary import Summary
from nearrec.postgres import copy_binary, staging, users
from nearrec.postgres.engine import transaction
from nearrec.postgres.interactions import _CREATE_STAGE, _TRUNCATE_STAGE, COPY_STAGE


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def catalog(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO items (external_id, text, content_hash)"
                " SELECT 'i' || g, 'x', 'h' FROM generate_series(0, :n - 1) AS g"
            ),
            {"n": n},
        )


def events_file(path: Path, rows: range, *, event_ids: bool = True, users: int = 7) -> Path:
    """Row k: user k % users (from row 300 on, one of two more users), item k % 11, its own time."""
    lines = ["user_id,item_id,type,value,timestamp,event_id"]
    for k in rows:
        user = k % users if k < 300 else users + k % 2
        event = f"e{k}" if event_ids else ""
        value = str(k % 5 + 1) if k % 3 == 0 else ""
        lines.append(f"u{user},i{k % 11},{'rating' if value else 'view'},{value},{1_700_000_000 + k},{event}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_file(engine: Engine, path: Path, batch_rows: int = 50, **options: Any) -> Summary:
    plan = LoadPlan("interactions", [path], InteractionOptions(**options), fast_batch_size=batch_rows)
    return load(engine, plan)


def test_binary_tuples_round_trip(db: Engine, sessions: sessionmaker[Session]) -> None:
    values = pa.array([None, -0.0, 1e-300, 4.5], pa.float64())
    texts = pa.array(["view", "été ☃", "", None], pa.string())
    keys = pa.array([None, uuid.UUID(int=1).bytes, None, uuid.UUID(int=2**128 - 1).bytes], pa.binary(16))
    ids = np.array([1, 2**62, 3, 4], dtype=np.int64)
    seconds = np.array([0.0, 1_700_000_000.5, 946_684_800.0, 1.2345675], dtype=np.float64)
    tuples = copy_binary.rows(
        copy_binary.head(5, [np.zeros(4, dtype=np.int64), copy_binary.timestamptz(seconds)]),
        copy_binary.float8(values),
        copy_binary.text(texts),
        copy_binary.uuid(keys),
    )
    data, starts = copy_binary.payload(tuples.filter(pa.array([True, True, False, True])))
    copy_binary.patch_int8(data, starts, copy_binary.head_offset(0), ids[[0, 1, 3]])
    copy = "COPY t FROM STDIN (FORMAT binary)"
    with transaction(sessions) as session:
        session.execute(text("CREATE TEMPORARY TABLE t (i bigint, at timestamptz, v float8, s text, k uuid)"))
        with staging.driver_connection(session).cursor() as cur, cur.copy(copy) as cp:
            cp.write(data)
        rows = session.execute(text("SELECT i, at, v, s, k FROM t")).all()
        expected_at = [
            session.execute(text("SELECT to_timestamp(:s)"), {"s": float(x)}).scalar_one()
            for x in seconds[[0, 1, 3]]
        ]
        session.execute(text("DROP TABLE t"))
    assert [tuple(r) for r in rows] == [
        (1, expected_at[0], None, "view", None),
        (2**62, expected_at[1], -0.0, "été ☃", uuid.UUID(int=1)),
        (4, expected_at[2], 4.5, None, uuid.UUID(int=2**128 - 1)),
    ]
    assert str(rows[1][2]) == "-0.0"


def test_content_keys_are_the_keys_postgres_computes(db: Engine, sessions: sessionmaker[Session]) -> None:
    rng = np.random.default_rng(5)
    n = 2000
    has_ts = rng.random(n) < 0.7
    ts = np.where(rng.random(n) < 0.5, 1.7e9 + rng.random(n), 946_684_800.0 + rng.random(n) * 1e9)
    values = rng.choice([4.0, -0.0, 0.1, 1e-300, 3.25, 123456789.125], n)
    table = pa.table({
        "line": pa.array(np.arange(n)),
        "user_id": pa.array([f"u{k % 50}é" for k in range(n)]),
        "item_id": pa.array([f"i{k % 9}" for k in range(n)]),
        "type": pa.array(["view", "like"] * (n // 2)),
        "value": pa.array(values, mask=rng.random(n) < 0.3),
        "ts": pa.array(ts, mask=~has_ts),
        "event_id": pa.array([f"e{k}" if k % 4 == 0 else None for k in range(n)], pa.string()),
        "occurrence": pa.array([None if has_ts[k] or k % 4 == 0 else k % 3 for k in range(n)], pa.int32()),
    })  # fmt: skip
    keys = direct.content_keys(table)
    staged = [tuple(r[c] for c in direct.STAGE_COLUMNS) for r in table.to_pylist()]
    with transaction(sessions) as session:
        staging.prepare(session, _CREATE_STAGE, _TRUNCATE_STAGE)
        staging.copy_rows(session, COPY_STAGE, staged)
        keys_sql = "SELECT event_key FROM nearrec_stage_interactions ORDER BY line"
        stored = [r[0] for r in session.execute(text(keys_sql))]
    computed = [None if k is None else uuid.UUID(bytes=k) for k in keys.to_pylist()]
    assert computed == stored
    assert sum(k is None for k in computed) == n // 4  # rows with an event id have no content key


def test_a_batch_keeps_the_first_row_of_each_event_in_write_order(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "user_id,item_id,type,timestamp,event_id\n"
        "u2,i1,view,1700000002,e1\n"
        "u1,i1,like,1700000001,e1\n"  # the same event id: a repeat
        "u1,i2,view,1700000000,\n"
        "u1,i2,view,1700000000,\n",  # the same content and time: a repeat
        encoding="utf-8",
    )
    (batch,) = InteractionBatches(path, ",", InteractionOptions(), on_error="skip", batch_rows=10)
    assert batch.direct is not None
    rows = batch.direct
    assert rows.repeats == 2
    assert rows.table.column("user_id").to_pylist() == ["u1", "u2"]  # by user: u1's row first
    assert rows.table.column("event_id").to_pylist() == [None, "e1"]
    assert rows.table.column("type").to_pylist() == ["view", "view"]


@pytest.mark.parametrize("event_ids", [True, False])
def test_reloads_through_the_copy_path_insert_only_what_is_new(
    db: Engine, tmp_path: Path, event_ids: bool
) -> None:
    catalog(db, 11)
    first = load_file(db, events_file(tmp_path / "a.csv", range(0, 300), event_ids=event_ids))
    assert (first.inserted, first.unchanged, first.users_created) == (300, 0, 7)
    again = load_file(db, tmp_path / "a.csv")
    assert (again.inserted, again.unchanged, again.users_created, again.enqueued) == (0, 300, 0, 0)
    # half of it stored, then new rows for other users: only those are written (and their users created)
    overlap = load_file(db, events_file(tmp_path / "b.csv", range(150, 600), event_ids=event_ids))
    assert (overlap.inserted, overlap.unchanged, overlap.rejected) == (300, 150, 0)
    assert overlap.users_created == 2
    assert query(db, "SELECT count(*), count(DISTINCT (user_id, occurred_at)) FROM interactions") == [
        (600, 600)
    ]
    assert query(db, "SELECT count(*) FROM users") == [(9,)]


def test_a_repeated_event_with_a_new_user_creates_nothing(db: Engine, tmp_path: Path) -> None:
    catalog(db, 2)
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,event_id\nu1,i1,e1\n", encoding="utf-8")
    assert load_file(db, path).inserted == 1
    path.write_text("user_id,item_id,event_id\nu2,i1,e1\nu3,i0,e2\nu4,nope,e3\n", encoding="utf-8")
    summary = load_file(db, path)  # the first COPY meets e1 and is undone; the batch is redone
    assert (summary.inserted, summary.unchanged, summary.rejected, summary.users_created) == (1, 1, 1, 1)
    assert [r.line for r in summary.rejections] == [4]
    assert query(db, "SELECT external_id FROM users ORDER BY external_id") == [("u1",), ("u3",)]


def test_missing_items_are_created_as_placeholders(db: Engine, tmp_path: Path) -> None:
    catalog(db, 1)
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id\nu1,i0\nu1,new\nu2,new\n", encoding="utf-8")
    summary = load_file(db, path, create_missing_items=True)
    assert (summary.inserted, summary.items_created, summary.users_created) == (3, 1, 2)
    assert query(db, "SELECT external_id, active FROM items ORDER BY id") == [("i0", True), ("new", False)]


def test_a_copy_that_meets_an_event_stored_meanwhile_is_redone(
    db: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """Another load holds e1 uncommitted while ours asks (it does not see it) and COPYs (it waits): when the
    other commits, the COPY fails and the batch goes through the ON CONFLICT statement."""
    catalog(db, 2)
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,event_id\nu1,i1,e1\nu1,i0,e2\n", encoding="utf-8")
    (batch,) = InteractionBatches(path, ",", InteractionOptions(), on_error="skip", batch_rows=10)
    state = copy_write.CopyState(probe=True)
    with sessions() as hold:
        hold.execute(text("INSERT INTO users (external_id) VALUES ('u1')"))
        hold.execute(
            text(
                "INSERT INTO interactions (user_id, item_id, occurred_at, event_id)"
                " SELECT u.id, i.id, now(), 'e1' FROM users u, items i WHERE u.external_id = 'u1' AND i.external_id = 'i1'"
            )
        )
        out: list[Summary] = []

        def ours() -> None:
            with transaction(sessions) as session:
                out.append(copy_write.write(session, batch, InteractionOptions(), state))

        worker = threading.Thread(target=ours)
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "our COPY should wait for the uncommitted event"
        hold.commit()
        worker.join(30)
    (summary,) = out
    assert (summary.inserted, summary.unchanged, state.fallbacks) == (1, 1, 1)
    assert query(db, "SELECT event_id FROM interactions ORDER BY event_id") == [("e1",), ("e2",)]


def test_overlapping_files_loaded_at_once_store_each_event_once(db: Engine, tmp_path: Path) -> None:
    catalog(db, 11)
    files = [events_file(tmp_path / f"{k}.csv", range(k * 400, k * 400 + 1200), users=20) for k in range(3)]
    summaries: list[Summary] = []
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            summaries.append(load_file(db, path, batch_rows=100))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sum(s.inserted for s in summaries) == 2000
    assert sum(s.inserted + s.unchanged for s in summaries) == 3600
    assert query(db, "SELECT count(*), count(DISTINCT event_id) FROM interactions") == [(2000, 2000)]
    assert query(db, "SELECT count(*) FROM users") == [(22,)]


def test_ids_learnt_by_a_load_are_forgotten_when_a_user_is_deleted(
    db: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """A load keeps the ids of the users and items it met across its batches; a user deleted between two
    batches (and so a stale id) must not be used: the next batch creates the user again."""
    catalog(db, 2)
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,event_id\nu1,i1,e1\nu2,i0,e2\n", encoding="utf-8")
    (first,) = InteractionBatches(path, ",", InteractionOptions(), on_error="skip", batch_rows=10)
    path.write_text("user_id,item_id,event_id\nu1,i0,e3\nu2,i1,e4\n", encoding="utf-8")
    (second,) = InteractionBatches(path, ",", InteractionOptions(), on_error="skip", batch_rows=10)
    state = copy_write.CopyState()

    def write(batch: Any) -> Summary:
        with transaction(sessions) as session:
            summary = copy_write.write(session, batch, InteractionOptions(), state)
        state.ids.committed()
        return summary

    assert write(first).users_created == 2
    asked = state.ids.looked_up
    with transaction(sessions) as session:
        assert users.delete(session, ["u1"]) == ["u1"]
    summary = write(second)
    assert (summary.inserted, summary.users_created) == (2, 1)  # u1 again, with a new id
    assert state.ids.looked_up == asked + 4  # after the delete, every name was asked again
    assert query(
        db,
        "SELECT count(*) FROM interactions AS x WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = x.user_id)",
    ) == [(0,)]
    assert query(db, "SELECT u.external_id, count(*) FROM interactions x JOIN users u ON u.id = x.user_id"
                     " GROUP BY 1 ORDER BY 1") == [("u1", 1), ("u2", 2)]  # fmt: skip
    path.write_text("user_id,item_id,event_id\nu1,i1,e5\nu3,i0,e6\n", encoding="utf-8")
    (third,) = InteractionBatches(path, ",", InteractionOptions(), on_error="skip", batch_rows=10)
    before = state.ids.looked_up
    assert write(third).inserted == 2
    assert state.ids.looked_up == before + 1  # no delete since: only u3, not met before


def test_the_id_cache_holds_at_most_its_bound_and_only_committed_ids(sessions: sessionmaker[Session]) -> None:
    cache = IdCache(max_names=2)
    with transaction(sessions) as session:
        assert cache.ids(session, "users", ["a", "b", "c"]).tolist() == [-1, -1, -1]
        cache.learn("users", ["a", "b", "c"], np.array([5, 6, 7]))
        cache.rolled_back()  # a batch undone: nothing it learnt is kept
        assert cache.ids(session, "users", ["a"]).tolist() == [-1]
        cache.ids(session, "users", ["a", "b", "c"])
        cache.learn("users", ["a", "b", "c"], np.array([5, -1, 7]))  # b: unknown, never kept
        cache.committed()
        asked = cache.looked_up
        assert cache.ids(session, "users", ["c", "b", "a"]).tolist() == [7, -1, 5]
        assert cache.looked_up == asked + 1  # only b
        cache.ids(session, "users", ["d", "e"])
        cache.learn("users", ["d", "e"], np.array([8, 9]))
        cache.committed()
        asked = cache.looked_up
        assert cache.ids(session, "users", ["a", "d", "e"]).tolist() == [5, -1, -1]
        assert cache.looked_up == asked + 2  # the bound: d and e were not kept
