"""`nearrec reindex`: rebuild the vectors with the configured model and swap them in (zero downtime)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
from sqlalchemy.orm import Session, sessionmaker

from nearrec.config import Settings
from nearrec.embedding.base import Embedder
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import transaction
from nearrec.runtime import Runtime
from nearrec.sync import reindex as steps
from nearrec.sync.reindex import ReindexReport
from nearrec.vectors.base import VectorStore

Progress = Callable[[str, int], None]
"""Called with (phase, entities done in this step): phase is "items" or "users"."""


def run_reindex(
    sessions: sessionmaker[Session],
    store: VectorStore,
    embedder: Embedder,
    settings: Settings,
    *,
    chunk: int = steps.CHUNK,
    keep_old: bool = False,
    progress: Progress | None = None,
) -> ReindexReport:
    """Rebuild the items and users collections with ``embedder`` and swap them in (the steps of
    :mod:`nearrec.sync.reindex`), one transaction per step and per chunk; the workers are held from the final
    comparison to the swap."""
    with transaction(sessions) as session:
        rebuild = steps.start(session, store, embedder, settings)
    try:
        with transaction(sessions) as session:
            item_ids = steps.item_ids(session)
        for ids in steps.chunks(item_ids, chunk):
            with transaction(sessions) as session:
                steps.rebuild_items(session, store, embedder, rebuild, ids)
            if progress:
                progress("items", len(ids))
        with transaction(sessions) as session:
            user_ids = steps.user_ids(session)
        for ids in steps.chunks(user_ids, chunk):
            with transaction(sessions) as session:
                steps.rebuild_users(session, store, embedder, rebuild, ids)
            if progress:
                progress("users", len(ids))
        with transaction(sessions) as held:  # no worker batch runs from here until after the swap
            sync_repo.hold_workers(held)
            with transaction(sessions) as session:
                steps.finish(session, store, embedder, settings, rebuild)
            steps.swap(store, rebuild, keep_old=keep_old)
    except BaseException:
        if store.resolve_alias(settings.items_collection) != rebuild.new_items:
            steps.abandon(store, rebuild)
        raise
    return rebuild.report


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

            with Progress(transient=True) as bar:
                tasks = {
                    "items": bar.add_task("items", total=counts.items),
                    "users": bar.add_task("users", total=counts.users),
                }
                report = run_reindex(
                    rt.sessions,
                    store,
                    embedder,
                    settings,
                    keep_old=keep_old,
                    progress=lambda phase, n: bar.advance(tasks[phase], n),
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
