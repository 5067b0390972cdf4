"""What an ingestion did: the counts every entry point prints or returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nearrec.ingest.records import Rejection

Kind = Literal["items", "users", "interactions"]


@dataclass
class Summary:
    """What an ingestion did. ``read = inserted + updated + unchanged + rejected``; ``unchanged`` counts
    valid records that changed nothing (identical to what is stored, a repeated event id, or superseded
    by a later record with the same id in the same batch)."""

    kind: Kind
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    pruned: int = 0
    users_created: int = 0
    items_created: int = 0
    enqueued: int = 0
    nul_stripped: int = 0  # NUL characters removed from texts and attributes
    seconds: float = 0.0
    rejections: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def loaded(self) -> int:
        """Valid records handled (written or already up to date)."""
        return self.inserted + self.updated + self.unchanged

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: Summary) -> None:
        """Add another summary's counts and rejections (the caller trims rejections it keeps)."""
        for name in ("read", "inserted", "updated", "unchanged", "rejected", "pruned", "users_created",
                     "items_created", "enqueued", "nul_stripped"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections.extend(other.rejections)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "read": self.read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }
        if self.kind == "items":
            out["pruned"] = self.pruned
        if self.kind == "interactions":
            out["users_created"] = self.users_created
            out["items_created"] = self.items_created
        out["enqueued"] = self.enqueued
        if self.kind != "interactions":
            out["nul_stripped"] = self.nul_stripped
        out["seconds"] = round(self.seconds, 3)
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["error"] = self.error
        return out
