"""`nearrec ingest items|users|interactions FILE...`: thin over :mod:`nearrec.ingest.loader`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from sqlalchemy.exc import OperationalError

from nearrec.config import Settings
from nearrec.errors import ConfigError, InputFileError, StoreUnavailableError
from nearrec.ingest.loader import LoadPlan, load
from nearrec.ingest.options import interaction_options
from nearrec.ingest.readers import FORMATS, ReadOptions
from nearrec.ingest.records import (
    ItemOptions,
    RecordRejectedError,
    Rejection,
    UserOptions,
    unknown_type_reason,
)
from nearrec.ingest.schema import parse_types
from nearrec.ingest.summary import Kind, Summary

SHOWN_REJECTIONS = 20
FAST_BATCH_ROWS = 100_000  # interaction CSV (columnar path): rows per batch unless --batch-size


def _names(values: Sequence[str]) -> tuple[str, ...]:
    """Column names from repeated and/or comma-separated options."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    named = {"\\t": "\t", "tab": "\t", "TAB": "\t"}
    value = named.get(value, value)
    if len(value) != 1:
        raise click.BadParameter("must be one character (or 'tab')", param_hint="--delimiter")
    return value


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)),
        click.option(
            "--format", "fmt", type=click.Choice(FORMATS), help="File format (default: from extension)."
        ),
        click.option(
            "--delimiter", help="CSV field delimiter (default ',' or tab for .tsv); 'tab' for a tab."
        ),
        click.option("--encoding", default="utf-8", show_default=True, help="Text encoding, e.g. latin-1."),
        click.option(
            "--on-error",
            type=click.Choice(["skip", "abort"]),
            default="skip",
            show_default=True,
            help="skip: load the good rows, report the bad ones; abort: load nothing if any row is bad.",
        ),
        click.option(
            "--rejects",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write rejected rows here (JSON Lines).",
        ),  # fmt: skip
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            help="Rows per transaction/bulk write (default: NEARREC_INGEST_BATCH_SIZE).",
        ),  # fmt: skip
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-row messages."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _record_columns(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--id-column", default="id", show_default=True, help="Column holding the external id."),
        click.option(
            "--text-columns", multiple=True, help="Columns composed into the embedded text (comma-separated)."
        ),  # fmt: skip
        click.option("--list-columns", multiple=True, help="Columns holding lists (comma-separated names)."),
        click.option("--list-sep", default="|", show_default=True, help="Separator inside list columns."),
        click.option("--ignore-columns", multiple=True, help="Columns to drop (comma-separated)."),
        click.option(
            "--types",
            multiple=True,
            help="Declare attribute types, e.g. price=float,in_stock=bool,tags=list (string, int, float, bool,"
            " list, json). Undeclared new attributes get the type most of their values have.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
def ingest() -> None:
    """Load items, users or interactions from CSV/TSV, JSON Lines or Parquet files (each may be .gz).

    Re-loading an identical file changes nothing; changed rows are updated and their vectors re-queued.
    """


@ingest.command("items")
@_common
@_record_columns
@click.option("--prune", is_flag=True, help="The files are the full catalog: deactivate active items absent from them.")  # fmt: skip
def items_cmd(**kw: Any) -> None:
    """Upsert items. `id` is required; `title` is the display title; the embedded text is composed from
    --text-columns (default: title, then text or description); every other column becomes a typed
    attribute (numbers, true/false, strings, lists via --list-columns)."""
    settings = Settings()
    _run("items", ItemOptions(**_record_options(kw, settings)), settings, kw, prune=kw["prune"])


def _record_options(kw: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The options items and users share, from the command line."""
    return {
        "id_column": kw["id_column"],
        "text_columns": _names(kw["text_columns"]) or None,
        "list_columns": frozenset(_names(kw["list_columns"])),
        "list_sep": kw["list_sep"],
        "ignore_columns": frozenset(_names(kw["ignore_columns"])),
        "max_text_chars": settings.max_text_chars,
        "types": parse_types(kw["types"]),
    }


@ingest.command("users")
@_common
@_record_columns
def users_cmd(**kw: Any) -> None:
    """Upsert users. `id` is required; the profile text is composed from --text-columns (default:
    profile); every other column becomes a typed attribute."""
    settings = Settings()
    _run("users", UserOptions(**_record_options(kw, settings)), settings, kw)


@ingest.command("interactions")
@_common
@click.option("--type", "default_type", default="view", show_default=True, help="Type of rows without a `type` column/value (e.g. rating).")  # fmt: skip
@click.option("--create-missing-items", is_flag=True, help="Create unknown items as inactive placeholders instead of rejecting the rows.")  # fmt: skip
def interactions_cmd(**kw: Any) -> None:
    """Add interactions: `user_id`, `item_id`, and optionally `type`, `value`, `timestamp` (ISO 8601 or
    unix seconds/milliseconds; default now) and `event_id` (a repeated one is ignored). Unknown users are
    created; rows with an unknown item are rejected unless --create-missing-items."""
    settings = Settings()
    default_type = kw["default_type"].strip().lower()
    if not default_type:
        raise click.BadParameter("must not be empty", param_hint="--type")
    if default_type not in settings.interaction_weights:
        raise click.BadParameter(
            unknown_type_reason(default_type, settings.interaction_weights), param_hint="--type"
        )
    options = interaction_options(settings, default_type, create_missing_items=kw["create_missing_items"])
    _run("interactions", options, settings, kw)


def _run(kind: Kind, options: Any, settings: Settings, kw: dict[str, Any], *, prune: bool = False) -> None:
    from nearrec.postgres import migrate
    from nearrec.runtime import Runtime

    plan = LoadPlan(
        kind=kind,
        files=list(kw["files"]),
        options=options,
        read=ReadOptions(format=kw["fmt"], delimiter=_delimiter(kw["delimiter"]), encoding=kw["encoding"]),
        on_error=kw["on_error"],
        batch_size=kw["batch_size"] or settings.ingest_batch_size,
        prune=prune,
        max_attributes=settings.max_attributes,
        fast_batch_size=kw["batch_size"] or FAST_BATCH_ROWS,
    )
    quiet: bool = kw["quiet"]
    with Runtime(settings) as runtime, _rejects_file(kw["rejects"]) as rejects_out:
        if migrate.current_revision(runtime.engine) is None:
            raise ConfigError("the database has no nearrec schema yet: run `nearrec db upgrade` first")
        reporter = _Reporter(rejects_out, show=not quiet)
        try:
            with _progress(enabled=not quiet and sys.stderr.isatty()) as on_progress:
                summary = load(runtime.engine, plan, on_rejections=reporter, on_progress=on_progress)
        except RecordRejectedError as exc:
            click.secho(f"error: {exc.rejection}", fg="red", err=True)
            click.echo("nothing was loaded (--on-error abort)", err=True)
            sys.exit(1)
        except InputFileError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            click.echo("nothing was loaded", err=True)
            sys.exit(1)
        except OperationalError as exc:
            raise StoreUnavailableError(f"database error: {exc.orig or exc}") from exc
    reporter.finish(summary, kw["rejects"])
    _print_summary(summary, as_json=kw["as_json"])
    if summary.error is not None:
        click.secho(f"error: {summary.error}", fg="red", err=True)
        click.echo("the batches before this line were loaded; fix the file and run again", err=True)
        sys.exit(1)
    if summary.loaded == 0:
        click.secho("error: no valid rows: nothing was loaded", fg="red", err=True)
        sys.exit(1)


@contextmanager
def _rejects_file(path: Path | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    with open(path, "w", encoding="utf-8") as handle:
        yield handle


class _Reporter:
    """Streams rejections to the --rejects file and the first few to stderr."""

    def __init__(self, out: IO[str] | None, *, show: bool) -> None:
        self.out = out
        self.show = show
        self.count = 0

    def __call__(self, rejections: Sequence[Rejection]) -> None:
        for rejection in rejections:
            if self.out is not None:
                self.out.write(json.dumps(rejection.to_dict(), ensure_ascii=False) + "\n")
            if self.show and self.count < SHOWN_REJECTIONS:
                click.echo(f"rejected: {rejection}", err=True)
            self.count += 1

    def finish(self, summary: Summary, rejects: Path | None) -> None:
        hidden = self.count - SHOWN_REJECTIONS if self.show else self.count
        if hidden > 0:
            where = f"all of them are in {rejects}" if rejects else "write them all with --rejects FILE"
            more = "more " if self.show else ""  # with -q none was shown
            click.echo(f"... {hidden:,} {more}rejected rows ({where})", err=True)
        for note in summary.notes:
            click.echo(f"note: {note}", err=True)


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[float], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("ingesting", total=1.0)
        yield lambda fraction: progress.update(task, completed=fraction)


def _print_summary(summary: Summary, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    line = (
        f"{summary.kind}: read {summary.read:,}, inserted {summary.inserted:,}, updated {summary.updated:,}, "
        f"unchanged {summary.unchanged:,}, rejected {summary.rejected:,}"
    )
    if summary.kind == "items" and summary.pruned:
        line += f", pruned {summary.pruned:,}"
    click.echo(line)
    extras = []
    if summary.users_created:
        extras.append(f"{summary.users_created:,} new users")
    if summary.items_created:
        extras.append(f"{summary.items_created:,} placeholder items")
    extras.append(f"{summary.enqueued:,} vector updates queued")
    if summary.nul_stripped:
        extras.append(f"{summary.nul_stripped:,} NUL characters stripped")
    click.echo("  " + ", ".join(extras))
    click.echo(f"  {summary.rows_per_second:,.0f} rows/s ({summary.seconds:.2f} s)")
