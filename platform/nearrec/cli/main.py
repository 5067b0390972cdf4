"""The `nearrec` command. Each group lives in its own module and stays thin over the services.

Start-up stays fast because nothing heavy is imported before it is used: a command's module is imported only
when that command runs (``nearrec --help`` lists the summaries below without importing any), and the modules
import their heavy dependencies (torch, the model, FastAPI, numpy) inside the commands.
"""

from __future__ import annotations

import importlib
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from nearrec import __version__

if TYPE_CHECKING:
    from pydantic import ValidationError
from nearrec.errors import ConfigError, NearrecError


@dataclass(frozen=True)
class CommandSpec:
    """Where a command lives, and the first paragraph of its help (tests/unit/test_cli_startup.py keeps it
    equal to the command's docstring)."""

    name: str
    module: str
    attr: str
    summary: str


COMMANDS: tuple[CommandSpec, ...] = (  # in the order `nearrec --help` lists them
    CommandSpec(
        "quickstart",
        "nearrec.cli.quickstart_cmd",
        "quickstart",
        "Demo catalog, vectors and recommendations in one command (embedded default, nothing to install).",
    ),
    CommandSpec("db", "nearrec.cli.db_cmd", "db", "Database schema (Alembic) and status."),
    CommandSpec("config", "nearrec.cli.config_cmd", "config", "Inspect the effective settings."),
    CommandSpec(
        "ingest",
        "nearrec.cli.ingest_cmd",
        "ingest",
        "Load items, users or interactions from CSV/TSV, JSON Lines or Parquet files (each may be .gz).",
    ),
    CommandSpec(
        "schema",
        "nearrec.cli.schema_cmd",
        "schema",
        "The attribute schema: one type per item / user attribute, checked for every row and request.",
    ),
    CommandSpec(
        "delete",
        "nearrec.cli.delete_cmd",
        "delete",
        "Delete items or users (and their interactions); their vectors are removed through the outbox.",
    ),
    CommandSpec(
        "worker",
        "nearrec.cli.worker_cmd",
        "worker",
        "Embed changed items and users and write them to the vector store (runs until stopped).",
    ),
    CommandSpec(
        "sync",
        "nearrec.cli.sync_cmd",
        "sync",
        "Backlog, drift and repair between Postgres and the vector store.",
    ),
    CommandSpec(
        "reindex",
        "nearrec.cli.reindex_cmd",
        "reindex",
        "Re-embed every item and user into new collections, then point the aliases at them.",
    ),
    CommandSpec(
        "train",
        "nearrec.cli.train_cmd",
        "train",
        "Tune the ranking model on a validation split carved from the interactions, fit the winner on all of "
        "them and swap its item vectors in (no reindex needed; queries keep answering meanwhile).",
    ),
    CommandSpec(
        "recommend",
        "nearrec.cli.query_cmd",
        "recommend",
        "Recommend items for USER_ID (never one they have seen).",
    ),
    CommandSpec("similar", "nearrec.cli.query_cmd", "similar", "Items most similar to ITEM_ID."),
    CommandSpec(
        "search", "nearrec.cli.query_cmd", "search", "Semantic search: items whose text is closest to TEXT."
    ),
    CommandSpec(
        "show",
        "nearrec.cli.show_cmd",
        "show",
        "Show an item or a user as stored (with --history: a user's latest interactions).",
    ),
    CommandSpec(
        "serve",
        "nearrec.cli.serve_cmd",
        "serve",
        "Serve the HTTP API (OpenAPI docs at /docs). SIGTERM or Ctrl-C stops it cleanly.",
    ),
    CommandSpec(
        "evaluate",
        "nearrec.cli.evaluate_cmd",
        "evaluate",
        "Hold out each user's last positive interaction, load the rest through ingest + sync + train into a "
        "scratch database and scratch collections, train (tuning by default), and score every method's top-k "
        "through the query service, beside offline EASE and popularity computed in numpy on the same split.",
    ),
)
SPECS = {spec.name: spec for spec in COMMANDS}


def load_command(spec: CommandSpec) -> click.Command:
    """Import the command's module (only now) and return the command."""
    command = getattr(importlib.import_module(spec.module), spec.attr)
    assert isinstance(command, click.Command)
    return command


class NearrecGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from pydantic import ValidationError as PydanticValidationError  # not needed by `--help`

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
        return [spec.name for spec in COMMANDS]  # in the order above, not alphabetical

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = SPECS.get(cmd_name)
        return load_command(spec) if spec else super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` from the summaries, without importing the commands."""
        limit = formatter.width - 6 - max(len(spec.name) for spec in COMMANDS)
        rows = [(s.name, click.Command(s.name, help=s.summary).get_short_help_str(limit)) for s in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=NearrecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nearrec")
def cli() -> None:
    """nearrec: recommendations from text embeddings, Postgres as the source of truth, Qdrant for search.

    With no NEARREC_DATABASE_URL / NEARREC_QDRANT_URL set, everything runs embedded under ./.nearrec.
    """
    from nearrec.config import Settings
    from nearrec.logs import configure_logging

    configure_logging(Settings())


def settings_error(exc: ValidationError) -> str:
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
