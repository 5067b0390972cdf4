"""The `nearrec` command. Each group lives in its own module and stays thin over the services."""

from __future__ import annotations

import sys
from typing import Any

import click

from nearrec import __version__
from nearrec.cli import config_cmd, db_cmd
from nearrec.errors import NearrecError

GROUPS: list[click.Command] = [db_cmd.db, config_cmd.config]


def _optional_groups() -> list[click.Command]:
    """Groups added by later modules; imported here so `nearrec --help` lists them all."""
    import importlib

    found: list[click.Command] = []
    for module_name, attr in OPTIONAL:
        try:
            module = importlib.import_module(f"nearrec.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nearrec.cli.{module_name}":
                raise
            continue
        found.append(getattr(module, attr))
    return found


# (module, command) pairs, in help order.
OPTIONAL: list[tuple[str, str]] = [
    ("ingest_cmd", "ingest"),
    ("delete_cmd", "delete"),
    ("worker_cmd", "worker"),
    ("sync_cmd", "sync"),
    ("reindex_cmd", "reindex"),
    ("query_cmd", "recommend"),
    ("query_cmd", "similar"),
    ("query_cmd", "search"),
    ("serve_cmd", "serve"),
    ("train_cmd", "train"),
    ("evaluate_cmd", "evaluate"),
    ("quickstart_cmd", "quickstart"),
]


class NearrecGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NearrecError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=NearrecGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nearrec")
def cli() -> None:
    """nearrec: recommendations from text embeddings, Postgres as the source of truth, Qdrant for search.

    With no NEARREC_DATABASE_URL / NEARREC_QDRANT_URL set, everything runs embedded under ./.nearrec.
    """
    from nearrec.logs import configure_logging

    configure_logging()


for _cmd in GROUPS + _optional_groups():
    cli.add_command(_cmd)


def main() -> None:
    cli(prog_name="nearrec")
