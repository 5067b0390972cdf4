"""The `nearrec` command. Each group lives in its own module and stays thin over the services; modules import
their heavy dependencies (torch, the model, FastAPI) inside the commands, so `nearrec --help` stays fast."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click
from pydantic import ValidationError as PydanticValidationError

from nearrec import __version__
from nearrec.cli import (
    config_cmd,
    db_cmd,
    delete_cmd,
    evaluate_cmd,
    ingest_cmd,
    query_cmd,
    quickstart_cmd,
    reindex_cmd,
    serve_cmd,
    show_cmd,
    sync_cmd,
    train_cmd,
    worker_cmd,
)
from nearrec.errors import ConfigError, NearrecError

COMMANDS: list[click.Command] = [
    quickstart_cmd.quickstart,
    db_cmd.db,
    config_cmd.config,
    ingest_cmd.ingest,
    delete_cmd.delete,
    worker_cmd.worker,
    sync_cmd.sync,
    reindex_cmd.reindex,
    train_cmd.train,
    query_cmd.recommend,
    query_cmd.similar,
    query_cmd.search,
    show_cmd.show,
    serve_cmd.serve,
    evaluate_cmd.evaluate,
]


class NearrecGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PydanticValidationError as exc:  # a bad NEARREC_* setting: one line, exit 2
            click.secho(f"error: {settings_error(exc)}", fg="red", err=True)
            sys.exit(2)
        except ConfigError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except NearrecError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c.name for c in COMMANDS if c.name]  # in the order above, not alphabetical


@click.group(cls=NearrecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nearrec")
def cli() -> None:
    """nearrec: recommendations from text embeddings, Postgres as the source of truth, Qdrant for search.

    With no NEARREC_DATABASE_URL / NEARREC_QDRANT_URL set, everything runs embedded under ./.nearrec.
    """
    from nearrec.config import Settings
    from nearrec.logs import configure_logging

    configure_logging(Settings())


for _cmd in COMMANDS:
    cli.add_command(_cmd)


def settings_error(exc: PydanticValidationError) -> str:
    """``NEARREC_X: message`` for each bad setting, on one line. Never the value: it may be a secret."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        name = str(err["loc"][0]) if err.get("loc") else "settings"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"NEARREC_{name.upper()}: {message}")
    return "; ".join(parts) if parts else "invalid settings"


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends a command like Ctrl-C does: through ``finally`` blocks and exit handlers, so the embedded
    Postgres this process joined is released (and stopped when it was the last user)."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="nearrec")
