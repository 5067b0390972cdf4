"""`nearrec reindex`: rebuild the vectors with the configured model and swap them in (zero downtime)."""

from __future__ import annotations

import sys

import click

from nearrec.config import Settings
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import transaction
from nearrec.runtime import Runtime
from nearrec.sync.reindex import reindex as run_reindex


@click.command()
@click.option("--keep-old", is_flag=True, help="Keep the previous collections (not aliased any more).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reindex(keep_old: bool, quiet: bool) -> None:
    """Re-embed every item and user into new collections, then point the aliases at them.

    Queries keep using the old collections until the swap. Needed after changing NEARREC_EMBEDDING_MODEL."""
    settings = Settings()
    with Runtime(settings) as rt:
        store = rt.vector_store
        embedder = rt.embedder
        with transaction(rt.sessions) as session:
            counts = sync_repo.table_counts(session)
        if not quiet and sys.stderr.isatty():
            from rich.progress import Progress

            with Progress(transient=True) as progress:
                tasks = {
                    "items": progress.add_task("items", total=counts.items),
                    "users": progress.add_task("users", total=counts.users),
                }
                report = run_reindex(
                    rt.sessions,
                    store,
                    embedder,
                    settings,
                    keep_old=keep_old,
                    progress=lambda phase, n: progress.advance(tasks[phase], n),
                )
        else:
            report = run_reindex(rt.sessions, store, embedder, settings, keep_old=keep_old)
    click.echo(
        f"reindexed with {embedder.model_id}: {report.items.embedded} items -> {report.items_collection}, "
        f"{report.users.computed} users -> {report.users_collection}"
    )
    if report.dropped:
        click.echo(f"dropped {', '.join(report.dropped)}")
    if report.requeued:
        click.echo(f"{report.requeued} changes made during the rebuild were enqueued for the workers")
