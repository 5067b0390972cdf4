"""Operating `nearrec serve` on the embedded default as real processes: SIGTERM leaves nothing running, a
crashed server's Postgres is stopped by `nearrec db stop`, the CLI goes through the running server, and a bad
setting is one line with exit status 2."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

TIMEOUT = 120


def _env(data: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
    env.update(
        {"NEARREC_DATA_DIR": str(data), "NEARREC_EMBEDDING_MODEL": "hashing", "NEARREC_PORT": str(port)}
    )
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nearrec(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nearrec", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmd:
            found.append(proc)
    return found


def _start_serve(cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nearrec", "serve"], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve did not become ready")


def _wait_gone(pgdata: Path, timeout: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := _postgres_of(pgdata)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_sigterm_leaves_nothing_and_cli_goes_through_the_server(pg_tmp: Path) -> None:
    data, port = pg_tmp / "data", _free_port()
    env = _env(data, port)
    assert nearrec(pg_tmp, env, "db", "upgrade").returncode == 0
    serve = _start_serve(pg_tmp, env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        for i in range(6):
            httpx.put(f"{base}/v1/items/tea-{i}", json={"title": f"tea {i}", "text": f"green tea leaves {i}"})
        httpx.post(f"{base}/v1/interactions", json={"user_id": "u1", "item_id": "tea-0", "type": "like"})
        published = json.loads((data / "serve.json").read_text())
        assert published["pid"] == serve.pid and published["port"] == port
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = nearrec(pg_tmp, env, "search", "green tea", "--json")  # the store is locked by serve
            if found.returncode == 0 and len(json.loads(found.stdout)) == 6:
                break
            time.sleep(0.5)
        assert found.returncode == 0 and len(json.loads(found.stdout)) == 6, found.stderr
        recs = nearrec(pg_tmp, env, "recommend", "u1", "--json")
        assert recs.returncode == 0 and "tea-0" not in {r["item_id"] for r in json.loads(recs.stdout)}
        shown = nearrec(pg_tmp, env, "show", "user", "u1", "--history", "--json")
        assert json.loads(shown.stdout)["history"][0]["item_id"] == "tea-0", shown.stderr
        item = nearrec(pg_tmp, env, "show", "item", "tea-3")
        assert "title:" in item.stdout and "tea 3" in item.stdout
        assert nearrec(pg_tmp, env, "show", "item", "nope").returncode == 1
        status = nearrec(pg_tmp, env, "sync", "status")
        assert status.returncode == 0 and "owned by the running server" in status.stdout, status.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    pgdata = data / "pgdata"
    assert code == 128 + signal.SIGTERM
    assert not _wait_gone(pgdata), "SIGTERM left the embedded Postgres running"
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    assert not (data / "serve.json").exists()
    # without a server the CLI opens the store itself
    assert nearrec(pg_tmp, env, "sync", "status").returncode == 0
    assert not _wait_gone(pgdata)


def test_a_killed_server_is_cleaned_up(pg_tmp: Path) -> None:
    data, port = pg_tmp / "data", _free_port()
    env = _env(data, port)
    assert nearrec(pg_tmp, env, "db", "upgrade").returncode == 0
    serve = _start_serve(pg_tmp, env, port)
    serve.kill()
    serve.wait(timeout=30)
    pgdata = data / "pgdata"
    assert _postgres_of(pgdata), "the embedded Postgres outlives a SIGKILL"
    assert serve.pid in json.loads((pgdata / ".handle_pids.json").read_text())
    # the next command drops the dead pid and, as the last user, stops the server when it exits
    assert nearrec(pg_tmp, env, "db", "current").returncode == 0
    assert not _wait_gone(pgdata)
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    # a stale serve.json (dead pid) is ignored: the CLI opens the store itself
    assert (data / "serve.json").exists()
    assert nearrec(pg_tmp, env, "sync", "status").returncode == 0
    # `db stop` stops a Postgres that a killed process left running
    serve = _start_serve(pg_tmp, env, port)
    refused = nearrec(pg_tmp, env, "db", "stop")
    assert refused.returncode == 2 and str(serve.pid) in refused.stderr  # in use: refused
    serve.kill()
    serve.wait(timeout=30)
    stopped = nearrec(pg_tmp, env, "db", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert not _wait_gone(pgdata)


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("NEARREC_API_KEYS", "s3cret-key:admin", "NEARREC_API_KEYS"),
        ("NEARREC_PORT", "eighty", "NEARREC_PORT"),
        ("NEARREC_WORKER_BATCH_SIZE", "0", "NEARREC_WORKER_BATCH_SIZE"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path, setting: str, value: str, named: str) -> None:
    env = _env(tmp_path / "data", 1, **{setting: value})
    for args in (("serve",), ("config",), ("sync", "status")):
        out = nearrec(tmp_path, env, *args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {named}:"), out.stderr
        assert "Traceback" not in out.stderr and "s3cret" not in out.stderr + out.stdout


def test_a_bare_key_serves(tmp_path: Path, database_url: str) -> None:
    port = _free_port()
    env = _env(tmp_path / "data", port, NEARREC_API_KEYS="plainkey", NEARREC_DATABASE_URL=database_url)
    serve = _start_serve(tmp_path, env, port)
    try:
        url = f"http://127.0.0.1:{port}/v1/items/none"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"X-API-Key": "plainkey"}).status_code == 404
        assert httpx.delete(url, headers={"X-API-Key": "plainkey"}).status_code == 404  # write scope
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
