"""Paging past banned ids the store filter could not hold (nearrec.query.retrieval.next_page)."""

from __future__ import annotations

from nearrec.query.retrieval import next_page


def test_a_page_mostly_of_banned_ids_asks_for_enough_at_once() -> None:
    # 50 fetched, 47 of them banned: 7 more results at a keep rate of 3/50 need ~117 candidates, x1.5
    assert next_page(50, missing=7, rest_left=3953, fetched=50, dropped=47) == 175


def test_it_at_least_doubles() -> None:
    assert next_page(50, missing=1, rest_left=3000, fetched=50, dropped=1) == 100


def test_it_never_asks_beyond_what_surely_completes_the_list() -> None:
    # only 20 banned ids are left: 5 missing + 20 candidates are certain to hold 5 allowed ones
    assert next_page(50, missing=5, rest_left=20, fetched=50, dropped=45) == 25


def test_a_page_with_no_result_kept_still_grows() -> None:
    assert next_page(50, missing=10, rest_left=5000, fetched=50, dropped=50) == 750


def test_more_drops_than_banned_ids_left_still_asks_for_the_missing_ones() -> None:
    assert next_page(50, missing=4, rest_left=-3, fetched=50, dropped=48) == 4
