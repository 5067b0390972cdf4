"""`nearrec serve`: the HTTP API (and, with embedded vectors, the sync worker in the same process)."""

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
    help="Run the sync worker in-process (default: when vectors are embedded).",
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
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    settings = Settings()
    host = host or settings.host
    port = settings.port if port is None else port
    if not settings.api_keys and host not in LOCAL_HOSTS:
        raise ConfigError(
            f"refusing to bind {host} without API keys: set NEARREC_API_KEYS (KEY:read,KEY2:write) "
            "or bind to 127.0.0.1"
        )
    if not settings.api_keys:
        click.echo("no NEARREC_API_KEYS set: the API is open, so it only listens on localhost", err=True)
    if processes > 1:
        serve_processes(settings, host, port, processes, run_worker)
    else:
        serve_app(settings, host, port, run_worker)


def serve_app(settings: Settings, host: str, port: int, run_worker: bool | None) -> None:
    import uvicorn

    from nearrec.api.app import create_app

    app = create_app(settings, run_worker=run_worker)
    click.echo(f"nearrec API on http://{host}:{port} (docs: http://{host}:{port}/docs)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


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
