"""The interactions file of an evaluation, read once into parallel arrays (integer codes for users and items)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nearrec.errors import InputFileError
from nearrec.ingest.readers import BadRow, Row, open_reader
from nearrec.ingest.records import InteractionOptions, RowError, parse_interaction
from nearrec.model.cf import cf_values
from nearrec.model.user_vector import UserVectorParams


@dataclass
class Interactions:
    """The interactions file as parallel arrays (integer codes for users and items) plus the raw rows."""

    rows: list[Row]
    user_codes: np.ndarray[Any, np.dtype[np.int64]]
    item_codes: np.ndarray[Any, np.dtype[np.int64]]
    users: list[str]
    items: list[str]
    positive: np.ndarray[Any, np.dtype[np.bool_]]
    timestamps: np.ndarray[Any, np.dtype[np.float64]] | None
    rejected: int = 0


def read_interactions(path: Path, options: InteractionOptions, params: UserVectorParams) -> Interactions:
    """Parse the interactions file (bad rows are counted and skipped)."""
    rows: list[Row] = []
    users: list[str] = []
    items: list[str] = []
    kinds: list[str] = []
    values: list[float] = []
    times: list[float | None] = []
    rejected = 0
    with open_reader(path) as reader:
        for line, raw in reader:
            if isinstance(raw, BadRow):
                rejected += 1
                continue
            try:
                record = parse_interaction(raw, options)
            except RowError:
                rejected += 1
                continue
            rows.append((line, raw))
            users.append(record.user_id)
            items.append(record.item_id)
            kinds.append(record.type)
            values.append(math.nan if record.value is None else record.value)
            times.append(record.timestamp)
    if not rows:
        raise InputFileError(str(path), "no valid interactions")
    user_names, user_codes = _codes(users)
    item_names, item_codes = _codes(items)
    positive = cf_values(kinds, values, params) > 0
    stamps = None if any(t is None for t in times) else np.asarray(times, dtype=np.float64)
    return Interactions(
        rows, user_codes, item_codes, user_names, item_names, positive, stamps, rejected,
    )  # fmt: skip


def _codes(ids: Sequence[str]) -> tuple[list[str], np.ndarray[Any, np.dtype[np.int64]]]:
    """Dense integer codes for external ids, in numeric order when every id is an integer (so "ties go to
    the larger item id" in the split means the numerically larger one), else in string order."""
    names = sorted(set(ids), key=int) if all(i.isascii() and i.isdigit() for i in ids) else sorted(set(ids))
    index = {name: n for n, name in enumerate(names)}
    return names, np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids))


__all__ = ["Interactions", "read_interactions"]
