"""`nearrec worker --metrics-port`: a standalone worker exposes sync throughput and the backlog."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from factories import load_items


def test_worker_serves_prometheus_metrics(
    db: Engine, sessions: sessionmaker[Session], database_url: str, tmp_path: Path
) -> None:
    load_items(sessions, [{"external_id": f"m{i}", "text": f"metric item {i}"} for i in range(5)])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
    env |= {
        "NEARREC_DATABASE_URL": database_url,
        "NEARREC_DATA_DIR": str(tmp_path / "data"),
        "NEARREC_EMBEDDING_MODEL": "hashing:32",
    }
    proc = subprocess.Popen([sys.executable, "-m", "nearrec", "worker", "--metrics-port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                done = re.search(r'nearrec_sync_outbox_rows_total\{outcome="done"\} ([0-9.]+)', text)
                if done and float(done.group(1)) >= 5:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None
            time.sleep(0.2)
        assert 'nearrec_sync_vectors_total{action="embedded",entity="item"} 5.0' in text
        assert "nearrec_outbox_pending 0.0" in text
        assert "nearrec_sync_batch_duration_seconds_count" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
