"""The HTTP API through a real uvicorn server and the bundled client (in-process worker, embedded vectors).

Every route is tested: each test names the routes it exercises with ``@pytest.mark.route(METHOD, PATH)``; the
``server`` fixture fails a test that did not actually request a route it names (it records every request the
server answers), and :func:`test_every_route_has_a_test` fails when a route of the app has no such test.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from http_support import DOCS_ROUTES, READ_KEY, WRITE_KEY, Server, served_routes, server, wait_for  # noqa: F401
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from nearrec.api.app import create_app
from nearrec.client import Client, Event, Forbidden, InvalidRequest, NotFound, Unauthorized
from nearrec.config import Settings


@pytest.mark.route("GET", "/v1/users/{user_id}/recommendations")
@pytest.mark.route("GET", "/v1/items/{item_id}/similar")
@pytest.mark.route("POST", "/v1/search")
@pytest.mark.route("POST", "/v1/recommendations")
def test_recommend_similar_search_anonymous(server: Server) -> None:
    api = Client(server.url, READ_KEY)
    recs = api.recommend("u1", k=5, explain=True, fields=["topic"])
    assert len(recs) == 5
    assert "tea-0" not in [r.item_id for r in recs]
    assert all(r.fields["topic"] == "tea" for r in recs)
    assert recs[0].reason is not None and recs[0].reason.item_id == "tea-0"

    sim = api.similar_items("bike-2", k=3, filter={"rank": {"gte": 4}})
    assert [r.item_id.split("-")[0] for r in sim] == ["bike"] * 3
    assert all(int(r.item_id.split("-")[1]) >= 4 for r in sim)

    assert api.search("camping tent trail", k=1)[0].item_id.startswith("tent-")
    anon = api.recommend_anonymous(liked=["bike-1"], k=3)
    assert all(r.item_id.startswith("bike-") and r.item_id != "bike-1" for r in anon)


@pytest.mark.route("GET", "/v1/users/{user_id}/recommendations")
def test_errors_have_a_stable_shape(server: Server) -> None:
    api = Client(server.url, READ_KEY)
    with pytest.raises(NotFound) as nf:
        api.recommend("ghost")
    assert nf.value.code == "not_found" and nf.value.request_id
    with pytest.raises(InvalidRequest) as bad:
        api.recommend("u1", filter={"colour": "red"})
    assert bad.value.path == "filter.colour"
    with pytest.raises(InvalidRequest):
        api.recommend("u1", k=0)
    raw = httpx.get(
        f"{server.url}/v1/users/u1/recommendations",
        params={"filter": "{oops"},
        headers={"X-API-Key": READ_KEY},
    )
    assert raw.status_code == 422
    assert set(raw.json()["error"]) >= {"status", "code", "message", "path", "request_id"}


@pytest.mark.route("GET", "/v1/users/{user_id}/recommendations")
@pytest.mark.route("DELETE", "/v1/users/{user_id}")
@pytest.mark.route("GET", "/healthz")
def test_auth_scopes(server: Server) -> None:
    with pytest.raises(Unauthorized):
        Client(server.url).recommend("u1")
    with pytest.raises(Unauthorized):
        Client(server.url, "wrong-key").recommend("u1")
    with pytest.raises(Forbidden):
        Client(server.url, READ_KEY).delete_user("u1")
    assert Client(server.url, WRITE_KEY).recommend("u1", k=1)  # write implies read
    assert httpx.get(f"{server.url}/healthz").status_code == 200  # probes need no key


@pytest.mark.route("GET", "/readyz")
@pytest.mark.route("GET", "/metrics")
@pytest.mark.route("GET", "/healthz")
def test_ops_endpoints(server: Server) -> None:
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "vectors": "ok", "worker": "ok"}}
    assert Client(server.url).healthz() and httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    Client(server.url, READ_KEY).recommend("u1")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/users/{user_id}/recommendations"' in metrics
    assert "nearrec_http_request_duration_seconds_bucket" in metrics
    assert "nearrec_outbox_pending" in metrics
    rid = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
    assert rid == "abc-123"


@pytest.mark.route("POST", "/v1/interactions")
@pytest.mark.route("GET", "/v1/users/{user_id}/recommendations")
def test_posted_interaction_changes_the_next_answer(server: Server) -> None:
    reader, writer = Client(server.url, READ_KEY), Client(server.url, WRITE_KEY)
    before = reader.recommend("u1", k=5)
    assert all(r.item_id.startswith("tea-") for r in before)
    events = [Event("u1", f"tent-{i}", "purchase", event_id=f"ev-{i}") for i in range(4)]
    assert writer.add_interactions(events) == {"accepted": 4, "ignored": 0}
    assert writer.add_interactions(events[:1]) == {"accepted": 0, "ignored": 1}  # repeated event id

    def tents_first() -> bool:
        recs = reader.recommend("u1", k=3)
        return all(r.item_id.startswith("tent-") for r in recs)

    wait_for(tents_first, timeout=15)
    seen = {f"tent-{i}" for i in range(4)}
    assert not seen & {r.item_id for r in reader.recommend("u1", k=30)}

    with pytest.raises(InvalidRequest) as unknown:
        writer.add_interactions([Event("u1", "no-such-item")])
    assert unknown.value.path == "item_id"

    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'nearrec_ingested_rows_total{entity="interactions"} 4.0' in metrics
    done = re.search(r'nearrec_sync_outbox_rows_total\{outcome="done"\} ([0-9.]+)', metrics)
    assert done is not None and float(done.group(1)) >= 1  # the in-process worker synced the user
    assert 'nearrec_sync_vectors_total{action="computed",entity="user"}' in metrics


@pytest.mark.route("PUT", "/v1/items/{item_id}")
@pytest.mark.route("DELETE", "/v1/items/{item_id}")
@pytest.mark.route("PUT", "/v1/users/{user_id}")
@pytest.mark.route("DELETE", "/v1/users/{user_id}")
def test_put_and_delete_items_and_users(server: Server) -> None:
    api = Client(server.url, WRITE_KEY)
    put = api.put_item(
        "kettle-1",
        title="Gooseneck kettle",
        text="pour over kettle for green tea brewing",
        attributes={"topic": "tea", "rank": 99},
    )
    assert put["status"] == "inserted"
    assert (
        api.put_item(
            "kettle-1",
            title="Gooseneck kettle",
            text="pour over kettle for green tea brewing",
            attributes={"topic": "tea", "rank": 99},
        )["status"]
        == "unchanged"
    )
    wait_for(lambda: any(r.item_id == "kettle-1" for r in api.search("gooseneck kettle pour", k=3)))

    api.delete_item("kettle-1")
    wait_for(lambda: all(r.item_id != "kettle-1" for r in api.search("gooseneck kettle pour", k=30)))
    with pytest.raises(NotFound):
        api.delete_item("kettle-1")

    assert api.put_user("u2", profile="bicycle gears and chains")["status"] == "inserted"
    wait_for(lambda: api.recommend("u2", k=3)[0].item_id.startswith("bike-"))
    api.delete_user("u2")
    with pytest.raises(NotFound):
        api.recommend("u2")


@pytest.mark.route("GET", "/openapi.json")
@pytest.mark.route("GET", "/docs")
@pytest.mark.route("GET", "/docs/oauth2-redirect")
def test_openapi_documents_the_routes_and_the_error_shape(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["info"]["title"] == "nearrec"
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == api_routes(server.app) - DOCS_ROUTES - {("GET", "/metrics")}
    error = spec["components"]["schemas"]["ErrorOut"]
    assert set(error["properties"]) == {"status", "code", "message", "path", "request_id"}
    not_found = spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]["responses"]["404"]
    assert not_found["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    invalid = spec["paths"]["/v1/items/{item_id}"]["put"]["responses"]["422"]
    assert invalid["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # every 422 is documented as ours
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text and "swagger" in docs.text.lower()
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    assert httpx.get(f"{server.url}/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(f"{server.url}/redoc").status_code == 404  # ReDoc needs a CDN; /docs is offline
    oauth = httpx.get(f"{server.url}/docs/oauth2-redirect")
    assert oauth.status_code == 200 and "oauth2" in oauth.text.lower()


@pytest.mark.route("PUT", "/v1/items/{item_id}")
@pytest.mark.route("PUT", "/v1/users/{user_id}")
@pytest.mark.route("POST", "/v1/interactions")
@pytest.mark.route("GET", "/v1/items/{item_id}/similar")
@pytest.mark.route("POST", "/v1/recommendations")
@pytest.mark.route("POST", "/v1/search")
def test_updates_single_events_and_errors_of_each_route(server: Server) -> None:
    api = Client(server.url, WRITE_KEY)
    changed = api.put_item(
        "tea-1", title="tea 1", text="loose leaf oolong", attributes={"topic": "tea", "rank": 1}
    )
    assert changed == {"id": "tea-1", "status": "updated"}
    assert api.put_user("u1", profile="green tea")["status"] == "updated"
    assert api.put_user("u1", profile="green tea")["status"] == "unchanged"
    single = httpx.post(
        f"{server.url}/v1/interactions",
        json={"user_id": "u3", "item_id": "bike-0", "type": "view"},  # one event, not a batch
        headers={"X-API-Key": WRITE_KEY},
    )
    assert single.status_code == 200 and single.json() == {"accepted": 1, "ignored": 0}
    wait_for(lambda: api.recommend("u3", k=2)[0].item_id.startswith("bike-"))

    with pytest.raises(InvalidRequest) as no_text:
        api.put_item("empty-1", title=None, text=None)
    assert no_text.value.code == "invalid" and "no text" in no_text.value.message
    extra = write(server, "PUT", "/v1/users/u9", {"profile": "x", "colour": "red"})
    assert extra.status_code == 422 and extra.json()["error"]["path"] == "colour"
    no_events = write(server, "POST", "/v1/interactions", {"events": []})
    assert no_events.status_code == 422 and no_events.json()["error"]["code"] == "invalid"
    with pytest.raises(NotFound) as unknown_item:
        api.similar_items("no-such-item")
    assert unknown_item.value.code == "not_found"
    with pytest.raises(NotFound):
        api.recommend_anonymous(liked=["no-such-item"])
    with pytest.raises(InvalidRequest) as empty_search:
        api.search("")
    assert empty_search.value.path == "text"


@pytest.mark.route("GET", "/v1/items/{item_id}")
@pytest.mark.route("GET", "/v1/users/{user_id}")
@pytest.mark.route("GET", "/v1/users/{user_id}/interactions")
def test_items_users_and_history_read_back(server: Server) -> None:
    api = Client(server.url, READ_KEY)
    item = api.get_item("tea-2")
    assert item["title"] == "tea 2" and item["attributes"] == {"topic": "tea", "rank": 2} and item["active"]
    user = api.get_user("u1")
    assert user["id"] == "u1" and user["interactions"] == 1
    now = datetime.now(UTC)
    writer = Client(server.url, WRITE_KEY)
    writer.add_interactions(
        [Event("u5", f"bike-{i}", "view", timestamp=now - timedelta(minutes=10 - i)) for i in range(5)]
    )
    first = api.user_interactions("u5", limit=2)
    assert [e["item_id"] for e in first["items"]] == ["bike-4", "bike-3"] and first["next_offset"] == 2
    last = api.user_interactions("u5", limit=2, offset=4)
    assert [e["item_id"] for e in last["items"]] == ["bike-0"] and last["next_offset"] is None
    with pytest.raises(NotFound):
        api.get_item("nope")
    with pytest.raises(NotFound):
        api.user_interactions("nope")
    head = httpx.head(f"{server.url}/v1/items/tea-2", headers={"X-API-Key": READ_KEY})
    assert head.status_code == 200 and head.content == b""  # HEAD where GET is


@pytest.mark.route("PUT", "/v1/items/{item_id}")
@pytest.mark.route("GET", "/v1/items/{item_id}/similar")
def test_put_item_with_a_wrong_type_is_a_422_naming_the_field(server: Server) -> None:
    api = Client(server.url, WRITE_KEY)
    with pytest.raises(InvalidRequest) as info:
        api.put_item("tea-9", title="Tea", text="green tea", attributes={"topic": "tea", "rank": "cheap"})
    assert info.value.path == "rank" and "expected an integer (int), got 'cheap'" in str(info.value)
    nan = httpx.put(
        f"{server.url}/v1/items/tea-9",
        content=b'{"text": "x", "attributes": {"rank": NaN}}',
        headers={"X-API-Key": WRITE_KEY, "content-type": "application/json"},
    )
    assert nan.status_code == 422 and "rank: NaN is not a valid value" in nan.json()["error"]["message"]
    assert (
        api.put_item("tea-9", title="Tea", text="green tea", attributes={"rank": 9})["status"] == "inserted"
    )
    assert len(Client(server.url, READ_KEY).similar_items("tea-1", k=3, filter={"rank": {"gte": 9}})) <= 1


@pytest.mark.route("PUT", "/v1/items/{item_id}")
@pytest.mark.route("POST", "/v1/search")
def test_a_put_with_20000_attribute_keys_is_rejected_and_builds_no_index(
    server: Server, sessions: sessionmaker[Session]
) -> None:
    from sync_support import indexed_fields

    from nearrec.postgres import schema_repo

    api = Client(server.url, WRITE_KEY)
    attributes = {f"k{i}": i for i in range(20_000)}
    with pytest.raises(InvalidRequest, match="20,000 new attributes in one request; at most 8"):
        api.put_item("tea-0", title="Tea", text="green tea", attributes=attributes)
    with sessions() as session:
        assert set(schema_repo.load(session, "item")) == {"topic", "rank"}
    api.put_item("tea-0", title="Tea 0", text="green tea leaves", attributes={"topic": "tea", "rank": 0})
    store = server.app.state.nearrec.runtime.vector_store
    wait_for(lambda: "Tea 0" in [r.title for r in Client(server.url, READ_KEY).search("green tea", k=30)])
    assert indexed_fields(store, "nearrec_items") == {"external_id", "active", "topic", "rank"}


def write(server: Server, method: str, path: str, body: Any) -> httpx.Response:
    """A raw write request (for bodies the client would never send)."""
    return httpx.request(method, f"{server.url}{path}", json=body, headers={"X-API-Key": WRITE_KEY})


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """The served routes but the dashboard's pages (HTML, not in the OpenAPI schema; test_dashboard.py
    checks that its tests request every one of them)."""
    return {(method, path) for method, path in served_routes(app) if not path.startswith("/dashboard")}


def test_every_route_has_a_test() -> None:
    app = create_app(
        Settings(database_url=SecretStr("postgresql+psycopg://unused@127.0.0.1/unused"), _env_file=None)
    )  # type: ignore[call-arg]
    tests = [f for name, f in globals().items() if name.startswith("test_") and callable(f)]
    marked = {tuple(m.args) for f in tests for m in getattr(f, "pytestmark", []) if m.name == "route"}
    served = api_routes(app)
    assert len(served) >= 16  # the walk finds the routes of the included routers too
    assert not served - marked, f"routes without a test: {sorted(served - marked)}"
    assert not marked - served, f"tests marked with routes the app does not serve: {sorted(marked - served)}"
