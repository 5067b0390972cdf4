"""Idempotent events: how a row without an ``event_id`` is told apart from its repeats.

Every interaction gets a key (a uuid, unique in Postgres): from its ``event_id`` when it has one, else from its
content (user, item, type, value, timestamp). Re-loading a file therefore inserts nothing, while two events
that differ in any of these (e.g. two timestamps) are both kept. Rows without a timestamp would all look alike,
so their key also holds their occurrence number among identical rows of the same file (or request): a file
with the same untimed row three times loads three events, and loading it again adds none. Identical rows
WITH a timestamp are one event (counted as unchanged). The key itself is computed by Postgres from these
columns (:mod:`nearrec.postgres.interactions`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

from nearrec.ingest.records import InteractionRecord


class EventCounter:
    """Numbers the repeats of untimed rows without an event id within one file (or one request)."""

    def __init__(self) -> None:
        self._seen: Counter[Hashable] = Counter()

    def occurrence(self, record: InteractionRecord) -> int | None:
        """0 for the first such row, 1 for its first repeat, ...; None when the row has a timestamp or an
        event id (its key does not need one)."""
        if record.timestamp is not None or record.event_id is not None:
            return None
        key = (record.user_id, record.item_id, record.type, record.value)
        n = self._seen[key]
        self._seen[key] = n + 1
        return n
