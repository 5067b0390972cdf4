"""The demo catalog loaded, synced, trained and checked (hashing embedder), and the app on a real uvicorn
server in a thread: what the dashboard tests and scripts/screenshots.py look at."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from nearrec.api.app import create_app
from nearrec.config import Settings
from nearrec.runtime import Runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``create_app(settings)`` served on 127.0.0.1 from a thread, for the duration of a ``with`` block."""

    def __init__(self, settings: Settings, run_worker: bool | None = False) -> None:
        self.port = free_port()
        self.app = create_app(settings, run_worker=run_worker)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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


def seed_demo(settings: Settings, *, train: bool = True, check: bool = True) -> None:
    """Load the bundled demo catalog, sync every vector, train the cf model and record a sync check, then
    close everything (the server process owns the embedded vector store afterwards)."""
    from nearrec.cli.quickstart_cmd import load_demo, sync_with_progress
    from nearrec.embedding import configured_model_id
    from nearrec.jobs.train import train as run_train
    from nearrec.postgres.engine import transaction
    from nearrec.sync import last_check
    from nearrec.sync.check import check_stores

    with Runtime(settings) as runtime:
        load_demo(runtime)
        sync_with_progress(runtime, quiet=True)
        if train:
            run_train(runtime.sessions, runtime.vector_store, settings)
        if check:
            with transaction(runtime.sessions) as session:
                report = check_stores(session, runtime.vector_store, settings, configured_model_id(settings))
            last_check.record(runtime.vector_store, settings.items_collection, report)
