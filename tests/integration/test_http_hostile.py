"""Hostile input (issue 13 item 7): each probe by name gets a 4xx in the error shape with a request id."""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import httpx
import pytest
from http_support import READ_KEY, WRITE_KEY, Server, server  # noqa: F401 - the fixture
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from nearrec.api.auth import ApiKeys, presented_key
from nearrec.config import Settings
from nearrec.logs import TextFormatter


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    err: dict[str, Any] = response.json()["error"]
    assert err["status"] == status and err["request_id"] == response.headers["x-request-id"]
    return err


def _get(srv: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{srv.url}{path}", params=params, headers={"X-API-Key": READ_KEY})


def test_nul_in_ids_is_refused(server: Server) -> None:
    assert _error(_get(server, "/v1/items/%00/similar"), 422)["path"] == "item_id"
    deleted = httpx.delete(f"{server.url}/v1/users/%00", headers={"X-API-Key": WRITE_KEY})
    assert _error(deleted, 422)["path"] == "user_id"
    assert _error(_get(server, "/v1/users/u1/recommendations", exclude="\x00"), 422)["path"] == "exclude"
    liked = httpx.post(
        f"{server.url}/v1/recommendations", json={"liked": ["\u0000"]}, headers={"X-API-Key": READ_KEY}
    )
    assert _error(liked, 422)["path"].startswith("liked")


def test_huge_offset_deep_filter_and_big_integers_are_refused(server: Server) -> None:
    assert (
        _error(_get(server, "/v1/users/u1/recommendations", offset=18446744073709551616), 422)["path"]
        == "offset"
    )
    deep: Any = {"topic": "tea"}
    for _ in range(500):
        deep = {"not": deep}
    err = _error(_get(server, "/v1/users/u1/recommendations", filter=json.dumps(deep)), 422)
    assert "nested deeper" in err["message"]
    big = _error(
        _get(server, "/v1/items/tea-0/similar", filter=json.dumps({"rank": 9223372036854775808})), 422
    )
    assert big["path"] == "filter.rank" and "out of range" in big["message"]
    body = httpx.post(
        f"{server.url}/v1/search", json={"text": "tea", "filter": deep}, headers={"X-API-Key": READ_KEY}
    )
    assert body.status_code == 422


def test_batch_limit_is_named(server: Server) -> None:
    events = [{"user_id": "u1", "item_id": "tea-1"}] * 10_001
    r = httpx.post(f"{server.url}/v1/interactions", json={"events": events}, headers={"X-API-Key": WRITE_KEY})
    err = _error(r, 422)
    assert "at most 10000 events" in err["message"] and err["path"] == "events"


def test_body_limit_and_key_come_before_the_body(server: Server) -> None:
    # no key: 401 even for a malformed body, and even for a body over the limit
    assert (
        _error(httpx.post(f"{server.url}/v1/interactions", content=b"{not json"), 401)["code"]
        == "unauthorized"
    )
    huge = b"x" * (9 * 1024 * 1024)
    assert _error(httpx.post(f"{server.url}/v1/interactions", content=huge), 401)
    # with the key: 413 past NEARREC_MAX_BODY_BYTES (8 MiB by default), counted while reading
    headers = {"X-API-Key": WRITE_KEY, "Content-Type": "application/json"}
    assert _error(httpx.post(f"{server.url}/v1/interactions", content=huge, headers=headers), 413)
    streamed = httpx.post(f"{server.url}/v1/interactions", content=iter([huge]), headers=headers)  # chunked
    assert "NEARREC_MAX_BODY_BYTES" in _error(streamed, 413)["message"]
    # a read-only key on a write route: 403 before the body is looked at
    read = {"X-API-Key": READ_KEY, "Content-Type": "application/json"}
    assert _error(httpx.post(f"{server.url}/v1/interactions", content=b"{", headers=read), 403)


def test_wrong_content_type_is_415(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/v1/search",
        content=b"text=tea",
        headers={"X-API-Key": READ_KEY, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "JSON" in _error(r, 415)["message"]


def test_api_key_header_is_trimmed_like_bearer(server: Server) -> None:
    assert _raw_status(server, f"X-API-Key: \t {READ_KEY} \t") == 200
    assert _raw_status(server, f"Authorization: Bearer  {READ_KEY} ") == 200
    assert _raw_status(server, "X-API-Key:    ") == 401
    assert presented_key(None, f"  {READ_KEY}  ") == READ_KEY  # whatever the HTTP parser left


def _raw_status(srv: Server, header: str) -> int:
    """Send the header bytes as written (httpx refuses surrounding spaces in a header value)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as conn:
        request = f"GET /v1/items/tea-0 HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n"
        conn.sendall(request.encode())
        head = conn.recv(64).decode()
    return int(head.split()[1])


def test_openapi_declares_security_and_documents_errors(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["apiKey"]["name"] == "X-API-Key"
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                assert param.get("description"), f"{method} {path} {param['name']} has no description"
            if path.startswith("/v1/"):
                assert op.get("security"), f"{method} {path} declares no security"
                for status in ("401", "403", "422"):
                    ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorResponse")
                    assert op["responses"][status]["content"]["application/json"]["example"]["error"]
            if method in ("post", "put"):
                assert {"413", "415"} <= set(op["responses"]), f"{method} {path}"
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert body, path


def test_unexpected_error_is_a_500_with_the_request_id(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = server.app.state.nearrec

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(state.query, "similar_items", boom)
    r = _get(server, "/v1/items/tea-0/similar", k=3)
    assert _error(r, 500)["request_id"]


def test_slow_headers_are_cut_off(
    db: Engine, sessions: sessionmaker[Session], database_url: str, tmp_path: Any
) -> None:
    import threading

    import uvicorn

    from nearrec.api.app import create_app
    from nearrec.api.protocol import guarded_protocol

    settings = Settings(
        database_url=SecretStr(database_url),
        data_dir=tmp_path / "d",
        embedding_model="hashing",
        _env_file=None,
    )  # type: ignore[call-arg]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, run_worker=False), port=port, http=guarded_protocol(1.0), log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
            started = time.monotonic()
            assert conn.recv(100) == b""  # closed by the server
            assert time.monotonic() - started < 5
        ok = httpx.get(f"http://127.0.0.1:{port}/healthz")  # a normal request is unaffected
        assert ok.status_code == 200
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


def test_log_lines_escape_control_characters() -> None:
    record = logging.LogRecord(
        "nearrec.access", logging.INFO, __file__, 1, "%s %s", ("GET", "/v1/items/\x00\n\x1b[2J"), None
    )
    line = TextFormatter("%(message)s").format(record)
    assert line == "GET /v1/items/\\x00\\x0a\\x1b[2J"


def test_bare_key_has_full_access_and_read_suffix_only_reads() -> None:
    keys = ApiKeys.parse("s3cret, viewer:read")
    keys.check("s3cret", "write")
    keys.check("viewer", "read")
    with pytest.raises(Exception, match="read scope"):
        keys.check("viewer", "write")
