"""A real uvicorn server in a thread for the HTTP tests: it records every request it answers, so a test's
``@pytest.mark.route`` marks can be checked; the keys, the seed catalog and the ``server`` fixture
(imported by the modules that use it)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from factories import load_interactions, load_items
from nearrec.api.app import create_app
from nearrec.client import Client
from nearrec.config import Settings

READ_KEY = "read-key-0123456789"
WRITE_KEY = "write-key-0123456789"
TOPICS = {
    "tea": "green tea leaves brewing teapot oolong",
    "bike": "bicycle wheel chain saddle gears",
    "tent": "tent camping sleeping bag trail",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``create_app(settings)`` served on 127.0.0.1 from a thread for a ``with`` block, recording every request."""

    def __init__(self, settings: Settings, run_worker: bool | None = None) -> None:
        self.port = free_port()
        self.app = create_app(settings, run_worker=run_worker)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served
        self.server = uvicorn.Server(
            uvicorn.Config(self._recording, port=self.port, log_level="warning", interface="asgi3")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _recording(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)

    def requested(self, method: str, template: str, since: int = 0) -> bool:
        """Whether a request since the ``since``-th matched the route ``template`` (``{name}``: one segment)."""
        pattern = re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        return any(m == method and pattern.match(p) for m, p in self.requests[since:])

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def seed(sessions: sessionmaker[Session]) -> None:
    """24 items in three topics, and user u1 who liked tea-0 (just now), through the ingest service."""
    load_items(
        sessions,
        [
            {"external_id": f"{topic}-{i}", "title": f"{topic} {i}", "text": f"{words} model{i}",
             "attributes": {"topic": topic, "rank": i}}
            for topic, words in TOPICS.items()
            for i in range(8)
        ],
    )  # fmt: skip
    load_interactions(sessions, [{"user_id": "u1", "item_id": "tea-0", "type": "like"}])


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    db: Engine,
    sessions: sessionmaker[Session],
    database_url: str,
    tmp_path: Path,
) -> Iterator[Server]:
    seed(sessions)
    settings = Settings(
        database_url=SecretStr(database_url),
        data_dir=tmp_path / "data",
        embedding_model="hashing",
        api_keys=SecretStr(f"{READ_KEY}:read,{WRITE_KEY}:write"),
        worker_poll_seconds=0.1,
        _env_file=None,  # type: ignore[call-arg]
    )
    with Server(settings) as srv:
        wait_for(lambda: len(Client(srv.url, READ_KEY).search("tea", k=30)) == 24)
        before = len(srv.requests)
        yield srv
    named = sorted(tuple(m.args) for m in request.node.iter_markers("route"))
    missed = [r for r in named if not srv.requested(*r, since=before)]
    assert not missed, f"{request.node.name} is marked with routes it never requested: {missed}"


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


DOCS_ROUTES = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD, which Starlette adds to GET, left out)."""

    def walk(routes: Any) -> Iterator[tuple[str, str]]:
        for route in routes:
            included = getattr(route, "original_router", None)  # FastAPI's record of an included router
            if included is not None:
                yield from walk(included.routes)
                continue
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    yield method, route.path

    return set(walk(app.routes))
