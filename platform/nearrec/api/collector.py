"""The garbage collector of a long-running server process.

By the time the API answers, the process holds ~150,000 container objects that live for ever (modules, the
app, pydantic models, the stores' clients). CPython's full collection walks all of them: measured on the
query benchmark (20k items, 8 clients, a loaded 2-core machine), six full collections in a 4,000-request run
took 1.09 s in all and up to 322 ms each, and a young collection ran every ~4 requests. Those pauses were the
tail of the latency (p99 84-104 ms against a p50 of 5-15 ms).

So, once start-up is over: collect once, then freeze what is left (:func:`gc.freeze` moves it to a permanent
generation no collection walks), and make young collections rarer. Garbage is still collected: a request's
objects are freed by reference counting as soon as it ends, and cycles by the (now cheap) collections.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
"""Allocations between young collections (CPython's default: 700). A request allocates a few thousand
objects and frees them on return, so a young collection finds only the in-flight ones."""


def settle() -> None:
    """Collect, freeze the survivors out of later collections, and space young collections out."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


__all__ = ["settle"]
