"""Record options built from the settings, shared by the CLI, the HTTP API and library callers."""

from __future__ import annotations

import time
from typing import Any

from nearrec.config import Settings
from nearrec.ingest.records import InteractionOptions, ItemOptions, UserOptions


def interaction_options(settings: Settings, default_type: str = "view", **kw: Any) -> InteractionOptions:
    """The configured interaction types, and the latest accepted timestamp (now + the allowed skew)."""
    return InteractionOptions(
        default_type=default_type,
        types=frozenset(settings.interaction_weights),
        max_timestamp=time.time() + settings.max_future_skew_seconds,
        **kw,
    )


def request_item_options(settings: Settings) -> ItemOptions:
    """Options for one item sent by a request: at most a handful of new attributes at once."""
    return ItemOptions(
        max_text_chars=settings.max_text_chars,
        max_new_attributes=settings.max_new_attributes_per_request,
    )


def request_user_options(settings: Settings) -> UserOptions:
    return UserOptions(
        max_text_chars=settings.max_text_chars,
        max_new_attributes=settings.max_new_attributes_per_request,
    )
