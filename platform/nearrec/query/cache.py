"""A value computed from Postgres and refreshed in the background (stale-while-revalidate).

The first read computes it (once, whatever the number of threads asking); later reads return the cached
value at once, and one background thread at a time recomputes it once it is older than ``ttl``. A slow query
(a full scan of items or interactions) therefore never lands on a request's latency after the first one.
The first read may pass its own loader (e.g. one using the request's database session, so that a request
never holds two connections); background refreshes use the loader given at construction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Refreshing(Generic[T]):
    """A value from ``load``, cached for ``ttl`` seconds and then refreshed in the background."""

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self._load = load
        self._ttl = ttl
        self._value: T | None = None
        self._at = float("-inf")
        self._lock = threading.Lock()
        self._first = threading.Lock()  # the first load happens once, however many threads ask
        self._refreshing = False

    def get(self, first_load: Callable[[], T] | None = None) -> T:
        """The cached value; when there is none yet, compute it now with ``first_load`` (default: the loader
        given at construction)."""
        with self._lock:
            value, fresh = self._value, time.monotonic() - self._at < self._ttl
            start = value is not None and not fresh and not self._refreshing
            if start:
                self._refreshing = True
        if value is None:
            with self._first:
                with self._lock:
                    value = self._value
                return value if value is not None else self._store((first_load or self._load)())
        if start:
            threading.Thread(target=self._refresh, name="nearrec-cache-refresh", daemon=True).start()
        return value

    def cached(self) -> T | None:
        """The value loaded so far (possibly stale), without loading it."""
        with self._lock:
            return self._value

    def _store(self, value: T) -> T:
        with self._lock:
            self._value, self._at = value, time.monotonic()
        return value

    def _refresh(self) -> None:
        try:
            self._store(self._load())
        except Exception as exc:  # keep serving the old value; try again after the next expiry
            log.warning("background refresh failed: %s", exc)
            with self._lock:
                self._at = time.monotonic()
        finally:
            with self._lock:
                self._refreshing = False
