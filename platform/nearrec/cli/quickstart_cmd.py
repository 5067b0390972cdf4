"""`nearrec quickstart`: the whole product in one command on the embedded default.

Migrates, loads the bundled demo catalog (original content shipped with nearrec), syncs the vectors with a
progress bar, prints recommendations with reasons for a few demo users, then serves the HTTP API. A second
run finds everything loaded and synced (unchanged rows enqueue nothing), so it is fast.
"""

from __future__ import annotations

import click

from nearrec.config import Settings
from nearrec.runtime import Runtime

DEMO_USERS = ("user-01", "user-05", "user-38")


def load_demo(runtime: Runtime) -> list[str]:
    """Load the demo files through the normal ingestion path; returns one summary line per file."""
    from nearrec.demo import demo_path
    from nearrec.ingest.loader import LoadPlan, load
    from nearrec.ingest.records import InteractionOptions, ItemOptions, UserOptions

    max_chars = runtime.settings.max_text_chars
    batch = runtime.settings.ingest_batch_size
    plans = [
        LoadPlan(
            "items",
            [demo_path("items.csv")],
            ItemOptions(list_columns=frozenset({"tags"}), max_text_chars=max_chars),
            batch_size=batch,
        ),
        LoadPlan("users", [demo_path("users.csv")], UserOptions(max_text_chars=max_chars), batch_size=batch),
        LoadPlan("interactions", [demo_path("interactions.csv")], InteractionOptions(), batch_size=batch),
    ]
    lines = []
    for plan in plans:
        s = load(runtime.engine, plan)
        lines.append(
            f"{plan.kind:<13} read {s.read:>5}  inserted {s.inserted:>5}  updated {s.updated:>4}  "
            f"unchanged {s.unchanged:>5}  rejected {s.rejected}"
        )
    return lines


def sync_with_progress(runtime: Runtime, quiet: bool = False) -> int:
    """Run the sync worker until the outbox is empty, with a progress bar; returns rows processed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nearrec.postgres import sync_repo
    from nearrec.sync.worker import SyncWorker

    worker = SyncWorker(runtime.sessions, runtime.vector_store, runtime.embedder, runtime.settings)
    worker.prepare()
    with runtime.sessions() as session:
        total = sync_repo.outbox_stats(session).pending
    done = 0
    columns = (TextColumn("syncing vectors"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=quiet or total == 0, transient=False) as progress:
        task = progress.add_task("sync", total=total)
        while True:
            report = worker.run_batch()
            done += report.rows
            progress.update(task, completed=min(done, total))
            if not report.rows and not report.deferred:
                break
    return done


@click.command()
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the HTTP API afterwards.")
@click.option("--host", default=None, help="Bind address for the API (default NEARREC_HOST).")
@click.option("--port", default=None, type=int, help="Port for the API (default NEARREC_PORT).")
def quickstart(serve: bool, host: str | None, port: int | None) -> None:
    """Demo catalog, vectors and recommendations in one command (embedded default, nothing to install)."""
    from nearrec.cli.query_cmd import print_table
    from nearrec.postgres import migrate
    from nearrec.query.service import QueryService

    settings = Settings()
    click.echo(
        f"nearrec quickstart: data in {settings.data_dir}"
        if settings.embedded_database
        else "nearrec quickstart: using NEARREC_DATABASE_URL"
    )
    with Runtime(settings) as runtime:
        migrate.upgrade(runtime.database_url)
        click.echo("database migrated")
        for line in load_demo(runtime):
            click.echo(line)
        click.echo("loading the embedding model...")
        synced = sync_with_progress(runtime)
        click.echo(f"vectors in sync ({synced} outbox rows processed)")
        service = QueryService(
            runtime.read_sessions, runtime.vector_store, settings, lambda: runtime.embedder
        )
        for user in DEMO_USERS:
            recs = service.recommend(user, k=5, explain=True, fields=["category"])
            print_table(recs, ["category"], title=f"recommendations for {user}")
        hits = service.search("a quiet book for a rainy weekend", k=3)
        print_table(hits, [], title='search: "a quiet book for a rainy weekend"')
    if not serve:
        return
    from nearrec.cli.serve_cmd import serve_app

    host = host or settings.host
    port = settings.port if port is None else port
    click.echo(f"try: curl 'http://{host}:{port}/v1/users/{DEMO_USERS[0]}/recommendations?k=5&explain=true'")
    click.echo(f"dashboard: http://{host}:{port}/dashboard/users/{DEMO_USERS[0]}")
    serve_app(settings, host, port, run_worker=None)
