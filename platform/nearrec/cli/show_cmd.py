"""`nearrec show item|user ID [--history] [--json]`: read back what is stored (Postgres only, so it works
while `nearrec serve` runs on the same data dir)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from nearrec.errors import NotFoundError


@click.command()
@click.argument("kind", type=click.Choice(["item", "user"]))
@click.argument("external_id", metavar="ID")
@click.option("--history", is_flag=True, help="Also list the interactions, newest first.")
@click.option("--limit", default=20, show_default=True, help="How many interactions --history lists.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(kind: str, external_id: str, history: bool, limit: int, as_json: bool) -> None:
    """Show an item or a user as stored (with --history: a user's latest interactions)."""
    from nearrec.postgres import read_repo
    from nearrec.runtime import Runtime

    with Runtime() as rt, rt.read_sessions() as session:
        found = (
            read_repo.get_item(session, external_id)
            if kind == "item"
            else read_repo.get_user(session, external_id)
        )
        if found is None:
            raise NotFoundError(f"unknown {kind} {external_id!r}")
        doc: dict[str, Any] = asdict(found)
        if history and kind == "user":
            doc["history"] = [asdict(e) for e in read_repo.user_events(session, external_id, limit, 0)]
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    events = doc.pop("history", None)
    for key, value in doc.items():
        shown = json.dumps(value, default=str) if isinstance(value, dict) else value
        click.echo(f"{key + ':':<13} {shown}")
    if events is not None:
        click.echo(f"latest {len(events)} interactions:" if events else "no interactions")
        for e in events:
            value = "" if e["value"] is None else f" {e['value']:g}"
            click.echo(
                f"  {e['timestamp']:%Y-%m-%d %H:%M:%S}  {e['type']}{value}  {e['item_id']}  {e['item_title'] or ''}"
            )
