"""The HTTP part of bench/query.py: `nearrec serve` in its own process, driven by keep-alive clients.

The clients use the standard library's http.client (a fraction of the CPU of a full-featured client), in
threads of the bench process: on a 2-core machine they share the cores with the server, like any load
generator on the same host.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from query_data import CATEGORIES, MODEL, cpu_seconds, database_cpu, pct, rss_mb


@dataclass(frozen=True)
class Load:
    p50_ms: float
    p99_ms: float
    rate: float  # answers per second achieved
    count: int


@dataclass(frozen=True)
class CpuCost:
    """CPU milliseconds per request, by process: where a saturated machine's cores go."""

    server_ms: float
    database_ms: float | None  # the Postgres backends of the benchmark database
    client_ms: float  # the load generator (this process)

    @property
    def total_ms(self) -> float:
        return self.server_ms + (self.database_ms or 0.0) + self.client_ms


def cpu_cost(url: str, server_pid: int, run: Callable[[], Load]) -> tuple[Load, CpuCost]:
    """``run()`` and the CPU each process spent on it, per request."""
    server, database, client = cpu_seconds(server_pid), database_cpu(url), time.process_time()
    load = run()
    server_after, database_after = cpu_seconds(server_pid), database_cpu(url)
    per = 1000 / load.count
    db = None if database is None or database_after is None else (database_after - database) * per
    return load, CpuCost((server_after - server) * per, db, (time.process_time() - client) * per)


@contextmanager
def server(url: str, data_dir: Path, port: int = 18765, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`nearrec serve` (one process, the embedded store, its in-process worker unless ``args`` say
    otherwise) on the benchmark catalog until the block ends."""
    env = {
        **os.environ,
        "NEARREC_DATABASE_URL": url,
        "NEARREC_DATA_DIR": str(data_dir),
        "NEARREC_EMBEDDING_MODEL": MODEL,
        "NEARREC_LOG_LEVEL": "WARNING",
    }
    env.pop("NEARREC_API_KEYS", None)
    with serving(env, port, *args) as proc:
        yield proc


@contextmanager
def serving(env: Mapping[str, str], port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`nearrec serve --port PORT ARGS` with ``env``, once /readyz answers, until the block ends."""
    cmd = [sys.executable, "-m", "nearrec", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=dict(env))
    try:
        deadline = time.monotonic() + 120
        while not _ready(port):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/readyz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def paths(users: list[str], n: int, seed: int) -> list[str]:
    """``n`` recommendation requests: random users, k=10, a random category filter, the default method."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        query = urllib.parse.urlencode({"k": 10, "filter": json.dumps({"category": rng.choice(CATEGORIES)})})
        out.append(f"/v1/users/{rng.choice(users)}/recommendations?{query}")
    return out


def run_all(threads: list[threading.Thread]) -> float:
    """Start ``threads``, wait for them all; the wall time it took."""
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t0


def drive(port: int, requests: list[str], clients: int, rate: float) -> Load:
    """``clients`` threads with one keep-alive connection each share ``requests``. rate 0: closed loop (each
    sends as soon as its previous answer arrives). rate > 0: open loop at ``rate`` req/s in total, latency
    counted from each request's scheduled time (a slow answer is also charged to the ones queued behind)."""
    lat: list[float] = []
    lock = threading.Lock()
    interval = clients / rate if rate else 0.0
    shares = [requests[c::clients] for c in range(clients)]
    errors: list[str] = []

    def run(mine: list[str], phase: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        times = []
        start = time.perf_counter() + phase * interval
        for n, path in enumerate(mine):
            due = start + n * interval
            if interval:
                time.sleep(max(0.0, due - time.perf_counter()))
            t = due if interval else time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            times.append(time.perf_counter() - t)
            if response.status != 200:
                errors.append(f"{response.status}: {body[:200]!r}")
                break
        conn.close()
        with lock:
            lat.extend(times)

    wall = run_all([threading.Thread(target=run, args=(s, c / clients)) for c, s in enumerate(shares)])
    if errors:
        raise RuntimeError(f"HTTP errors: {errors[:3]}")
    return Load(pct(lat, 50) * 1000, pct(lat, 99) * 1000, len(lat) / wall, len(lat))


def http_figures(
    url: str, data_dir: Path, users: list[str], queries: int, clients: int, seed: int
) -> tuple[Load, Load, CpuCost, Load, float, float]:
    """One client (no queueing: what HTTP itself adds to a request), saturation (closed loop) with the CPU per
    request it took, then an open loop at half the saturation rate; and the server's RSS (MB) and its peak
    after the load."""
    with server(url, data_dir) as proc:
        # warm up connections and caches as the in-process service was (the model's item vectors are cached)
        drive(18765, paths(users, queries, seed + 1), clients, 0.0)
        quiet(proc.pid)
        single = drive(18765, paths(users, max(queries // 3, 1), seed + 4), 1, 0.0)
        saturation, cost = cpu_cost(
            url, proc.pid, lambda: drive(18765, paths(users, queries, seed + 2), clients, 0.0)
        )
        half = drive(18765, paths(users, queries, seed + 3), clients, saturation.rate / 2)
        rss, peak = rss_mb(proc.pid)
    return single, saturation, cost, half, rss, peak


def quiet(pid: int, timeout: float = 60.0) -> None:
    """Wait until process ``pid`` is idle (under 5% of a core over half a second): the server's start-up work
    in the background (the dashboard's table counts) must not land in the measurement."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < 0.025:
            return
        before = now


def inprocess_saturation(url: str, calls: list[Callable[[], object]], clients: int) -> tuple[Load, CpuCost]:
    """The in-process path's own saturation: ``clients`` threads of this process share ``calls`` (the same
    requests as the HTTP clients send, without HTTP), each running its next call as soon as the previous one
    returns; the rate and the CPU per call of this process and of the Postgres backends. Against it, the HTTP
    saturation shows what HTTP itself costs in throughput, whatever the GIL and the machine allow the path."""
    lat: list[float] = []
    lock = threading.Lock()

    def run(mine: list[Callable[[], object]]) -> None:
        times = []
        for call in mine:
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        with lock:
            lat.extend(times)

    database, mine = database_cpu(url), time.process_time()
    wall = run_all([threading.Thread(target=run, args=(calls[c::clients],)) for c in range(clients)])
    spent, after = time.process_time() - mine, database_cpu(url)
    per = 1000 / len(calls)
    db = None if database is None or after is None else (after - database) * per
    load = Load(pct(lat, 50) * 1000, pct(lat, 99) * 1000, len(calls) / wall, len(calls))
    return load, CpuCost(spent * per, db, 0.0)
