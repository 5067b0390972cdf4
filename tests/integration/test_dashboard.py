"""The dashboard over HTTP (no browser): auth, every page, the user page's history and recommendations, the
filter box, the recorded sync check and evaluation report. The browser tests are in
test_dashboard_browser.py."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dashboard_support import Server, seed_demo
from pydantic import SecretStr
from sqlalchemy import Engine, text

from conftest import truncate_all
from nearrec.api.dashboard.auth import COOKIE
from nearrec.config import Settings
from nearrec.evaluation.last import save_last

READ_KEY = "dash-read-key-0123456789"
WRITE_KEY = "dash-write-key-0123456789"
USER = "user-01"
HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def settings_mod(database_url: str, engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    truncate_all(engine)
    settings = Settings(
        database_url=SecretStr(database_url),
        data_dir=tmp_path_factory.mktemp("dash") / "data",
        embedding_model="hashing",
        api_keys=SecretStr(f"{READ_KEY}:read,{WRITE_KEY}:write"),
        _env_file=None,  # type: ignore[call-arg]
    )
    seed_demo(settings)
    return settings


@pytest.fixture(scope="module")
def server(settings_mod: Settings, engine: Engine) -> Iterator[Server]:
    with Server(settings_mod) as srv:
        yield srv
    truncate_all(engine)


@pytest.fixture
def web(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {READ_KEY}"}) as client:
        yield client


def items_of(html: str, css_class: str = "recs") -> list[str]:
    """The data-item ids inside the first element with ``css_class`` (an ol of recommendations)."""
    start = html.index(f'class="{css_class}"')
    end = html.index("</ol>", start)
    return re.findall(r'data-item="([^"]+)"', html[start:end])


def history_of(engine: Engine, user: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT it.external_id FROM interactions i JOIN users u ON u.id = i.user_id "
                "JOIN items it ON it.id = i.item_id WHERE u.external_id = :u ORDER BY i.occurred_at DESC, i.id DESC"
            ),
            {"u": user},
        )
        return [r[0] for r in rows]


def test_the_key_comes_from_a_header_a_cookie_or_once_from_the_url(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=server.url) as anon:
        page = anon.get("/dashboard")
        assert page.status_code == 401 and "API key needed" in page.text
        assert anon.get("/dashboard", params={"key": "wrong"}).status_code == 401
        first = anon.get("/dashboard/users/user-01", params={"key": READ_KEY, "page": "2"})
        assert first.status_code == 303 and first.headers["location"] == "/dashboard/users/user-01?page=2"
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert anon.get("/dashboard").status_code == 200  # the cookie now carries the key
        anon.cookies.clear()
        form = anon.post("/dashboard/login", data={"key": "nope", "next": "/dashboard/items"})
        assert form.status_code == 401 and "invalid API key" in form.text
        form = anon.post("/dashboard/login", data={"key": READ_KEY, "next": "https://elsewhere.example/"})
        assert form.status_code == 303 and form.headers["location"] == "/dashboard"  # never off-site
        assert anon.get("/dashboard/evaluation").status_code == 200
        assert anon.get("/dashboard/login").status_code == 200
        assert anon.get("/dashboard/logout").status_code == 303
        assert anon.get("/dashboard/evaluation").status_code == 401  # the cookie is gone
    assert httpx.get(f"{server.url}/dashboard", headers={"X-API-Key": WRITE_KEY}).status_code == 200
    server_side = [r for r in caplog.records if r.name.split(".")[0] in ("nearrec", "uvicorn", "fastapi")]
    assert any(r.name == "nearrec.access" for r in server_side)
    assert not [r for r in server_side if READ_KEY in r.getMessage()]  # (the client's own logs show URLs)


def test_every_page_renders(web: httpx.Client) -> None:
    overview = web.get("/dashboard")
    assert overview.status_code == 200
    assert re.search(r'id="count-items">360<', overview.text)
    assert re.search(r'id="count-users">40<', overview.text)
    assert "the stores agree" in overview.text  # the check seed_demo recorded
    assert "<svg" in overview.text and "rank" in overview.text
    for path in (
        "/dashboard/items",
        "/dashboard/items?q=tent",
        "/dashboard/users",
        "/dashboard/users?q=user-0",
    ):
        assert web.get(path).status_code == 200, path
    search = web.get("/dashboard/items", params={"q": "sku-0001"}).text
    assert 'href="/dashboard/items/sku-0001"' in search
    assert 'id="too-short"' in web.get("/dashboard/items", params={"q": "sk"}).text
    broad = web.get("/dashboard/items", params={"q": "sku-"}).text  # 360 items match: 50 listed
    assert 'id="more-matches"' in broad and broad.count('<li><a href="/dashboard/items/sku-') == 50
    assert 'id="more-matches"' not in web.get("/dashboard/users", params={"q": "user-0"}).text  # 9 users
    assert web.get("/dashboard/users/nobody").status_code == 404
    assert web.get("/dashboard/static/htmx.min.js").text.startswith("/*! htmx 2.")


def test_item_page_vector_state_and_similar_items(web: httpx.Client) -> None:
    page = web.get("/dashboard/items/sku-0001").text
    assert re.search(r'id="vector-state"><strong>current</strong>', page)
    similar = items_of(page)
    assert len(similar) == 10 and "sku-0001" not in similar
    whole = web.get("/dashboard/items/sku-0001", params={"filter": '{"category": "outdoor"}'}, headers=HX)
    assert "<html" in whole.text  # htmx without a panel named: the whole page
    partial = web.get(
        "/dashboard/items/sku-0001",
        params={"filter": '{"category": "outdoor"}'},
        headers={**HX, "HX-Target": "similar"},
    ).text
    assert "<html" not in partial and items_of(partial) and set(items_of(partial)) != set(similar)
    bad = web.get("/dashboard/items/sku-0001", params={"filter": '{"colour": 1}'}).text
    assert 'id="filter-error"' in bad and "colour" in bad


def test_user_page_history_and_recommendations(web: httpx.Client, engine: Engine) -> None:
    history = history_of(engine, USER)
    page = web.get(f"/dashboard/users/{USER}").text
    table = page[page.index('class="history"') : page.index("</table>", page.index('class="history"'))]
    assert re.findall(r'data-item="([^"]+)"', table) == history[:20]  # newest first
    second = web.get(f"/dashboard/users/{USER}", params={"page": 2}, headers={**HX, "HX-Target": "history"})
    assert re.findall(r'data-item="([^"]+)"', second.text) == history[20:40]
    seen = set(history)
    # Without JavaScript (?inline=1) the page computes every list; with it, one request per list.
    inline = web.get(f"/dashboard/users/{USER}", params={"inline": 1}).text
    assert "None of the recommended items is among the" in inline
    for method in ("text", "cf", "hybrid", "popular"):
        block = inline[inline.index(f'id="method-{method}"') :]
        recs = items_of(block)
        assert len(recs) == 10, method
        assert not seen & set(recs), method
        assert "SEEN" not in block[: block.index("</ol>")]
        lazy = web.get(f"/dashboard/users/{USER}", headers={**HX, "HX-Target": f"method-{method}"}).text
        assert "<html" not in lazy and items_of(lazy) == recs, method
        assert "none of these is in the history" in lazy
    assert "from the history (cosine" in inline  # reasons


def test_the_page_loads_each_list_on_its_own(web: httpx.Client, engine: Engine) -> None:
    page = web.get(f"/dashboard/users/{USER}").text
    placeholders = re.findall(r'<div class="method loading" id="method-(\w+)" hx-get="([^"]+)"', page)
    assert [m for m, _ in placeholders] == ["text", "cf", "hybrid", "popular"]
    assert 'data-item="' not in page[page.index('id="recs"') :]  # no list computed for the page itself
    assert f"checked against the {len(set(history_of(engine, USER)))} items this user has seen" in page
    assert "inline=1" in page  # the link a browser without JavaScript shows
    filtered = web.get(
        f"/dashboard/users/{USER}",
        params={"filter": '{"category": "kitchen"}'},
        headers={**HX, "HX-Target": "recs"},
    ).text
    url = re.findall(r'id="method-text" hx-get="([^"]+)"', filtered)[0].replace("&amp;", "&")
    assert "kitchen" in url  # each placeholder asks for its list under the panel's filter
    one = web.get(url, headers={**HX, "HX-Target": "method-text"}).text
    with engine.connect() as conn:
        categories = dict(conn.execute(text("SELECT external_id, attributes->>'category' FROM items")).all())
    assert items_of(one) and {categories[i] for i in items_of(one)} == {"kitchen"}
    unknown = web.get(f"/dashboard/users/{USER}", headers={**HX, "HX-Target": "method-nope"})
    assert unknown.status_code == 404 and "unknown method" in unknown.text


def test_the_filter_box_changes_the_lists(web: httpx.Client, engine: Engine) -> None:
    headers = {**HX, "HX-Target": "recs"}
    inline = {"inline": 1}
    before = web.get(f"/dashboard/users/{USER}", params=inline, headers=headers).text
    after = web.get(
        f"/dashboard/users/{USER}", params={"filter": '{"category": "kitchen"}', **inline}, headers=headers
    )
    text_before, text_after = items_of(before), items_of(after.text)
    assert text_after and text_after != text_before
    with engine.connect() as conn:
        categories = dict(conn.execute(text("SELECT external_id, attributes->>'category' FROM items")).all())
    assert {categories[i] for i in text_after} == {"kitchen"}
    diverse = web.get(f"/dashboard/users/{USER}", params={"diversity": "0.9", **inline}, headers=headers).text
    assert items_of(diverse) and not set(history_of(engine, USER)) & set(items_of(diverse))


def test_evaluation_page_shows_the_last_saved_report(web: httpx.Client, settings_mod: Settings) -> None:
    assert 'id="no-report"' in web.get("/dashboard/evaluation").text
    report = {
        "dataset": {"test_users": 12, "split": "temporal", "k": 10},
        "settings": {},
        "methods": {
            "popularity": {"ndcg@10": 0.1, "recall@10": 0.2, "ms_per_query": 1.5},
            "hybrid": {"ndcg@10": 0.3, "recall@10": 0.4, "ms_per_query": 3.0},
        },
        "timings": {"load": 1.0},
    }
    path = save_last(report, settings_mod.data_dir)
    assert path == Path(settings_mod.data_dir) / "reports" / "last-evaluate.json"
    page = web.get("/dashboard/evaluation").text
    assert 'id="eval-table"' in page and "0.3000" in page and "<svg" in page
    path.unlink()


def test_the_overview_stats_are_loaded_when_the_server_starts(settings_mod: Settings, tmp_path: Path) -> None:
    """The first overview after a start does not wait for the table scans: the server loads them itself."""
    from starlette.testclient import TestClient

    from nearrec.api.app import create_app

    app = create_app(settings_mod.model_copy(update={"data_dir": tmp_path / "data"}), run_worker=False)
    with TestClient(app):  # runs the lifespan; no request is made
        deadline = time.monotonic() + 60
        while (stats := app.state.dashboard_stats.cached()) is None:
            assert time.monotonic() < deadline, "the overview's stats were not loaded at start"
            time.sleep(0.05)
        assert stats.counts.items > 0 and stats.counts.interactions > 0


def test_every_dashboard_route_was_requested(server: Server) -> None:
    """Runs last: the tests above requested every page route (as the app's latency histogram recorded it),
    and none answered with a server error."""
    from http_support import served_routes

    routes = {(m, p) for m, p in served_routes(server.app) if p.startswith("/dashboard")}
    assert len(routes) >= 9
    seen: set[tuple[str, str]] = set()
    for metric in server.app.state.metrics.request_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.value > 0:
                labels = sample.labels
                assert not labels["status"].startswith("5"), labels
                seen.add((labels["method"], labels["route"]))
    assert not routes - seen, f"dashboard routes no test requested: {sorted(routes - seen)}"
