"""The names nearrec gives to vectors, payload keys and collection metadata: defined here once, read by the
sync (which writes points), the query service (which filters on them) and ``nearrec sync`` (which checks them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TEXT_VECTOR = "text"
"""Named vector of an item's text embedding, and of a user's blended vector (comparable with it)."""
ITEM_ITEM_SLOTS = ("ii_a", "ii_b")
"""Sparse named vectors every items collection is created with. Created with the collection, they get a
full-scan threshold of 1 (vectors/base.py), so a FILTERED item-item query walks the inverted index; a sparse
vector added to an existing collection cannot be given that parameter and is ~50x slower under a filter.
``nearrec train`` clears the slot the live model does not use, writes the new model into it, then swaps."""
PROFILE_VECTOR = "profile"
"""Named vector of a user's profile embedding (reused while the profile is unchanged)."""

EXTERNAL_ID = "external_id"
CONTENT_HASH = "content_hash"
"""Hash of what the point was computed from; compared with Postgres to skip unchanged work."""
ACTIVE = "active"
"""Item points: 1 for an active item, 0 for a deactivated one (queries keep ``active == 1``)."""
TITLE = "nearrec:title"
"""Item points: the item's title (None when it has none), so a query answers from the hits' payload."""
FIELDS = "nearrec:fields"
"""Item points: the item's attributes that the top-level payload does not hold exactly as Postgres does (an
attribute that is not filterable, a boolean stored as 0 / 1, an integer of a float attribute...); with the
top-level ones they give every attribute of the row unchanged. A point written before these two keys existed
has neither: queries then read the rows from Postgres (``nearrec sync check --repair`` or ``nearrec reindex``
rewrites such points). Both names hold a ``:``, which no attribute name may
(:func:`nearrec.filters.is_valid_field_name`), so they never meet an attribute."""
SYSTEM_KEYS = frozenset({EXTERNAL_ID, CONTENT_HASH, ACTIVE, TITLE, FIELDS})
"""Payload keys written by nearrec; an item attribute with one of these names is not copied to the top level."""

PROFILE_HASH = "profile_hash"
"""User points: hash of the profile text the ``profile`` vector was embedded from."""
INTERACTIONS = "interactions"
"""User points: number of interactions the vector was built from."""

META_MODEL = "embedding_model"
"""Collection metadata: id of the embedding model whose vectors the collection holds."""
META_DIM = "dim"
META_ATTRIBUTES = "attributes"
"""Collection metadata: the filterable item attributes and their field types."""
META_SEARCH = "search"
"""Collection metadata: the search effort chosen per dense named vector by :mod:`nearrec.vectors.calibrate`
(``{"indexed": n, "target": r, "vectors": {"text": {"ef": 512, "recall": 0.96, ...}}}``); every adapter
applies it to the dense queries on that vector (plain, fused prefetches, MMR candidates)."""


def has_answer(payload: Mapping[str, Any], fields: bool) -> bool:
    """True when an item point carries what an answer needs: its title, and its attributes when ``fields``
    are asked for (points written before these keys existed have neither)."""
    return TITLE in payload and (not fields or FIELDS in payload)


def answer_fields(payload: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The attributes ``names`` of the item as Postgres holds them (None when absent), from a point written
    by :meth:`nearrec.sync.collections.ItemSchema.payload`: ``FIELDS`` first, else the top-level copy (then
    identical)."""
    extra = payload[FIELDS]
    return {n: extra[n] if n in extra else (None if n in SYSTEM_KEYS else payload.get(n)) for n in names}
