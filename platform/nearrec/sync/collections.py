"""The two collections the worker maintains, their model check, and the item payload schema (from the
attribute schema in Postgres).

Readers and writers always use the alias names ``<prefix>items`` / ``<prefix>users``; each alias points to a
physical collection ``<alias>_<timestamp>`` so that ``nearrec reindex`` can build a replacement and swap it
in atomically. The embedding model id is stored in the collection metadata (``embedding_model``): vectors of
two models are never mixed, a worker with another model refuses to run (:class:`ModelMismatchError`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from nearrec.errors import ModelMismatchError
from nearrec.filter_limits import INT64
from nearrec.filters import FieldType, payload_value
from nearrec.ingest.schema import filter_types
from nearrec.postgres import schema_repo, sync_repo
from nearrec.vectors.base import VectorStore
from nearrec.vectors.payload import (
    ACTIVE,
    CONTENT_HASH,
    EXTERNAL_ID,
    FIELDS,
    ITEM_ITEM_SLOTS,
    META_ATTRIBUTES,
    META_DIM,
    META_MODEL,
    PROFILE_VECTOR,
    TEXT_VECTOR,
    TITLE,
)

log = logging.getLogger(__name__)


def physical_name(alias: str, stamp: str | None = None) -> str:
    """A new physical collection name for ``alias``: ``<alias>_<UTC timestamp>``."""
    return f"{alias}_{stamp or time.strftime('%Y%m%d%H%M%S', time.gmtime())}"


def item_vectors(dim: int) -> dict[str, int]:
    return {TEXT_VECTOR: dim}


def item_sparse_vectors() -> tuple[str, ...]:
    """The sparse vectors an items collection is created with: the item-item model's two slots."""
    return ITEM_ITEM_SLOTS


def user_vectors(dim: int) -> dict[str, int]:
    """Users carry their blended vector (``text``, queried against items) and their profile embedding
    (``profile``, kept so that a new interaction does not re-embed an unchanged profile)."""
    return {TEXT_VECTOR: dim, PROFILE_VECTOR: dim}


def check_model(store: VectorStore, name: str, model_id: str) -> None:
    """Raise :class:`ModelMismatchError` unless ``name``'s vectors were made by ``model_id``."""
    have = store.get_metadata(name).get(META_MODEL)
    if have != model_id:
        raise ModelMismatchError(
            f"collection {name!r} holds vectors of embedding model {have!r}, but {model_id!r} is "
            "configured; run `nearrec reindex` to rebuild it with the configured model"
        )


def ensure_collections(
    session: Session, store: VectorStore, prefix_items: str, prefix_users: str, model_id: str, dim: int
) -> None:
    """Create the items and users collections (and their aliases) if missing, and check their model.

    Serialised across processes by a Postgres advisory lock held until the caller's transaction ends, so
    concurrent workers create them once."""
    sync_repo.advisory_xact_lock(session, f"nearrec_collections:{prefix_items}")
    _ensure_one(store, prefix_items, item_vectors(dim), model_id, item_sparse_vectors())
    _ensure_one(store, prefix_users, user_vectors(dim), model_id)


def _ensure_one(
    store: VectorStore, alias: str, vectors: Mapping[str, int], model_id: str, sparse: tuple[str, ...] = ()
) -> None:
    target = store.resolve_alias(alias)
    if target is None and not store.collection_exists(alias):
        target = physical_name(alias)
        store.ensure_collection(target, vectors, sparse=sparse)
        store.set_metadata(target, {META_MODEL: model_id, META_DIM: next(iter(vectors.values()))})
        store.ensure_index(target, EXTERNAL_ID, FieldType.KEYWORD)
        if alias.endswith("items"):
            store.ensure_index(target, ACTIVE, FieldType.BOOL)
        store.set_alias(alias, target)
        log.info("created collection %s (alias %s) for model %s", target, alias, model_id)
        return
    meta = store.get_metadata(alias)
    if META_MODEL not in meta and store.count(alias) == 0:
        store.set_metadata(alias, {META_MODEL: model_id, META_DIM: next(iter(vectors.values()))})
    check_model(store, alias, model_id)
    store.ensure_collection(target or alias, vectors)


# --- item payload schema -------------------------------------------------------------------------------------


