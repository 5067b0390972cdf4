"""`nearrec recommend | similar | search`: the query service from the shell."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from nearrec.query.methods import METHODS
from nearrec.query.results import Recommendation, recommendation_dict
from nearrec.query.service import QueryService
from nearrec.runtime import Runtime

filter_option = click.option("--filter", "filter_json", help='JSON filter, e.g. \'{"category": "garden"}\'.')
k_option = click.option("-k", "k", default=10, show_default=True, help="How many results.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
fields_option = click.option("--fields", default="", help="Comma-separated item attributes to show.")


def _run(call: Callable[[QueryService], list[Recommendation]], as_json: bool, fields: list[str]) -> None:
    with Runtime() as runtime:
        service = QueryService(
            runtime.read_sessions, runtime.vector_store, runtime.settings, lambda: runtime.embedder
        )
        recs = call(service)
    if as_json:
        click.echo(json.dumps([recommendation_dict(r) for r in recs], indent=2, default=str))
        return
    print_table(recs, fields)


def print_table(recs: list[Recommendation], fields: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("#", "item", "title", "score", *fields):
        table.add_column(col)
    explained = any(r.reason for r in recs)
    if explained:
        table.add_column("because you liked")
    for n, rec in enumerate(recs, start=1):
        row: list[Any] = [str(n), rec.item_id, rec.title or "", f"{rec.score:.3f}"]
        row += [str(rec.fields.get(f, "")) for f in fields]
        if explained:
            row.append(_reason(rec))
        table.add_row(*row)
    Console().print(table)
    if not recs:
        click.echo("no results")


def _reason(rec: Recommendation) -> str:
    r = rec.reason
    if r is None:
        return ""
    if r.kind == "history":
        return f"{r.title or r.item_id} ({r.similarity:.2f})"
    if r.kind == "popular":
        return f"popular ({int(r.similarity)} recent interactions)"
    if r.kind == "profile":
        return "matches your profile"
    return r.kind


def _fields(raw: str) -> list[str]:
    return [f for f in raw.split(",") if f]


@click.command()
@click.argument("user_id")
@k_option
@filter_option
@click.option("--exclude", default="", help="Comma-separated item ids to leave out.")
@click.option("--diversity", default=0.0, show_default=True, help="0..1: trade relevance for variety (MMR).")
@click.option("--explain", is_flag=True, help="Say which history item made each result close.")
@click.option("--offset", default=0, show_default=True, help="Skip this many results (paging).")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=None,
    help="Retrieval method (default: hybrid once `nearrec train` has run, else text).",
)
@fields_option
@json_option
def recommend(
    user_id: str,
    k: int,
    filter_json: str | None,
    exclude: str,
    diversity: float,
    explain: bool,
    offset: int,
    method: str | None,
    fields: str,
    as_json: bool,
) -> None:
    """Recommend items for USER_ID (never one they have seen)."""
    cols = _fields(fields)
    _run(
        lambda s: s.recommend(
            user_id,
            k=k,
            filter=filter_json,
            exclude_ids=_fields(exclude),
            diversity=diversity,
            explain=explain,
            offset=offset,
            fields=cols,
            method=method,
        ),
        as_json,
        cols,
    )


@click.command()
@click.argument("item_id")
@k_option
@filter_option
@fields_option
@json_option
def similar(item_id: str, k: int, filter_json: str | None, fields: str, as_json: bool) -> None:
    """Items most similar to ITEM_ID."""
    cols = _fields(fields)
    _run(lambda s: s.similar_items(item_id, k=k, filter=filter_json, fields=cols), as_json, cols)


@click.command()
@click.argument("text")
@k_option
@filter_option
@fields_option
@json_option
def search(text: str, k: int, filter_json: str | None, fields: str, as_json: bool) -> None:
    """Semantic search: items whose text is closest to TEXT."""
    cols = _fields(fields)
    _run(lambda s: s.search(text, k=k, filter=filter_json, fields=cols), as_json, cols)
