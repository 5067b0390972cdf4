"""The live OpenAPI, checked from outside: Swagger UI renders offline in a real headless Chromium, and a short
schemathesis run finds no server error and no response outside the documented schema and status codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from http_support import WRITE_KEY, Server, server  # noqa: F401 - the fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.skipif(
    not shutil.which("chromium"), reason="Chromium (Debian package chromium) is not installed"
)
def test_docs_render_offline_in_headless_chromium(server: Server) -> None:
    before = len(server.requests)
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",  # anything not local fails
             "--virtual-time-budget=15000", "--dump-dom", f"{server.url}/docs"],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    assert 'class="swagger-ui' in dom and "opblock" in dom, dom[:500]
    for path in ("/v1/users/{user_id}/recommendations", "/v1/search", "/v1/items/{item_id}"):
        assert path in dom  # an operation Swagger UI rendered from /openapi.json
    fetched = {p for _, p in server.requests[before:]}
    assert {"/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js"} <= fetched


def test_live_api_conforms_to_its_openapi(server: Server, tmp_path: Path) -> None:
    """schemathesis (its command line, in a subprocess) against the running server, a few examples per route."""
    cli = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(cli), "run", f"{server.url}/openapi.json", "--max-examples", "6", "--phases", "examples,fuzzing",
         "--checks", "not_a_server_error,status_code_conformance,response_schema_conformance",
         "-H", f"X-API-Key: {WRITE_KEY}", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its cache goes there
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
