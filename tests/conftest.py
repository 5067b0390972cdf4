"""Shared fixtures: a real, freshly migrated Postgres for the whole session.

Where it comes from, in order: ``NEARREC_TEST_DATABASE_URL``; else the server on 127.0.0.1:5432 if one
answers (a new database ``nearrec_test_<pid>`` is created there and dropped at the end); else an embedded
Postgres under a temporary directory. Tests that write call the ``db`` fixture, which truncates every table
afterwards, so each test starts from an empty, migrated schema.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.postgres import migrate
from nearrec.postgres.engine import make_engine, normalise_url, session_factory
from nearrec.postgres.models import Base
from nearrec.postgres.scratch import scratch_database

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


LOCAL_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _local_server_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    explicit = os.environ.get("NEARREC_TEST_DATABASE_URL")
    if explicit:
        url = normalise_url(explicit)
        migrate.upgrade(url)
        yield url
        return
    if _local_server_answers():
        with scratch_database(LOCAL_SERVER, f"nearrec_test_{os.getpid()}") as url:
            yield url
        return
    from nearrec.postgres.embedded_server import start_embedded_postgres

    with tempfile.TemporaryDirectory(prefix="nearrec-test-pg-") as tmp:
        url = start_embedded_postgres(Path(tmp))
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


def truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)  # table names from our own models
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """A migrated database with empty tables; emptied again after the test."""
    truncate_all(engine)
    yield engine
    truncate_all(engine)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings pointing at the test database, with a private data dir (embedded vectors live there)."""
    from pydantic import SecretStr

    return Settings(database_url=SecretStr(database_url), data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def pg_tmp() -> Iterator[Path]:
    """A temporary directory for an embedded Postgres data dir, outside pytest's private tmp tree.

    Run as root, the wheel starts Postgres as another user and opens up the parent directories; pytest
    resets its own base directory to mode 700 whenever another session starts, which would lock that user out.
    """
    import shutil

    path = Path(tempfile.mkdtemp(prefix="nearrec-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared_dir() -> Path:
    if not (SHARED / "datasets" / "movielens-100k" / "items.csv").is_file():
        pytest.skip("../shared/datasets/movielens-100k is absent")
    return SHARED


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "route(method, path): the HTTP route a test exercises (see tests/integration/test_http.py)"
    )
