"""The two collections the worker maintains, their model check, and the item payload schema.

Readers and writers always use the alias names ``<prefix>items`` / ``<prefix>users``; each alias points to a
physical collection ``<alias>_<timestamp>`` so that ``nearrec reindex`` can build a replacement and swap it
in atomically. The embedding model id is stored in the collection metadata (``embedding_model``): vectors of
two models are never mixed, a worker with another model refuses to run (:class:`ModelMismatchError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from nearrec.errors import ModelMismatchError
from nearrec.filters import FieldType, infer_field_type, is_valid_field_name, payload_value
from nearrec.postgres import sync_repo
from nearrec.vectors.base import VectorStore
from nearrec.vectors.payload import (
    ACTIVE,
    CONTENT_HASH,
    EXTERNAL_ID,
    META_ATTRIBUTES,
    META_DIM,
    META_MODEL,
    PROFILE_VECTOR,
    SYSTEM_KEYS,
    TEXT_VECTOR,
)

log = logging.getLogger(__name__)

_KIND_SAMPLES: dict[str, Any] = {
    "string": "",
    "integer": 0,
    "float": 0.5,
    "boolean": True,
    "null": None,
    "object": {},
    "array": {},
}


def physical_name(alias: str, stamp: str | None = None) -> str:
    """A new physical collection name for ``alias``: ``<alias>_<UTC timestamp>``."""
    return f"{alias}_{stamp or time.strftime('%Y%m%d%H%M%S', time.gmtime())}"


def item_vectors(dim: int) -> dict[str, int]:
    return {TEXT_VECTOR: dim}


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
    for alias, vectors in ((prefix_items, item_vectors(dim)), (prefix_users, user_vectors(dim))):
        _ensure_one(store, alias, vectors, model_id)


def _ensure_one(store: VectorStore, alias: str, vectors: Mapping[str, int], model_id: str) -> None:
    target = store.resolve_alias(alias)
    if target is None and not store.collection_exists(alias):
        target = physical_name(alias)
        store.ensure_collection(target, vectors)
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
    """Type of every filterable item attribute, widened as new values are seen; indexed in the store."""

    types: dict[str, FieldType | None] = field(default_factory=dict)
    indexed: dict[str, dict[str, FieldType]] = field(default_factory=dict)

    @classmethod
    def from_kinds(cls, kinds: Mapping[str, Iterable[str]]) -> ItemSchema:
        """From :func:`nearrec.postgres.sync_repo.attribute_kinds` (the JSON kinds of every attribute)."""
        schema = cls()
        for key, found in kinds.items():
            samples = [_KIND_SAMPLES.get(k, {}) for k in found if k != "null"]
            if samples and is_valid_field_name(key) and key not in SYSTEM_KEYS:
                schema.types[key] = infer_field_type(samples)
        return schema

    @classmethod
    def load(cls, session: Session) -> ItemSchema:
        return cls.from_kinds(sync_repo.attribute_kinds(session))

    def observe(self, attributes: Iterable[Mapping[str, Any]]) -> None:
        """Widen the types with the values of a batch of items."""
        values: dict[str, list[Any]] = {}
        for attrs in attributes:
            for key, value in attrs.items():
                if is_valid_field_name(key) and key not in SYSTEM_KEYS:
                    values.setdefault(key, []).append(value)
        for key, vals in values.items():
            if all(v is None or v == [] for v in vals):
                continue  # nothing to learn from
            if key not in self.types:
                self.types[key] = infer_field_type(vals)
            elif self.types[key] is not None:
                self.types[key] = infer_field_type(vals, self.types[key])

    def filterable(self) -> dict[str, FieldType]:
        return {k: t for k, t in self.types.items() if t is not None}

    def ensure_indexes(self, store: VectorStore, collection: str) -> None:
        """Create the payload indexes this collection still lacks (one call per new field), and record the
        filterable attributes in the collection metadata, where the query service reads them."""
        done = self.indexed.setdefault(collection, {})
        changed = False
        for key, ftype in self.filterable().items():
            if done.get(key) != ftype:
                store.ensure_index(collection, key, ftype)
                done[key] = ftype
                changed = True
        if changed:
            recorded = attribute_types(store, collection) or {}
            store.set_metadata(collection, {META_ATTRIBUTES: {**_as_names(recorded), **_as_names(done)}})

    def payload(
        self, external_id: str, content_hash: str, active: bool, attributes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The payload of an item point: nearrec's keys plus every attribute holding scalars or lists of
        scalars (as :func:`nearrec.filters.payload_value` stores them)."""
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            if key in SYSTEM_KEYS or not is_valid_field_name(key) or not _storable(value):
                continue
            out[key] = payload_value(value, self.types.get(key))
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


def _storable(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return bool(value) and all(_storable_scalar(v) for v in value)
    return _storable_scalar(value)


def _storable_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value == value  # NaN is not storable
