"""`nearrec serve`: the HTTP API (and, with embedded vectors, the sync worker in the same process).

While it runs on an embedded data dir it owns the vector store there, so it publishes its address in
``<data_dir>/serve.json`` (host, port, pid; removed when it stops): other CLI commands that need the store send
their query to this server instead (see :mod:`nearrec.cli.running`).
"""

from __future__ import annotations

import click

from nearrec.config import Settings
from nearrec.errors import ConfigError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option("--host", default=None, help="Bind address (default NEARREC_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default NEARREC_PORT, 8000).")
@click.option(
    "--sync-worker/--no-sync-worker",
    "run_worker",
    default=None,
    help="Run the sync worker in this process (default: when vectors are embedded).",
)
@click.option(
    "--workers",
    "processes",
    default=1,
    type=click.IntRange(1, 64),
    show_default=True,
    help="API server processes. More than one needs a Qdrant server (NEARREC_QDRANT_URL): the embedded "
    "vector store belongs to one process. Run sync workers apart (`nearrec worker`).",
)
def serve(host: str | None, port: int | None, run_worker: bool | None, processes: int) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs). SIGTERM or Ctrl-C stops it cleanly."""
    settings = Settings()
    host = host or settings.host
    port = settings.port if port is None else port
    if not settings.api_keys and host not in LOCAL_HOSTS:
        raise ConfigError(
            f"refusing to bind {host} without API keys: set NEARREC_API_KEYS (KEY or KEY:read, comma-separated) "
            "or bind to 127.0.0.1"
        )
    if not settings.api_keys:
        click.echo("no NEARREC_API_KEYS set: the API is open, so it only listens on localhost", err=True)
    require_schema(settings)
    if processes > 1:
        serve_processes(settings, host, port, processes, run_worker)
    else:
        serve_app(settings, host, port, run_worker)


def require_schema(settings: Settings) -> None:
    """One line instead of a traceback when the database has no schema yet."""
    from nearrec.postgres import migrate
    from nearrec.postgres.engine import make_engine, resolve_database_url

    url = resolve_database_url(settings)
    engine = make_engine(url, pool_size=1)
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    if current is None:
        raise ConfigError("the database has no schema yet: run `nearrec db upgrade` first")


def serve_app(settings: Settings, host: str, port: int, run_worker: bool | None) -> None:
    import uvicorn

    from nearrec.api.app import create_app
    from nearrec.api.protocol import guarded_protocol
    from nearrec.cli.running import published

    app = create_app(settings, run_worker=run_worker, server_process=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=guarded_protocol(settings.header_timeout),
        timeout_keep_alive=5,
        timeout_graceful_shutdown=20,
    )
    server = uvicorn.Server(config)
    click.echo(f"nearrec API on http://{host}:{port} (docs: http://{host}:{port}/docs)", err=True)
    with published(settings, host, port, owns_vectors=settings.embedded_vectors):
        server.run()


def serve_processes(
    settings: Settings, host: str, port: int, processes: int, run_worker: bool | None
) -> None:
    """``processes`` uvicorn worker processes on one socket, each building its app from the environment
    (:func:`nearrec.api.app.app_factory`): every process is stateless, so they scale across cores."""
    import uvicorn

    if settings.embedded_vectors:
        raise ConfigError(
            f"--workers {processes} needs a Qdrant server (set NEARREC_QDRANT_URL): the embedded vector store "
            "belongs to one process; run one process, or move to servers (docs/sizing.md)"
        )
    if run_worker:
        raise ConfigError(
            "--sync-worker runs in one process only; with --workers N run `nearrec worker` apart"
        )
    click.echo(f"nearrec API on http://{host}:{port}, {processes} processes", err=True)
    uvicorn.run(
        "nearrec.api.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        log_level="warning",
        access_log=False,
    )
