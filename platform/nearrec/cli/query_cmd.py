"""`nearrec recommend | similar | search`: the query service from the shell.

While `nearrec serve` owns this data dir's embedded vector store, the query goes to that server over HTTP
(see :mod:`nearrec.cli.running`); the answer is the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from nearrec.cli.running import first_api_key, running_server
from nearrec.client import Client
from nearrec.config import Settings
from nearrec.errors import NearrecError, ValidationError
from nearrec.query.methods import METHODS
from nearrec.query.results import Reason, Recommendation, recommendation_dict
from nearrec.query.service import QueryService
from nearrec.runtime import Runtime

filter_option = click.option("--filter", "filter_json", help='JSON filter, e.g. \'{"category": "garden"}\'.')
k_option = click.option("-k", "k", default=10, show_default=True, help="How many results.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
fields_option = click.option("--fields", default="", help="Comma-separated item attributes to show.")


def _run(
    call: Callable[[QueryService], list[Recommendation]],
    as_json: bool,
    fields: list[str],
    remote: Callable[[Client], list[Any]] | None = None,
) -> None:
    settings = Settings()
    server = running_server(settings) if remote is not None else None
    if server is not None and remote is not None:
        recs = _remote(server.url, first_api_key(settings), remote)
    else:
        with Runtime(settings) as runtime:
            service = QueryService(
                runtime.read_sessions, runtime.vector_store, runtime.settings, lambda: runtime.embedder
            )
            recs = call(service)
    if as_json:
        click.echo(json.dumps([recommendation_dict(r) for r in recs], indent=2, default=str))
        return
    print_table(recs, fields)


def _remote(url: str, key: str | None, call: Callable[[Client], list[Any]]) -> list[Recommendation]:
    from nearrec.client import ApiError

    with Client(url, key) as api:
        try:
            got = call(api)
        except ApiError as exc:
            raise NearrecError(f"{exc.message} (from the running server at {url})") from None
    return [
        Recommendation(
            r.item_id,
            r.score,
            r.title,
            r.fields,
            Reason(r.reason.kind, r.reason.similarity, r.reason.item_id, r.reason.title)
            if r.reason
            else None,
        )
        for r in got
    ]


def _filter(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"filter: invalid JSON: {exc.msg} at position {exc.pos}", path="filter"
        ) from None
    return value if isinstance(value, dict) else {"": value}


def print_table(recs: list[Recommendation], fields: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("#", "item", "title", "score", *fields):
        table.add_column(col)
    explained = any(r.reason for r in recs)
    if explained:
        table.add_column("why")
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
    name = r.title or r.item_id
    if r.kind == "history":
        return f"you liked {name} (cosine {r.similarity:.2f})"
    if r.kind == "session":
        return f"liked in this session: {name} (cosine {r.similarity:.2f})"
    if r.kind == "item":
        return f"similar to {name}" if name else "similar item"
    if r.kind == "popular":
        return f"popular ({int(r.similarity)} recent interactions)"
    if r.kind == "profile":
        return "matches the profile"
    if r.kind == "query":
        return "matches the query"
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
        lambda api: api.recommend(
            user_id,
            k=k,
            filter=_filter(filter_json),
            exclude_ids=_fields(exclude),
            diversity=diversity,
            explain=explain,
            offset=offset,
            fields=cols,
            method=method,
        ),
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
    _run(
        lambda s: s.similar_items(item_id, k=k, filter=filter_json, fields=cols),
        as_json,
        cols,
        lambda api: api.similar_items(item_id, k=k, filter=_filter(filter_json), fields=cols),
    )


@click.command()
@click.argument("text")
@k_option
@filter_option
@fields_option
@json_option
def search(text: str, k: int, filter_json: str | None, fields: str, as_json: bool) -> None:
    """Semantic search: items whose text is closest to TEXT."""
    cols = _fields(fields)
    _run(
        lambda s: s.search(text, k=k, filter=filter_json, fields=cols),
        as_json,
        cols,
        lambda api: api.search(text, k=k, filter=_filter(filter_json), fields=cols),
    )
