"""Idempotent events: how a row is told apart from its repeats.

A row with an ``event_id`` is the event of that id. A row without one gets a key (a uuid) from its content
(user, item, type, value, timestamp), unique per user in Postgres. Re-loading a file therefore inserts
nothing, while two events that differ in any of these (e.g. two timestamps) are both kept. Rows without a
timestamp would all look alike, so their key also holds their occurrence number among identical rows of the
same file (or request): a file with the same untimed row three times loads three events, and loading it
again adds none. Identical rows WITH a timestamp are one event (counted as unchanged). The key is computed
by Postgres from the staged columns (:mod:`nearrec.postgres.interactions`), or from a batch's columns by
:func:`nearrec.ingest.direct.content_keys` (the COPY path of files): the same bytes, so either path finds the
other's rows.
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
