"""`nearrec serve --workers N`: N stateless API processes on one socket, for the Qdrant server adapter.

No Qdrant server runs on the test machine, so unless NEARREC_QDRANT_URL names one the processes get an address
where nothing listens: the server adapter (qdrant-client) makes no request until a route needs a vector, and
the route used here (a text recommendation for an unknown user) answers from Postgres alone. Each process is
shown to answer on its own by freezing the others (SIGSTOP): the socket is shared, so whichever process is
awake accepts the connection.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from nearrec.errors import ConfigError


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _answer(base: str) -> int:
    with httpx.Client(base_url=base, timeout=10) as http:  # a fresh connection: any awake process takes it
        return http.get("/v1/users/nobody/recommendations", params={"method": "text"}).status_code


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
    return env | {
        "NEARREC_DATABASE_URL": database_url,
        "NEARREC_DATA_DIR": str(tmp_path / "data"),
        "NEARREC_EMBEDDING_MODEL": "hashing:32",
        "NEARREC_QDRANT_URL": os.environ.get("NEARREC_QDRANT_URL") or f"http://127.0.0.1:{_port()}",
        "NEARREC_COLLECTION_PREFIX": f"serve_{os.getpid()}_",
    }


def test_two_processes_each_answer(database_url: str, tmp_path: Path) -> None:
    port = _port()
    log = (tmp_path / "serve.log").open("w")
    cmd = [sys.executable, "-m", "nearrec", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=_env(database_url, tmp_path), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            kids = _children(proc.pid)
            answered = False
            with contextlib.suppress(httpx.HTTPError):
                answered = len(kids) >= 2 and _answer(base) == 404
            if answered:
                break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve --workers 2 never answered"
            time.sleep(0.3)
        time.sleep(3)  # both processes past their startup
        workers = [k for k in _children(proc.pid) if "spawn" in Path(f"/proc/{k}/cmdline").read_text()]
        assert len(workers) == 2, (workers, _children(proc.pid))
        for awake in workers:
            frozen = [w for w in workers if w != awake]
            for w in frozen:
                os.kill(w, signal.SIGSTOP)
            try:
                assert [_answer(base) for _ in range(3)] == [404, 404, 404]
            finally:
                for w in frozen:
                    os.kill(w, signal.SIGCONT)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_several_processes_refuse_the_embedded_store(database_url: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nearrec.cli.main import cli

    env = {"NEARREC_DATABASE_URL": database_url, "NEARREC_DATA_DIR": str(tmp_path), "NEARREC_QDRANT_URL": ""}
    result = CliRunner().invoke(cli, ["serve", "--workers", "2"], env=env)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) or "NEARREC_QDRANT_URL" in result.output
    assert "NEARREC_QDRANT_URL" in (str(result.exception) + result.output)
