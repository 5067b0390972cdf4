"""`nearrec train`: learn the collaborative model and write the "cf" vectors (see nearrec.jobs.train)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from nearrec.config import Settings
from nearrec.jobs.train import train as run_train
from nearrec.model.cf import CFConfig
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


@click.command()
@click.option(
    "--rank", default=CFConfig.rank, show_default=True, help="Factors per item (cf vector size - 1)."
)
@click.option(
    "--regularization", default=CFConfig.regularization, show_default=True, help="Ridge penalty (lambda)."
)
@click.option(
    "--half-life",
    default=CFConfig.half_life,
    show_default=True,
    type=float,
    help="Recency half-life of a user's cf history, in interactions.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the sparse SVD (reproducible factors).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(rank: int, regularization: float, half_life: float, seed: int, as_json: bool, quiet: bool) -> None:
    """Train the collaborative model on every interaction and store the items' "cf" vectors.

    Recommendations then default to the hybrid method (cf + text). Run it again when interactions have
    changed a lot, e.g. nightly."""
    settings = Settings()
    config = CFConfig(rank=rank, regularization=regularization, half_life=half_life)
    with Runtime(settings) as rt, stage_progress(enabled=not quiet and sys.stderr.isatty()) as progress:
        report = run_train(rt.sessions, rt.vector_store, settings, config, seed=seed, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    assert report.meta is not None
    click.echo(
        f"trained cf (rank {report.meta.rank}) on {report.interactions:,} interactions of {report.users:,} "
        f"users and {report.items:,} items in {report.seconds:.1f}s"
    )
    click.echo(f"  {report.item_vectors:,} item cf vectors written")
    if report.skipped_items:
        click.echo(
            f"  skipped {report.skipped_items:,} items not synced yet (run the worker, then train again)"
        )