@dataclass
class ItemSchema:
    """The filterable item attributes: those of the item attribute schema in Postgres
    (:mod:`nearrec.ingest.schema`) whose type a filter can use. Only these are copied into the payload and
    indexed in the store, so the number of payload indexes is bounded by NEARREC_MAX_ATTRIBUTES."""

    types: dict[str, FieldType | None] = field(default_factory=dict)
    indexed: dict[str, dict[str, FieldType]] = field(default_factory=dict)

    @classmethod
    def from_declared(cls, declared: Mapping[str, str]) -> ItemSchema:
        """From the stored schema (attribute name -> type name)."""
        schema = cls()
        schema.replace(declared)
        return schema

    @classmethod
    def load(cls, session: Session) -> ItemSchema:
        return cls.from_declared(schema_repo.load(session, "item"))

    def refresh(self, session: Session) -> None:
        """Re-read the stored schema (attributes added or removed since)."""
        self.replace(schema_repo.load(session, "item"))

    def replace(self, declared: Mapping[str, str]) -> None:
        self.types = filter_types(declared)

    def filterable(self) -> dict[str, FieldType]:
        return {k: t for k, t in self.types.items() if t is not None}

    def ensure_indexes(self, store: VectorStore, collection: str) -> None:
        """Create the payload indexes this collection still lacks (one call per new field), and record the
        filterable attributes in the collection metadata (exactly the schema's: a dropped attribute goes)."""
        done = self.indexed.setdefault(collection, {})
        wanted = self.filterable()
        changed = set(done) != set(wanted)
        for key, ftype in wanted.items():
            if done.get(key) != ftype:
                store.ensure_index(collection, key, ftype)
                done[key] = ftype
                changed = True
        for key in set(done) - set(wanted):
            del done[key]
        if changed:
            store.set_metadata(collection, {META_ATTRIBUTES: _as_names(done)})

    def payload(
        self,
        external_id: str,
        content_hash: str,
        active: bool,
        attributes: Mapping[str, Any],
        title: str | None,
    ) -> dict[str, Any]:
        """The payload of an item point: nearrec's keys, every filterable schema attribute holding scalars or
        lists of scalars (as :func:`nearrec.filters.payload_value` stores them), the title, and under
        ``FIELDS`` the attributes the top level does not hold unchanged, so that a query answers from the
        point alone (:func:`nearrec.vectors.payload.answer_fields`)."""
        out: dict[str, Any] = {}
        types = self.types
        for key, value in attributes.items():
            if key not in types or types[key] is None or not _storable(value):
                continue
            out[key] = payload_value(value, types[key])
        extra = {k: v for k, v in attributes.items() if not (k in out and _same(out[k], v))}
        if _portable(extra):  # else no FIELDS: a query asking for fields reads the row from Postgres
            out[FIELDS] = extra
        out[TITLE] = title
        out[EXTERNAL_ID] = external_id
        out[CONTENT_HASH] = content_hash
        out[ACTIVE] = 1 if active else 0
        return out


def attribute_types(store: VectorStore, collection: str) -> dict[str, FieldType] | None:
    """The filterable item attributes recorded in the collection metadata (None: nothing recorded yet)."""
    recorded = store.get_metadata(collection).get(META_ATTRIBUTES)
    if not isinstance(recorded, dict):
        return None
    return {k: FieldType(v) for k, v in recorded.items() if v in _FIELD_TYPES}


def _as_names(types: Mapping[str, FieldType]) -> dict[str, str]:
    return {k: t.value for k, t in types.items()}


_FIELD_TYPES = frozenset(t.value for t in FieldType)


def _same(stored: Any, raw: Any) -> bool:
    """True when a top-level payload value is the attribute's JSON value unchanged (types included: True
    stored as 1, or 3 as 3.0, is not)."""
    if type(stored) is not type(raw):
        return False
    if isinstance(raw, list):
        return len(stored) == len(raw) and all(_same(a, b) for a, b in zip(stored, raw, strict=True))
    return bool(stored == raw)


def _portable(value: Any) -> bool:
    """True when the stores keep ``value`` (JSON) unchanged: integers within 64 bits, finite floats."""
    if isinstance(value, dict):
        return all(_portable(v) for v in value.values())
    if isinstance(value, list):
        return all(_portable(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return INT64[0] <= value <= INT64[1]
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | bool)


def _storable(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return bool(value) and all(_storable_scalar(v) for v in value)
    return _storable_scalar(value)


def _storable_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value == value  # NaN is not storable
