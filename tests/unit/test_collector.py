"""The server's garbage-collector settings (nearrec.api.collector)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from nearrec.api import collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_start_up_left_and_spaces_young_collections(restored_gc: None) -> None:
    gc.unfreeze()
    survivors = [[n] for n in range(1000)]  # start-up state: long-lived container objects
    collector.settle()
    assert gc.get_freeze_count() >= len(survivors)
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD
    assert gc.is_tracked([])  # objects made after start are still tracked, so cycles among them are collected


def test_cyclic_garbage_is_still_collected_after_settle(restored_gc: None) -> None:
    collector.settle()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
