"""`nearrec worker`: keep the vector store in line with Postgres."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from nearrec.config import Settings
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import transaction
from nearrec.runtime import Runtime
from nearrec.sync.worker import BatchReport, SyncWorker


@click.command()
@click.option("--once", is_flag=True, help="Drain the backlog, then exit (status 0).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Outbox rows per batch [NEARREC_WORKER_BATCH_SIZE].",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="Serve Prometheus metrics (sync throughput, batch durations, outbox backlog) on this port.",
)
def worker(once: bool, batch_size: int | None, quiet: bool, metrics_port: int | None) -> None:
    """Embed changed items and users and write them to the vector store (runs until stopped).

    Work comes from the outbox that ingestion fills; any number of workers may run at once (with the embedded
    vector store, only one process can open it)."""
    settings = Settings()
    with Runtime(settings) as rt:
        store = rt.vector_store  # first: fails fast when another process owns the embedded store
        sync = SyncWorker(rt.sessions, store, rt.embedder, settings, batch_size=batch_size)
        sync.prepare()
        if once:
            _drain(rt, sync, quiet)
            return
        stop = threading.Event()

        def _stop(signum: int, frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        on_batch = None
        if metrics_port is not None:
            on_batch = _serve_metrics(rt, metrics_port)
        click.echo(f"worker running (model {rt.embedder.model_id}); Ctrl-C to stop", err=True)
        sync.run(stop, listen_url=rt.database_url, on_batch=on_batch)


def _serve_metrics(rt: Runtime, port: int) -> Callable[[BatchReport], None]:
    from prometheus_client import start_http_server

    from nearrec.api.app import outbox_stats
    from nearrec.api.metrics import Metrics

    metrics = Metrics()
    metrics.watch_outbox(lambda: outbox_stats(rt))
    start_http_server(port, addr="0.0.0.0", registry=metrics.registry)
    click.echo(f"worker metrics on :{port}/metrics", err=True)
    return metrics.record_batch


def _drain(rt: Runtime, sync: SyncWorker, quiet: bool) -> None:
    with transaction(rt.sessions) as session:
        backlog = sync_repo.outbox_stats(session).available
    show = not quiet and sys.stderr.isatty() and backlog > 0
    if show:
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("syncing", total=backlog)

            def advance(batch: BatchReport) -> None:
                progress.advance(task, batch.rows)

            total = sync.drain(on_batch=advance)
    else:
        total = sync.drain()
    with transaction(rt.sessions) as session:
        stats = sync_repo.outbox_stats(session)
    rate = total.rows / total.seconds if total.seconds else 0.0
    click.echo(
        f"synced {total.rows} outbox rows in {total.seconds:.1f}s ({rate:.0f}/s): "
        f"{total.items.embedded} items embedded, {total.items.rewritten} rewritten, "
        f"{total.items.deleted} removed, {total.users.computed} user vectors, {total.users.deleted} removed"
    )
    if total.failed or stats.pending or stats.parked:
        click.echo(
            f"{total.failed} rows failed in this run; left: {stats.pending} pending "
            f"({stats.retrying} waiting to retry), {stats.parked} parked (see `nearrec sync status`)",
            err=True,
        )
