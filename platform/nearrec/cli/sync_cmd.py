"""`nearrec sync status|check|retry`: the state of the outbox and of the two stores."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import click
from sqlalchemy.orm import Session

from nearrec.cli.running import first_api_key, running_server
from nearrec.config import Settings
from nearrec.embedding import configured_model_id
from nearrec.errors import NearrecError
from nearrec.filters import Eq
from nearrec.postgres import sync_repo
from nearrec.postgres.engine import transaction
from nearrec.runtime import Runtime
from nearrec.sync import last_check
from nearrec.sync.check import CheckReport, check_stores, repair
from nearrec.vectors.payload import ACTIVE, META_MODEL, META_SEARCH


@click.group()
def sync() -> None:
    """Backlog, drift and repair between Postgres and the vector store."""


@sync.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(as_json: bool) -> None:
    """Backlog (pending rows, oldest pending age, retrying and parked rows) and counts in both stores."""
    settings = Settings()
    server = running_server(settings)
    with Runtime(settings) as rt:
        with transaction(rt.sessions) as session:
            doc = _postgres_status(session)
        doc["vectors"] = (
            _served_vector_status(server.url, settings) if server else _vector_status(rt, settings)
        )
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        _print_status(doc)
    if "error" in doc["vectors"]:
        sys.exit(1)  # a store that cannot be reached is not a healthy status


def _served_vector_status(url: str, settings: Settings) -> dict[str, Any]:
    """The store is owned by a running `nearrec serve`: ask its readiness probe instead of opening it."""
    from nearrec.client import ApiError, Client

    try:
        with Client(url, first_api_key(settings), timeout=10) as api:
            api.readyz()
    except ApiError as exc:
        return {"error": f"the running server at {url} reports: {exc.message}"}
    except Exception as exc:
        return {"error": f"the running server at {url} does not answer: {type(exc).__name__}"}
    return {"served_by": url}


def _postgres_status(session: Session) -> dict[str, Any]:
    """The outbox backlog, the table counts and the failing rows, as ``sync status --json`` shows them."""
    stats = sync_repo.outbox_stats(session)
    counts = sync_repo.table_counts(session)
    age = (stats.now - stats.oldest_pending).total_seconds() if stats.oldest_pending else None
    return {
        "outbox": {
            "pending": stats.pending,
            "available": stats.available,
            "retrying": stats.retrying,
            "parked": stats.parked,
            "oldest_pending_seconds": age,
        },
        "postgres": {
            "items": counts.items,
            "active_items": counts.active_items,
            "items_with_text": counts.items_with_text,
            "users": counts.users,
            "interactions": counts.interactions,
        },
        "failed": [
            {
                "id": f.id,
                "entity": f.entity,
                "entity_id": f.entity_id,
                "attempts": f.attempts,
                "parked": f.failed_at is not None,
                "last_error": f.last_error,
            }
            for f in sync_repo.failed_rows(session)
        ],
    }


def _print_status(doc: dict[str, Any]) -> None:
    out = doc["outbox"]
    age = out["oldest_pending_seconds"]
    oldest = f", oldest {timedelta(seconds=round(age))} old" if age is not None else ""
    click.echo(
        f"outbox:   {out['pending']} pending ({out['available']} available now, {out['retrying']} "
        f"retrying{oldest}), {out['parked']} parked"
    )
    pg = doc["postgres"]
    click.echo(
        f"postgres: {pg['items']} items ({pg['active_items']} active, {pg['items_with_text']} with text), "
        f"{pg['users']} users, {pg['interactions']} interactions"
    )
    vec = doc["vectors"]
    if "error" in vec:
        click.echo(f"vectors:  unavailable: {vec['error']}")
    elif "served_by" in vec:
        click.echo(
            f"vectors:  owned by the running server at {vec['served_by']}: ready (counts: /metrics there)"
        )
    else:
        for kind in ("items", "users"):
            c = vec[kind]
            if not c.get("exists"):
                click.echo(f"vectors:  {c['name']}: missing (run `nearrec worker`)")
                continue
            extra = f", {c['active']} active" if "active" in c else ""
            click.echo(
                f"vectors:  {c['name']} -> {c['collection']}: {c['points']} points{extra}, model {c['model']}"
            )
            for vector, effort in c["search"].items():
                click.echo(f"          search {vector}: {effort}")
    for f in doc["failed"]:
        state = "parked" if f["parked"] else "retrying"
        click.echo(
            f"  {state} row {f['id']} ({f['entity']} {f['entity_id']}, {f['attempts']} attempts): {f['last_error']}"
        )


def _vector_status(rt: Runtime, settings: Settings) -> dict[str, Any]:
    try:
        store = rt.vector_store
        out: dict[str, Any] = {}
        for kind, name in (("items", settings.items_collection), ("users", settings.users_collection)):
            if not store.collection_exists(name):
                out[kind] = {"name": name, "exists": False}
                continue
            metadata = store.get_metadata(name)
            info: dict[str, Any] = {
                "name": name,
                "exists": True,
                "collection": store.resolve_alias(name) or name,
                "points": store.count(name),
                "model": metadata.get(META_MODEL),
                "search": _search_effort(metadata.get(META_SEARCH)),
            }
            if kind == "items":
                info["active"] = store.count(name, Eq(ACTIVE, 1))
            out[kind] = info
        return out
    except NearrecError as exc:  # e.g. the embedded store is owned by a running worker
        return {"error": str(exc)}


def _search_effort(record: Any) -> dict[str, str]:
    """The calibrated search effort per vector, e.g. {"text": "hnsw_ef 64 (recall@10 0.97)"}."""
    if not isinstance(record, dict):
        return {}
    out = {}
    for vector, chosen in sorted(record.get("vectors", {}).items()):
        effort = "exact search" if chosen.get("exact") else f"hnsw_ef {chosen.get('ef')}"
        out[vector] = f"{effort} (recall@10 {chosen.get('recall', 0):.2f})"
    return out


@sync.command()
@click.option("--repair", "do_repair", is_flag=True, help="Enqueue every difference for the workers.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def check(do_repair: bool, as_json: bool) -> None:
    """Compare ids, active flags, content hashes and payloads between Postgres and the vector store.

    Exit status 0 only when the stores agree."""
    settings = Settings()
    with Runtime(settings) as rt:
        with transaction(rt.sessions) as session:
            report = check_stores(session, rt.vector_store, settings, configured_model_id(settings))
            added = repair(session, report) if do_repair and not report.ok else 0
        last_check.record(rt.vector_store, settings.items_collection, report, added)  # for the dashboard
    if as_json:
        doc = {
            "ok": report.ok,
            "problems": report.problems,
            "items": report.items.as_dict(),
            "users": report.users.as_dict(),
            "enqueued": added,
        }
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_check(report, added, do_repair)
    sys.exit(0 if report.ok else 1)


def _print_check(report: CheckReport, added: int, do_repair: bool) -> None:
    for problem in report.problems:
        click.echo(f"problem: {problem}")
    for kind, drift in (("items", report.items), ("users", report.users)):
        line = f"{kind}: {drift.points} points, {drift.expected} expected"
        parts = [
            f"{len(ids)} {label}"
            for label, ids in (
                ("missing", drift.missing),
                ("extra", drift.extra),
                ("stale", drift.stale),
                ("active flag differs", drift.active),
                ("payload differs", drift.payload),
            )
            if ids
        ]
        click.echo(line + (": " + ", ".join(parts) if parts else ": in sync"))
    if report.ok:
        click.echo("the stores agree")
    elif do_repair:
        click.echo(f"enqueued {added} outbox rows; run `nearrec worker` (or let a running one pick them up)")
    else:
        click.echo("the stores differ; `nearrec sync check --repair` enqueues the differences")


@sync.command()
def retry() -> None:
    """Make parked (failed) outbox rows pending again, with a fresh attempt count."""
    with Runtime(Settings()) as rt, transaction(rt.sessions) as session:
        n = sync_repo.retry_parked(session)
    click.echo(f"{n} parked rows are pending again")
