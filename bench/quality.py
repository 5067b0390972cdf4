"""Recommendation quality of the default `nearrec train` + query path, against offline baselines.

    .venv/bin/python bench/quality.py [--skip-movielens] [--budget 90]

For MovieLens-100k (../shared/datasets/movielens-100k, skipped when absent) and the two synthetic logs of
nearrec.model.synthetic (sequential co-occurrence: item-item must win; low-rank taste: factors must win), runs
`nearrec evaluate`'s pipeline (scratch database on NEARREC_DATABASE_URL's server, else 127.0.0.1:5432; embedded
vector store; temporal leave-last-out) and prints, per data set: the served default (hybrid) NDCG@10, offline
tuned EASE and popularity on the same split, the model the tuner chose, the tuning time, and the ratio of the
default method's per-query latency to the text method's (in-process, same run). Synthetic items get
meaningless text (hashing embedder); MovieLens uses the configured sentence model.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from pydantic import SecretStr  # noqa: E402

from nearrec.config import Settings  # noqa: E402
from nearrec.embedding.hashing import HashingEmbedder  # noqa: E402
from nearrec.evaluation.pipeline import EvalOptions, EvalReport, run_evaluation  # noqa: E402
from nearrec.model import synthetic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO.parent / "shared" / "datasets" / "movielens-100k"
METHODS = ("popular", "text", "hybrid")


def write_log(log: synthetic.SyntheticLog, folder: Path) -> tuple[Path, Path]:
    items, interactions = folder / "items.csv", folder / "interactions.csv"
    with open(items, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "text"])
        for i in range(log.n_items):
            w.writerow([i, f"item {i}", f"item number {i} of the catalog"])
    with open(interactions, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "value", "timestamp"])
        for u, i, t in zip(
            log.user_idx.tolist(), log.item_idx.tolist(), log.timestamps.tolist(), strict=True
        ):
            w.writerow([u, i, 5, 1_600_000_000 + int(t)])
    return items, interactions


def settings() -> Settings:
    url = os.environ.get("NEARREC_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    return Settings(database_url=SecretStr(url), _env_file=None)  # type: ignore[call-arg]


def line(name: str, report: EvalReport) -> str:
    m = report.methods
    ratio = m["hybrid"]["p50_ms"] / max(m["text"]["p50_ms"], 1e-9)
    model = report.settings.get("model") or {}
    chosen = model.get("config", {})
    return (
        f"{name:<22} served default {m['hybrid']['ndcg@10']:.4f} | offline EASE {m['offline ease']['ndcg@10']:.4f}"
        f" | popularity {m['offline popularity']['ndcg@10']:.4f} (served {m['popular']['ndcg@10']:.4f})"
        f" | chosen {chosen.get('family')} text {chosen.get('text_weight')}"
        f" | tuning {report.timings.get('train: search', 0.0):.1f}s (train {report.timings.get('train', 0.0):.1f}s)"
        f" | p50 default/text {m['hybrid']['p50_ms']:.1f}/{m['text']['p50_ms']:.1f} ms = {ratio:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--budget", type=float, default=90.0)
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory(prefix="nearrec-quality-") as tmp:
        for log in (synthetic.sequential(), synthetic.low_rank()):
            folder = Path(tmp) / log.family
            folder.mkdir()
            items, interactions = write_log(log, folder)
            options = EvalOptions(items=items, interactions=interactions, methods=METHODS, budget=args.budget)
            report = run_evaluation(settings(), options, embedder=HashingEmbedder(64))
            lines.append(line(f"synthetic ({'sequential' if log.family == 'ease' else 'low-rank'})", report))
            print(lines[-1], flush=True)
    if not args.skip_movielens and (MOVIELENS / "items.csv").is_file():
        options = EvalOptions(
            items=MOVIELENS / "items.csv", interactions=MOVIELENS / "interactions.csv", methods=METHODS,
            budget=args.budget,
        )  # fmt: skip
        report = run_evaluation(settings(), options)
        lines.append(line("movielens-100k", report))
        print(lines[-1], flush=True)
    print("\n".join(["", "summary:", *lines]))


if __name__ == "__main__":
    main()
