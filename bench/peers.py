"""A tuned implicit-ALS peer on the split `nearrec evaluate` uses (MovieLens-100k, last positive by time held out).

    .venv/bin/pip install implicit   # not a nearrec dependency: only this comparison needs it
    .venv/bin/python bench/peers.py

ALS is tuned the way nearrec's tuner tunes its families: on a validation split carved from the training part
(nearrec.model.validation.carve_validation: each user's last positive), over factors x regularization x
confidence alpha x (positives only | every rating); the best configuration is refitted on the whole training
part and scored on the test users (NDCG@10, seen items excluded). Compare with `bench/quality.py`'s served
default and offline EASE on the same split. This is the measurement behind leaving ALS out of the tuner's
search: it does not earn its place there.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from nearrec.config import Settings  # noqa: E402
from nearrec.evaluation.dataset import read_interactions  # noqa: E402
from nearrec.evaluation.pipeline import EvalOptions, split_interactions  # noqa: E402
from nearrec.ingest.records import InteractionOptions  # noqa: E402
from nearrec.model.ease import binary_matrix  # noqa: E402
from nearrec.model.user_vector import UserVectorParams  # noqa: E402
from nearrec.model.validation import carve_validation, ndcg_of_targets  # noqa: E402
from nearrec.model.weighting import Interactions  # noqa: E402

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens-100k"
GRID = list(
    itertools.product(
        (8, 16, 32, 64, 128), (0.001, 0.01, 0.1, 1.0, 10.0), (0.3, 1.0, 10.0, 40.0), (True, False)
    )
)


def als_ndcg(train: Interactions, users: np.ndarray, targets: np.ndarray, config: tuple) -> float:  # type: ignore[type-arg]
    import implicit

    factors, reg, alpha, positives_only = config
    keep = train.positive if positives_only else np.ones(train.user_idx.size, dtype=bool)
    x = binary_matrix(train.user_idx[keep], train.item_idx[keep], train.n_users, train.n_items)
    model = implicit.als.AlternatingLeastSquares(
        factors=factors, regularization=reg, alpha=alpha, iterations=15, random_state=0
    )
    model.fit(sp.csr_matrix(x, dtype=np.float32), show_progress=False)
    scores = np.asarray(model.user_factors)[users] @ np.asarray(model.item_factors).T
    seen = sp.csr_matrix(binary_matrix(train.user_idx, train.item_idx, train.n_users, train.n_items)[users])
    return float(ndcg_of_targets(scores.astype(np.float64), seen, targets).mean())


def main() -> None:
    try:
        import implicit  # noqa: F401
    except ImportError:
        sys.exit("needs the implicit package: .venv/bin/pip install implicit")
    if not (MOVIELENS / "interactions.csv").is_file():
        sys.exit(f"MovieLens not found at {MOVIELENS}")
    threadpool_limits(1, "blas")  # implicit's own advice
    params = UserVectorParams.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    events = MOVIELENS / "interactions.csv"
    data = read_interactions(events, InteractionOptions(default_type="rating"), params)
    split = split_interactions(data, EvalOptions(items=MOVIELENS / "items.csv", interactions=events))
    n_users, n_items = int(data.user_codes.max()) + 1, int(data.item_codes.max()) + 1
    m = split.train_mask
    assert data.timestamps is not None
    train = Interactions(
        data.user_codes[m], data.item_codes[m], ["rating"] * int(m.sum()), data.positive[m],
        data.timestamps[m], n_users, n_items,
    )  # fmt: skip
    validation = carve_validation(train, 0)
    inner = train.subset(validation.train_mask)
    started = time.perf_counter()
    scored = [(als_ndcg(inner, validation.users, validation.items, c), c) for c in GRID]
    best_val, best = max(scored, key=lambda t: t[0])
    print(f"ALS search: {len(GRID)} configurations in {time.perf_counter() - started:.0f}s")
    print(
        f"best on validation: factors {best[0]}, regularization {best[1]}, alpha {best[2]}, "
        f"{'positives only' if best[3] else 'every rating'} (validation NDCG@10 {best_val:.4f})"
    )
    test = als_ndcg(train, split.test_users, split.test_items, best)
    print(
        f"tuned implicit ALS, test NDCG@10 {test:.4f} (compare bench/quality.py: served default, offline EASE)"
    )


if __name__ == "__main__":
    main()
