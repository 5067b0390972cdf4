"""The demo catalog loaded, synced, trained and checked (hashing embedder), and the app on a real uvicorn
server in a thread: what the dashboard tests and scripts/screenshots.py look at."""

from __future__ import annotations

from http_support import Server as RecordingServer

from nearrec.config import Settings
from nearrec.runtime import Runtime


class Server(RecordingServer):
    """The dashboard's app on a real server; no in-process worker unless asked (the data is synced first)."""

    def __init__(self, settings: Settings, run_worker: bool | None = False) -> None:
        super().__init__(settings, run_worker)


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
