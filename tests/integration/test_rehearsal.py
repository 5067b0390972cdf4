"""A rehearsal of the docker compose topology without Docker: every role is its own process, all against one
real Postgres. `migrate` runs once; the API serves (and, with embedded vectors, runs the worker in-process); a
catalog admin ingests a new catalog with the CLI while the API is up; the new items are recommended over HTTP
within seconds. With NEARREC_QDRANT_URL set (a Qdrant server), separate `nearrec worker` processes run too,
as in compose. Also `make rehearse`.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from nearrec.postgres.scratch import scratch_database

KEY = "rehearsal-write-key"


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    """An empty database on the test server: `migrate` must build it."""
    name = f"{make_url(database_url).database}_rehearsal"
    with scratch_database(database_url, name, migrate=False) as url:
        yield url


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nearrec(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "nearrec", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"nearrec {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_compose_roles_as_processes(fresh_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
    env |= {
        "NEARREC_DATABASE_URL": fresh_url,
        "NEARREC_DATA_DIR": str(tmp_path / "data"),
        "NEARREC_EMBEDDING_MODEL": "hashing:128",
        "NEARREC_API_KEYS": f"{KEY}:write",
        "NEARREC_WORKER_POLL_SECONDS": "0.2",
        "NEARREC_LOG_FORMAT": "json",
        "NEARREC_LOG_LEVEL": "INFO",
    }
    if os.environ.get("NEARREC_QDRANT_URL"):
        env["NEARREC_QDRANT_URL"] = os.environ["NEARREC_QDRANT_URL"]
        env["NEARREC_COLLECTION_PREFIX"] = f"rehearsal_{os.getpid()}_"

    _nearrec(env, "db", "upgrade")  # the `migrate` service

    port = _port()
    api_log = (tmp_path / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "nearrec", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=api_log,
        stderr=subprocess.STDOUT,
    )
    workers: list[subprocess.Popen[bytes]] = []
    if "NEARREC_QDRANT_URL" in env:  # the `worker` service, scaled to 2
        workers = [subprocess.Popen([sys.executable, "-m", "nearrec", "worker"], env=env) for _ in range(2)]
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert api.poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline, "the API never became ready"
            time.sleep(0.2)

        # A catalog admin loads a catalog while the API is up.
        topics = {"kayak": "kayak paddle river spray deck", "violin": "violin bow rosin strings concerto"}
        items = _write_csv(
            tmp_path / "items.csv",
            ["id", "title", "description", "topic"],
            [
                [f"{t}-{i}", f"{t.title()} {i}", f"{words} model {i}", t]
                for t, words in topics.items()
                for i in range(6)
            ],
        )
        events = _write_csv(
            tmp_path / "events.csv",
            ["user_id", "item_id", "type", "event_id"],
            [["paddler", "kayak-0", "purchase", "e1"], ["paddler", "kayak-1", "like", "e2"]],
        )
        _nearrec(env, "ingest", "items", str(items), "--quiet")
        _nearrec(env, "ingest", "interactions", str(events), "--quiet")

        # ...and within seconds the API recommends from it, never what was seen.
        deadline = time.monotonic() + 20
        got: list[str] = []
        while time.monotonic() < deadline:
            r = httpx.get(f"{base}/v1/users/paddler/recommendations", params={"k": 3}, headers=headers)
            if r.status_code == 200:
                got = [x["item_id"] for x in r.json()["items"]]
                if len(got) == 3 and all(i.startswith("kayak-") for i in got):
                    break
            time.sleep(0.3)
        assert len(got) == 3 and all(i.startswith("kayak-") for i in got), got
        assert not {"kayak-0", "kayak-1"} & set(got)

        if workers:  # with a Qdrant server the store is shared, so the CLI can inspect it meanwhile
            status = json.loads(_nearrec(env, "sync", "status", "--json").stdout)
            assert status["outbox"]["pending"] == 0 and status["outbox"]["parked"] == 0
    finally:
        for proc in [api, *workers]:
            proc.terminate()
        for proc in [api, *workers]:
            proc.wait(timeout=30)
        api_log.close()

    # Structured logs: one JSON object per line, each HTTP request with its id.
    lines = [
        json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines() if line.startswith("{")
    ]
    access = [entry for entry in lines if entry["logger"] == "nearrec.access"]
    assert access and all(entry.get("request_id") and entry.get("status") for entry in access)
