"""`nearrec evaluate`: offline evaluation of every method through the real pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import get_args

import click

from nearrec.cli.train_cmd import stage_progress
from nearrec.config import Settings
from nearrec.evaluation.last import save_last
from nearrec.evaluation.pipeline import DEFAULT_METHODS, EvalOptions, EvalReport, run_evaluation
from nearrec.jobs.train import manual_config
from nearrec.query.methods import METHODS, Method, is_method


def _methods(value: str) -> tuple[Method, ...]:
    names = tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))
    good = tuple(m for m in names if is_method(m))
    bad = [m for m in names if not is_method(m)]
    if bad or not names:
        raise click.BadParameter(
            f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}"
        )
    return good


@click.command()
@click.option(
    "--items", "items_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--interactions", "interactions_file", required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)  # fmt: skip
@click.option("--users", "users_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["temporal", "random"]), default="temporal", show_default=True)
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000), help="List length.")
@click.option(
    "--methods", default=",".join(DEFAULT_METHODS), show_default=True, help="Comma-separated methods."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG bar chart.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random split and of the cf model.")
@click.option(
    "--list-columns", default="genres", show_default=True, help="Comma-separated item columns holding lists."
)
@click.option(
    "--default-type", default="rating", show_default=True, help="Interaction type of rows without one."
)
@click.option(
    "--budget", default=90.0, show_default=True, type=click.FloatRange(min=0), help="Search seconds."
)
@click.option(
    "--no-tune", is_flag=True, help="Train the ridge model with the --cf-* values instead of tuning."
)
@click.option("--cf-rank", default=64, show_default=True)
@click.option("--cf-regularization", default=400.0, show_default=True)
@click.option("--cf-half-life", default=10.0, show_default=True, type=float)
@click.option(
    "--backends",
    help="Comma-separated embedding backends to compare (e.g. torch,onnx,onnx-int8): one evaluation each.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def evaluate(
    items_file: Path, interactions_file: Path, users_file: Path | None, split: str, k: int, methods: str,
    out: Path | None, plot: Path | None, seed: int, list_columns: str, default_type: str, budget: float,
    no_tune: bool, cf_rank: int, cf_regularization: float, cf_half_life: float, backends: str | None,
    quiet: bool,
) -> None:  # fmt: skip
    """Hold out each user's last positive interaction, load the rest through ingest + sync + train into a
    scratch database and scratch collections, train (tuning by default), and score every method's top-k
    through the query service, beside offline EASE and popularity computed in numpy on the same split.

    Positives are ratings >= NEARREC_RATING_THRESHOLD (or interaction types with a positive weight).
    With --backends, the whole evaluation runs once per embedding backend and a last table compares their
    NDCG; --out and --plot then write one file per backend (``report-onnx.json``...)."""
    from rich.console import Console

    from nearrec.evaluation import report as present

    settings = Settings()
    options = EvalOptions(
        items=items_file,
        interactions=interactions_file,
        users=users_file,
        split="random" if split == "random" else "temporal",
        k=k,
        methods=_methods(methods),
        seed=seed,
        list_columns=frozenset(c.strip() for c in list_columns.split(",") if c.strip()),
        default_type=default_type,
        cf=manual_config(settings, rank=cf_rank, regularization=cf_regularization, half_life=cf_half_life)
        if no_tune
        else None,
        budget=budget,
    )
    names = _backends(backends) if backends else (settings.embedding_backend,)
    results = {}
    for name in names:
        if len(names) > 1:
            click.echo(f"embedding backend {name}")
        with stage_progress(enabled=not quiet and sys.stderr.isatty()) as progress:
            result = run_evaluation(
                settings.model_copy(update={"embedding_backend": name}), options, progress=progress
            )
        results[name] = result
        _present(result)
        click.echo(f"saved for the dashboard: {save_last(result.to_dict(), settings.data_dir)}")
        suffix = f"-{name}" if len(names) > 1 else ""
        if out is not None:
            present.write_json(result, out.with_stem(out.stem + suffix))
            click.echo(f"wrote {out.with_stem(out.stem + suffix)}")
        if plot is not None:
            present.write_plot(result, plot.with_stem(plot.stem + suffix))
            click.echo(f"wrote {plot.with_stem(plot.stem + suffix)}")
    if len(results) > 1:
        Console().print(present.backends_table(results))


def _present(result: EvalReport) -> None:
    """The served table, the offline baselines, the model the evaluation served and the stage timings."""
    from rich.console import Console

    from nearrec.evaluation import report as present

    Console().print(present.table(result))
    offline = present.offline_table(result)
    if offline is not None:
        Console().print(offline)
    model = result.settings.get("model")
    if model:
        click.echo(f"served model: {json.dumps(model['config'])}")
        if "validation_ndcg@10" in model:
            click.echo(
                f"  tuned in {model['search_seconds']:.1f}s over {model['configurations_tried']} configurations, "
                f"validation NDCG@10 {model['validation_ndcg@10']:.4f}"
            )
    if "offline_ease" in result.settings:
        click.echo(f"offline ease: {json.dumps(result.settings['offline_ease'])}")
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.timings.items())
    click.echo(f"timings: {timings}")


def _backends(value: str) -> tuple[str, ...]:
    known = get_args(Settings.model_fields["embedding_backend"].annotation)
    names = tuple(dict.fromkeys(b.strip() for b in value.split(",") if b.strip()))
    bad = [b for b in names if b not in known]
    if bad or not names:
        raise click.BadParameter(
            f"unknown backend(s) {', '.join(bad) or '(none)'}; choose from {', '.join(known)}",
            param_hint="--backends",
        )
    return names
