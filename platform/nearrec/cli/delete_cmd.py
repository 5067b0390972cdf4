"""`nearrec delete items|users ID...`: thin over :mod:`nearrec.ingest.service`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from nearrec.config import Settings
from nearrec.ingest.service import DeleteResult, delete_items, delete_users


def _ids(ids: tuple[str, ...], ids_file: Path | None) -> list[str]:
    found = [i.strip() for i in ids if i.strip()]
    if ids_file is not None:
        with open(ids_file, encoding="utf-8") as handle:
            found += [line.strip() for line in handle if line.strip()]
    if not found:
        raise click.UsageError("give at least one ID (arguments or --ids-file)")
    return list(dict.fromkeys(found))


def _ids_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)
    func = click.option(
        "--ids-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="One external id per line.",
    )(func)
    return click.argument("ids", nargs=-1)(func)


@click.group()
def delete() -> None:
    """Delete items or users (and their interactions); their vectors are removed through the outbox."""


@delete.command("items")
@_ids_options
def items_cmd(ids: tuple[str, ...], ids_file: Path | None, as_json: bool) -> None:
    """Delete items by external id, with their interactions; the users whose history changed are
    re-queued."""
    _run("items", _ids(ids, ids_file), as_json)


@delete.command("users")
@_ids_options
def users_cmd(ids: tuple[str, ...], ids_file: Path | None, as_json: bool) -> None:
    """Delete users by external id, with their interactions and (through the outbox) their vectors."""
    _run("users", _ids(ids, ids_file), as_json)


def _run(kind: str, ids: list[str], as_json: bool) -> None:
    from nearrec.postgres.engine import transaction
    from nearrec.runtime import Runtime

    with Runtime(Settings()) as runtime, transaction(runtime.sessions) as session:
        result: DeleteResult = delete_items(session, ids) if kind == "items" else delete_users(session, ids)
    if as_json:
        click.echo(json.dumps({"kind": kind, "deleted": result.deleted, "unknown": result.unknown,
                               "users_enqueued": result.users_enqueued}))  # fmt: skip
    else:
        click.echo(f"deleted {len(result.deleted):,} {kind}")
        if kind == "items" and result.users_enqueued:
            click.echo(f"  {result.users_enqueued:,} users queued for a vector refresh")
    if result.unknown:
        shown = ", ".join(result.unknown[:20]) + (" ..." if len(result.unknown) > 20 else "")
        click.echo(f"unknown {kind} ({len(result.unknown):,}): {shown}", err=True)
    if not result.deleted:
        sys.exit(1)
