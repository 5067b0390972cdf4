"""Reads of `nearrec train`: every interaction as parallel arrays. All SQL of training lives here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nearrec.postgres.models import Interaction

FETCH_ROWS = 50_000


@dataclass(frozen=True)
class InteractionArrays:
    """One entry per interaction, in insertion order. ``value`` is NaN where none was given."""

    user_id: npt.NDArray[np.int64]
    item_id: npt.NDArray[np.int64]
    type: list[str]
    value: npt.NDArray[np.float64]
    timestamp: npt.NDArray[np.float64]  # unix seconds

    def __len__(self) -> int:
        return int(self.user_id.shape[0])


def all_interactions(session: Session) -> InteractionArrays:
    """Every interaction (internal user and item ids), streamed from the server in chunks."""
    stmt = select(
        Interaction.user_id,
        Interaction.item_id,
        Interaction.type,
        Interaction.value,
        func.extract("epoch", Interaction.occurred_at),
    ).order_by(Interaction.id)
    users: list[int] = []
    items: list[int] = []
    types: list[str] = []
    values: list[float] = []
    times: list[float] = []
    result = session.execute(stmt.execution_options(yield_per=FETCH_ROWS))
    for user, item, kind, value, epoch in result:
        users.append(user)
        items.append(item)
        types.append(kind)
        values.append(np.nan if value is None else float(value))
        times.append(float(epoch))
    return InteractionArrays(
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        types,
        np.asarray(values, dtype=np.float64),
        np.asarray(times, dtype=np.float64),
    )
