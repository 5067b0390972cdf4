"""`nearrec train`: tune, fit and swap in the ranking model (see nearrec.jobs.train)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from nearrec.config import Settings
from nearrec.jobs.train import manual_config
from nearrec.jobs.train import train as run_train
from nearrec.model.tuning import TuningResult
from nearrec.runtime import Runtime

Progress = Callable[[str, int, int], None]


@contextmanager
def stage_progress(*, enabled: bool) -> Iterator[Progress | None]:
    """A rich progress bar on stderr with one task per stage, fed by ``(stage, done, total)`` calls."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, object] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))  # type: ignore[arg-type]

        yield update


DEFAULT_BUDGET = 90.0


@click.command()
@click.option(
    "--budget", default=DEFAULT_BUDGET, show_default=True, type=click.FloatRange(min=0),
    help="Seconds the search may take (the best configuration found so far wins).",
)  # fmt: skip
@click.option(
    "--no-tune", is_flag=True, help="Skip the search: fit the configuration given by the flags below."
)
@click.option(
    "--family", type=click.Choice(["ridge", "ease", "knn"]), default="ridge", show_default=True,
    help="With --no-tune: low-rank ridge (dense vectors), EASE or item-kNN (sparse item-item vectors).",
)  # fmt: skip
@click.option("--rank", default=64, show_default=True, help="With --no-tune: factors per item (ridge).")
@click.option(
    "--regularization", default=400.0, show_default=True, help="With --no-tune: lambda (ridge, EASE)."
)
@click.option(
    "--half-life", default=10.0, show_default=True, type=float,
    help="With --no-tune: recency half-life of the history, in interactions.",
)  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed of the validation split and the solvers.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (and the search table) as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(
    budget: float, no_tune: bool, family: str, rank: int, regularization: float, half_life: float, seed: int,
    as_json: bool, quiet: bool,
) -> None:  # fmt: skip
    """Tune the ranking model on a validation split carved from the interactions, fit the winner on all of
    them and swap its item vectors in (no reindex needed; queries keep answering meanwhile).

    The search covers EASE (lambda 0.1 ... 10,000), item-kNN and the low-rank ridge model (rank x lambda),
    the history weighting (non-positive interactions, interaction types, recency half-life) and the hybrid
    text weight (0 allowed). Run it again when interactions have changed a lot, e.g. nightly."""
    settings = Settings()
    config = None
    if no_tune:
        fam = "ease" if family == "ease" else ("knn" if family == "knn" else "ridge")
        config = manual_config(
            settings, family=fam, rank=rank, regularization=regularization, half_life=half_life
        )
    with Runtime(settings) as rt, stage_progress(enabled=not quiet and sys.stderr.isatty()) as progress:
        report = run_train(
            rt.sessions, rt.vector_store, settings, config, budget=budget, seed=seed, progress=progress
        )
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    meta = report.meta
    assert meta is not None
    if report.tuning is not None:
        _print_table(report.tuning)
        click.echo(
            f"search: {len(report.tuning.trials)} configurations in {report.search_seconds:.1f}s on "
            f"{report.tuning.validation_users:,} validation users"
            + (" (budget reached)" if report.tuning.budget_hit else "")
        )
    click.echo(
        f"trained {meta.family} ({meta.vector}) on {report.interactions:,} interactions of {report.users:,} "
        f"users and {report.items:,} items in {report.seconds:.1f}s"
    )
    click.echo(
        f"  {report.item_vectors:,} item vectors written and swapped in; text weight {meta.text_weight:g}"
    )
    if report.users_enqueued:
        click.echo(
            f"  {report.users_enqueued:,} user refreshes enqueued: the worker stores their folded vectors for "
            "this model (until then queries fold their history in)"
        )
    if report.skipped_items:
        click.echo(
            f"  skipped {report.skipped_items:,} items not synced yet (run the worker, then train again)"
        )


def _print_table(result: TuningResult, top: int = 15) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="validation NDCG@10 (best first; * = chosen)")
    for column in ("", "stage", "configuration", "ndcg@10", "seconds"):
        table.add_column(column)
    rows = result.table()
    for row in rows[:top]:
        table.add_row(
            "*" if row["chosen"] else "",
            row["stage"],
            row["config"],
            f"{row['ndcg@10']:.4f}",
            f"{row['seconds']:.2f}",
        )
    if len(rows) > top:
        table.add_row("", "", f"... {len(rows) - top} more (--json lists all)", "", "")
    Console().print(table)
