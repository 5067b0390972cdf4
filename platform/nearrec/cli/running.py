"""The running server of a data dir: ``serve`` publishes ``<data_dir>/serve.json``; CLI commands read it.

With the embedded vector store only one process may open the store (``serve``, which runs the sync worker
too). While it runs, the commands that read vectors (`recommend`, `similar`, `search`, `show`, `sync status`)
ask it over HTTP instead of failing on the store's lock. The file is removed when ``serve`` stops; one left by
a killed process is ignored (its pid is dead) and replaced at the next start.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nearrec.config import Settings

FILE = "serve.json"


@dataclass(frozen=True)
class RunningServer:
    url: str
    pid: int


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def published(settings: Settings, host: str, port: int, *, owns_vectors: bool) -> Iterator[None]:
    """Publish this server's address in the data dir while the block runs (only when it owns the store)."""
    if not owns_vectors:
        yield
        return
    path = settings.data_dir / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    connect = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": connect, "port": port, "pid": os.getpid()}))
    tmp.replace(path)
    try:
        yield
    finally:
        if _published_pid(path) == os.getpid():
            path.unlink(missing_ok=True)


def _published_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_server(settings: Settings) -> RunningServer | None:
    """The live ``serve`` process that owns this data dir's embedded vector store, if any."""
    if not settings.embedded_vectors:
        return None
    path = settings.data_dir / FILE
    try:
        doc = json.loads(path.read_text())
        host, port, pid = str(doc["host"]), int(doc["port"]), int(doc["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not _alive(pid):
        return None
    bracketed = f"[{host}]" if ":" in host else host
    return RunningServer(f"http://{bracketed}:{port}", pid)


def first_api_key(settings: Settings) -> str | None:
    """A key to talk to the local server with (the first configured one; none when the API is open)."""
    from nearrec.config import parse_api_keys

    keys = parse_api_keys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    writers = [k for k, scope in keys if scope == "write"]
    candidates = writers or [k for k, _ in keys]
    return candidates[0] if candidates else None
