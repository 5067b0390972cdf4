"""`nearrec schema show|set`: the attribute schema of items and users (thin over
:mod:`nearrec.ingest.schema_admin`)."""

from __future__ import annotations

import json

import click

from nearrec.config import Settings
from nearrec.ingest.schema import Entity, parse_types

_ENTITIES: dict[str, Entity] = {"items": "item", "users": "user"}
WHICH = click.Choice(["items", "users"])


@click.group()
def schema() -> None:
    """The attribute schema: one type per item / user attribute, checked for every row and request.

    Types: string, int, float, bool, list (of strings), json (stored, not filterable). Filters know every
    declared attribute of type string, int, float, bool or list.
    """


@schema.command("show")
@click.argument("which", type=WHICH, default="items")
@click.option("--json", "as_json", is_flag=True, help="Print the schema as JSON.")
def show_cmd(which: str, as_json: bool) -> None:
    """Print the attributes of items (default) or users, their types and how many rows hold each."""
    from nearrec.ingest.schema_admin import show
    from nearrec.runtime import Runtime

    with Runtime(Settings()) as runtime, runtime.read_sessions() as session:
        infos = show(session, _ENTITIES[which])
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos]))
        return
    if not infos:
        click.echo(
            f"no {which} attributes yet (they are inferred at the first load, or declared with --types)"
        )
        return
    width = max(len(i.name) for i in infos)
    click.echo(f"{'attribute':<{width}}  {'type':<6}  {'rows':>10}  filterable")
    for i in infos:
        click.echo(f"{i.name:<{width}}  {i.type:<6}  {i.rows:>10,}  {'yes' if i.filterable else 'no'}")


@schema.command("set")
@click.argument("which", type=WHICH)
@click.argument("types", nargs=-1)
@click.option("--drop", multiple=True, help="Remove an attribute from the schema and from every row.")
def set_cmd(which: str, types: tuple[str, ...], drop: tuple[str, ...]) -> None:
    """Declare or change types, e.g. `nearrec schema set items price=float tags=list --drop legacy`.

    Every stored value of a changed attribute is re-validated: if all fit they are converted (and the items
    re-queued); if any does not, nothing changes and the error names them."""
    from nearrec.ingest.schema_admin import drop as drop_attributes
    from nearrec.ingest.schema_admin import set_types
    from nearrec.postgres.engine import transaction
    from nearrec.runtime import Runtime

    declared = parse_types(types)
    names = [n.strip() for value in drop for n in value.split(",") if n.strip()]
    if not declared and not names:
        raise click.UsageError("give NAME=TYPE pairs and/or --drop NAME")
    entity = _ENTITIES[which]
    settings = Settings()
    with Runtime(settings) as runtime, transaction(runtime.sessions) as session:
        changes = drop_attributes(session, entity, names) if names else []
        changes += set_types(session, entity, declared, max_attributes=settings.max_attributes)
    for change in changes:
        if change.new is None:
            click.echo(f"dropped {change.name} ({change.old}); removed from {change.rows:,} {which}")
        elif change.old is None:
            click.echo(f"declared {change.name}={change.new} ({change.rows:,} stored values checked)")
        else:
            click.echo(f"{change.name}: {change.old} -> {change.new} ({change.rows:,} stored values checked)")
