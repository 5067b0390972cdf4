"""The dashboard in a real headless Chromium (Debian's ``chromium`` package, driven over the DevTools
protocol by cdp.py): every page renders with no console error and no request leaving 127.0.0.1, the user
page shows the right history and recommendations, and the filter box, the pager and the slider work.

Skipped, with the reason, where no Chromium is installed (``apt-get install chromium``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from cdp import Browser, PageLog, chromium_path
from dashboard_support import Server, seed_demo
from pydantic import SecretStr
from sqlalchemy import Engine, text

from conftest import truncate_all
from nearrec.config import Settings
from nearrec.evaluation.last import save_last

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium, or set NEARREC_CHROMIUM)"
)
READ_KEY = "browser-read-key-0123456789"
USER = "user-05"
REPORT = {
    "dataset": {"test_users": 40, "split": "temporal", "k": 10},
    "settings": {},
    "methods": {
        "popularity": {"ndcg@10": 0.05, "ms_per_query": 1.0},
        "hybrid": {"ndcg@10": 0.2, "ms_per_query": 2.0},
    },
    "timings": {},
}

LOADED = "document.querySelectorAll('#recs .method > ol.recs').length === 4"
"""Every list of the user page arrived (each loads with its own request into a placeholder that has no list;
not the placeholders' class, which htmx briefly swaps for the replaced element's while it settles)."""
SWAPPED = f"!document.querySelector('#method-text').dataset.old && {LOADED}"
"""The recommendations panel was replaced (the old one carried data-old) and its lists have all loaded."""


@pytest.fixture(scope="module")
def server(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    truncate_all(engine)
    settings = Settings(
        database_url=SecretStr(database_url),
        data_dir=tmp_path_factory.mktemp("dash-browser") / "data",
        embedding_model="hashing",
        api_keys=SecretStr(f"{READ_KEY}:read"),
        _env_file=None,  # type: ignore[call-arg]
    )
    seed_demo(settings)
    save_last(REPORT, settings.data_dir)
    with Server(settings) as srv:
        yield srv
    truncate_all(engine)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as b:
        b.goto(f"{server.url}/dashboard?key={READ_KEY}")  # once: the answer sets the cookie and drops the key
        assert b.evaluate("location.search") == ""
        yield b


def assert_clean(b: Browser, expected_errors: tuple[str, ...] = ()) -> None:
    assert b.log.console_errors == list(expected_errors)
    hosts = {urlparse(u).hostname for u in b.log.requests if not u.startswith(("data:", "about:"))}
    assert hosts == {"127.0.0.1"}, b.log.requests


def dom_items(b: Browser, selector: str) -> list[str]:
    return list(
        b.evaluate(f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.dataset.item)")
    )


@pytest.mark.parametrize(
    "path, marker",
    [
        ("/dashboard", "#count-items"),
        ("/dashboard/items", "#matches"),
        ("/dashboard/items?q=coffee", "#semantic ol.recs li"),
        ("/dashboard/items/sku-0001", "#similar ol.recs li[data-item]"),
        ("/dashboard/users", "#users li a"),
        (f"/dashboard/users/{USER}", "#method-hybrid li[data-item]"),
        ("/dashboard/evaluation", "#eval-table svg, #eval-table + section svg"),
        ("/dashboard/users/nobody", "#error"),
    ],
)
def test_every_page_renders_offline_without_console_errors(
    browser: Browser, server: Server, path: str, marker: str
) -> None:
    browser.log = PageLog()
    browser.goto(server.url + path)
    assert browser.wait_for(f"document.querySelector({json.dumps(marker)}) !== null")
    assert browser.evaluate("typeof htmx") == "object"  # the vendored script loaded and ran
    # An unknown user is a 404 page, which the browser reports as such (and nothing else).
    status_404 = (
        f"{server.url}{path}: Failed to load resource: the server responded with a status of 404 (Not Found)"
    )
    assert_clean(browser, (status_404,) if path.endswith("/nobody") else ())


def test_user_page_history_recommendations_and_filter(
    browser: Browser, server: Server, engine: Engine
) -> None:
    with engine.connect() as conn:
        history = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT it.external_id FROM interactions i JOIN users u ON u.id = i.user_id JOIN items it "
                    "ON it.id = i.item_id WHERE u.external_id = :u ORDER BY i.occurred_at DESC, i.id DESC"
                ),
                {"u": USER},
            )
        ]
        category = dict(conn.execute(text("SELECT external_id, attributes->>'category' FROM items")).all())
    browser.log = PageLog()
    browser.goto(f"{server.url}/dashboard/users/{USER}")
    assert dom_items(browser, "table.history tbody tr") == history[:20]
    assert browser.wait_for(LOADED)
    for method in ("text", "cf", "hybrid", "popular"):
        recs = dom_items(browser, f"#method-{method} li[data-item]")
        assert len(recs) == 10 and not set(recs) & set(history), method
    assert browser.evaluate("document.querySelectorAll('#recs li.seen').length") == 0
    assert (
        browser.evaluate("document.querySelectorAll('#recs .seen-check.good').length") == 5
    )  # panel + lists
    assert "checked against" in browser.evaluate("document.querySelector('#seen-total').innerText")
    before = dom_items(browser, "#method-text li[data-item]")

    # The filter box: type a filter, submit; htmx swaps the panel in place (no navigation).
    browser.evaluate("window.__same_page = true; document.querySelector('#method-text').dataset.old = 'yes'")
    browser.evaluate(
        "document.querySelector('#recs-form input[name=filter]').value = '{\"category\": \"garden\"}';"
        "document.querySelector('#recs-form button').click()"
    )
    browser.wait_for(SWAPPED)
    after = dom_items(browser, "#method-text li[data-item]")
    assert after != before and {category[i] for i in after} == {"garden"}
    assert browser.evaluate("window.__same_page") is True
    assert not set(dom_items(browser, "#recs li[data-item]")) & set(history)

    # The pager swaps the history table in place.
    browser.evaluate("document.querySelector('.pager a[rel=next]').click()")
    first_row = "document.querySelector('table.history tbody tr').dataset.item"
    browser.wait_for(f"{first_row} === {json.dumps(history[20])}")
    assert dom_items(browser, "table.history tbody tr") == history[20:40]
    assert_clean(browser)


def test_diversity_slider_refreshes_the_lists(browser: Browser, server: Server) -> None:
    browser.log = PageLog()
    browser.goto(f"{server.url}/dashboard/users/{USER}")
    assert browser.wait_for(LOADED)
    browser.evaluate("window.__marker = 1; document.querySelector('#method-text').dataset.old = 'yes'")
    browser.evaluate(
        "const s = document.querySelector('#diversity'); s.value = '0.8';"
        "s.dispatchEvent(new Event('change', {bubbles: true}))"
    )
    browser.wait_for(SWAPPED)
    assert browser.evaluate("window.__marker") == 1  # swapped in place
    assert len(dom_items(browser, "#method-text li[data-item]")) == 10
    assert_clean(browser)
