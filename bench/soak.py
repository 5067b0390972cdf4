"""Kill test: SIGKILL the running API at random moments while clients write, and check nothing acknowledged is lost.

What runs: ``nearrec serve`` on a private data dir with ``NEARREC_DATABASE_URL`` pointing at a scratch database
(created on the Postgres server of ``--server-url``, dropped at the end) and the hashing embedder. With the
embedded vector store (the default) only the API process may open the store, so it is the one process: it
serves HTTP and runs the sync worker in-process, and every kill hits it. When ``NEARREC_QDRANT_URL`` is set,
``--workers`` standalone ``nearrec worker`` processes run too (collections under a private prefix) and each
kill picks one process at random among the API and the workers.

Several client threads POST interactions (unique event ids) and PUT item updates (each item is updated by
one thread only, with titles ``<item> r<n>`` where n only grows, so its revisions are ordered). A write
counts as acknowledged when the API answered 2xx. After every restart (once ``/readyz`` answers) and at the end:

- lost: an acknowledged event missing from Postgres (looked up by event id, with its user and item), or an
  item whose stored title is older than its last acknowledged revision;
- violations: an item that a user has an acknowledged event for, in that user's recommendations;
- at the end, after the outbox drained and the API stopped with SIGTERM, ``nearrec sync check`` must find
  the stores equal and ``nearrec sync status --json`` must show an empty backlog;
- leaks: processes of this run (children, or anything with its data dir in the command line or environment)
  still alive after the final shutdown.

    .venv/bin/python bench/soak.py --seconds 45        # the short mode (tests/integration/test_soak.py)
    .venv/bin/python bench/soak.py --minutes 20        # by hand

Uses the Postgres server of ``--server-url`` (default ``NEARREC_TEST_DATABASE_URL`` or 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

READY_TIMEOUT = 120.0
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Options:
    seconds: float = 45.0
    clients: int = 3
    items_per_client: int = 6
    users_per_client: int = 4
    min_gap: float = 2.0
    max_gap: float = 6.0
    workers: int = 2
    seed: int = 0
    server_url: str = DEFAULT_SERVER


@dataclass
class Result:
    kills: int = 0
    restarts: int = 0
    acknowledged: int = 0
    acknowledged_events: int = 0
    acknowledged_items: int = 0
    refused: int = 0
    lost: int = 0
    violations: int = 0
    leaks: int = 0
    sync_ok: bool = False
    backlog: int = -1
    verifications: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"kills: {self.kills}  restarts: {self.restarts}  acknowledged writes: {self.acknowledged} "
            f"({self.acknowledged_events} events, {self.acknowledged_items} item updates)  refused: "
            f"{self.refused}  lost: {self.lost}  exclusion violations: {self.violations}  leaks: {self.leaks}  "
            f"sync check: {'ok' if self.sync_ok else 'DIFFERS'}  backlog: {self.backlog}  "
            f"verifications: {self.verifications}"
        )


class Ledger:
    """Every write the API acknowledged: events by id, and per item the newest acknowledged revision."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[str, tuple[str, str]] = {}  # event id -> (user id, item id)
        self.acked_revision: dict[str, int] = {}  # item id -> the newest acknowledged revision number
        self.acked_items = 0
        self.refused = 0

    def ack_event(self, event_id: str, user: str, item: str) -> None:
        with self._lock:
            self.events[event_id] = (user, item)

    def ack_item(self, item: str, revision: int) -> None:
        with self._lock:
            self.acked_revision[item] = max(revision, self.acked_revision.get(item, -1))
            self.acked_items += 1

    def refuse(self) -> None:
        with self._lock:
            self.refused += 1

    def snapshot(self) -> tuple[dict[str, tuple[str, str]], dict[str, int]]:
        with self._lock:
            return dict(self.events), dict(self.acked_revision)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """The processes under test: ``nearrec serve`` and, with a Qdrant server, standalone workers."""

    def __init__(self, root: Path, database_url: str, workers: int) -> None:
        self.root, self.data = root, root / "data"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
        env.update(
            {
                "NEARREC_DATA_DIR": str(self.data),
                "NEARREC_DATABASE_URL": database_url,
                "NEARREC_EMBEDDING_MODEL": "hashing",
                "NEARREC_PORT": str(self.port),
                "NEARREC_WORKER_POLL_SECONDS": "0.2",
            }
        )
        qdrant = os.environ.get("NEARREC_QDRANT_URL")
        if qdrant:
            env["NEARREC_QDRANT_URL"] = qdrant
            env["NEARREC_COLLECTION_PREFIX"] = f"soak{os.getpid()}_"
        self.env = env
        self.standalone = workers if qdrant else 0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nearrec", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _spawn(self, name: str) -> None:
        args = ["serve", "--sync-worker"] if name == "api" else ["worker", "--quiet"]
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "nearrec", *args], cwd=self.root, env=self.env, stdout=log, stderr=log
            )

    def start(self) -> None:
        self._spawn("api")
        for i in range(self.standalone):
            self._spawn(f"worker-{i}")
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.procs["api"].poll() is not None:
                raise RuntimeError(f"serve exited with {self.procs['api'].returncode}: {self.tail('api')}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve did not become ready in {READY_TIMEOUT:.0f} s: {self.tail('api')}")

    def tail(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill_random(self, rng: random.Random) -> str:
        """SIGKILL one process (picked at random), reap it and start it again; returns its name."""
        name = rng.choice(sorted(self.procs))
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self._spawn(name)
        if name == "api":
            self.wait_ready()
        return name

    def stop(self) -> dict[str, int]:
        """SIGTERM every process (the clean shutdown path) and return their exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(timeout=30)
        return codes


def _client(cluster: Cluster, ledger: Ledger, index: int, opts: Options, stop: threading.Event) -> None:
    rng = random.Random(opts.seed * 1000 + index)
    items = [f"it-{c}-{k}" for c in range(opts.clients) for k in range(opts.items_per_client)]
    mine = [f"it-{index}-{k}" for k in range(opts.items_per_client)]
    users = [f"user-{index}-{k}" for k in range(opts.users_per_client)]
    with httpx.Client(base_url=cluster.base, timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if rng.random() < 0.7:
                    user, item, event = rng.choice(users), rng.choice(items), f"ev-{index}-{n}"
                    body = {"user_id": user, "item_id": item, "type": "like", "event_id": event}
                    r = http.post("/v1/interactions", json=body)
                    if r.is_success:
                        ledger.ack_event(event, user, item)
                else:
                    item = rng.choice(mine)
                    title = f"{item} r{n}"  # n grows: a later revision of the item has a larger n
                    text = f"{' '.join(rng.sample(WORDS, 6))} revision {n}"
                    r = http.put(f"/v1/items/{item}", json={"title": title, "text": text})
                    if r.is_success:
                        ledger.ack_item(item, n)
                if not r.is_success:
                    ledger.refuse()
            except httpx.HTTPError:  # the server is down (killed) or restarting: not acknowledged
                time.sleep(0.1)


WORDS = [
    "green",
    "tea",
    "coffee",
    "oolong",
    "black",
    "roast",
    "leaf",
    "jasmine",
    "herbal",
    "mint",
    "spice",
    "honey",
    "lemon",
    "ginger",
    "cocoa",
    "bean",
    "mountain",
    "river",
    "morning",
    "evening",
    "smoky",
    "floral",
    "sweet",
    "bitter",
    "fresh",
    "aged",
]


def _seed(cluster: Cluster, ledger: Ledger, opts: Options) -> None:
    with httpx.Client(base_url=cluster.base, timeout=30) as http:
        for c in range(opts.clients):
            for k in range(opts.items_per_client):
                item = f"it-{c}-{k}"
                r = http.put(f"/v1/items/{item}", json={"title": f"{item} r0", "text": f"{WORDS[k]} seed"})
                r.raise_for_status()
                ledger.ack_item(item, 0)


def _lost_writes(database_url: str, ledger: Ledger) -> tuple[int, list[str]]:
    """Acknowledged writes that Postgres does not hold (by event id; by item title revision)."""
    from sqlalchemy import select
    from sqlalchemy.orm import aliased

    from nearrec.postgres.engine import make_engine
    from nearrec.postgres.models import Interaction, Item, User

    events, acked = ledger.snapshot()
    engine = make_engine(database_url, pool_size=1)
    found: dict[str, tuple[str, str]] = {}
    try:
        with engine.connect() as conn:
            ids = sorted(events)
            it = aliased(Item)
            for start in range(0, len(ids), 1000):
                rows = conn.execute(
                    select(Interaction.event_id, User.external_id, it.external_id)
                    .join(User, User.id == Interaction.user_id)
                    .join(it, it.id == Interaction.item_id)
                    .where(Interaction.event_id.in_(ids[start : start + 1000]))
                )
                found.update({str(e): (str(u), str(i)) for e, u, i in rows})
            titles = {str(i): t for i, t in conn.execute(select(Item.external_id, Item.title))}
    finally:
        engine.dispose()
    notes = [f"event {e} missing or wrong: {found.get(e)}" for e, ui in events.items() if found.get(e) != ui]
    for item, revision in acked.items():
        stored = titles.get(item) or ""
        if not stored.startswith(f"{item} r") or int(stored.rsplit(" r", 1)[1]) < revision:
            notes.append(f"item {item}: stored title {stored!r}, acknowledged revision r{revision}")
    return len(notes), notes


def _violations(cluster: Cluster, ledger: Ledger, opts: Options) -> tuple[int, list[str]]:
    """Items a user has an acknowledged event for that come back in the user's recommendations."""
    events, _ = ledger.snapshot()
    seen: dict[str, set[str]] = {}
    for user, item in events.values():
        seen.setdefault(user, set()).add(item)
    k = opts.clients * opts.items_per_client + 5  # more than the catalog: every recommendable item
    notes = []
    with httpx.Client(base_url=cluster.base, timeout=30) as http:
        for user, items in sorted(seen.items()):
            r = http.get(f"/v1/users/{user}/recommendations", params={"k": k})
            r.raise_for_status()
            bad = items & {rec["item_id"] for rec in r.json()["items"]}
            notes.extend(f"{user} was recommended {item}, which they liked" for item in sorted(bad))
    return len(notes), notes


def _verify(cluster: Cluster, database_url: str, ledger: Ledger, opts: Options, result: Result) -> None:
    lost, notes = _lost_writes(database_url, ledger)
    violations, more = _violations(cluster, ledger, opts)
    result.lost = max(result.lost, lost)
    result.violations += violations
    result.verifications += 1
    result.notes.extend((notes + more)[:20])


def _backlog(database_url: str) -> int:
    from sqlalchemy import func, select

    from nearrec.postgres.engine import make_engine
    from nearrec.postgres.models import OutboxRow

    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(OutboxRow)).scalar_one())
    finally:
        engine.dispose()


def _wait_drained(database_url: str, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while (left := _backlog(database_url)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def _leaks(root: Path) -> list[str]:
    """Processes of this run still alive: our children, or anything naming the run's directory."""
    me = psutil.Process()
    alive = {p.pid: p for p in me.children(recursive=True) if p.is_running()}
    marker = str(root)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == me.pid:
            continue
        try:
            if any(marker in part for part in proc.info["cmdline"] or []) or marker in str(
                proc.environ().get("NEARREC_DATA_DIR", "")
            ):
                alive[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [f"pid {pid}: {' '.join(p.cmdline()[:4])}" for pid, p in alive.items() if _running(p)]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def _scratch(server_url: str) -> Iterator[str]:
    from nearrec.postgres.scratch import scratch_database

    with scratch_database(server_url, f"nearrec_soak_{os.getpid()}") as url:
        yield url


def _finish(cluster: Cluster, database_url: str, ledger: Ledger, opts: Options, result: Result) -> None:
    """The final checks: drained outbox, clean SIGTERM, `sync check` and `sync status` with the API stopped."""
    left = _wait_drained(database_url)
    if left:
        result.notes.append(f"the outbox still holds {left} rows after waiting")
    _verify(cluster, database_url, ledger, opts, result)
    codes = cluster.stop()
    result.notes.extend(
        f"{n} exited with {c} on SIGTERM" for n, c in codes.items() if c != 128 + signal.SIGTERM
    )
    check = cluster.cli("sync", "check")
    result.sync_ok = check.returncode == 0
    if not result.sync_ok:
        result.notes.append(f"sync check: {check.stdout.strip()} {check.stderr.strip()}")
    status = cluster.cli("sync", "status", "--json")
    try:
        outbox = json.loads(status.stdout)["outbox"]
        result.backlog = int(outbox["pending"]) + int(outbox["parked"])
    except (ValueError, KeyError, TypeError):
        result.notes.append(f"sync status failed ({status.returncode}): {status.stderr.strip()}")


def run(opts: Options, log: bool = True) -> Result:
    """One soak run; returns its figures (also printed when ``log``)."""
    rng, result, ledger = random.Random(opts.seed), Result(), Ledger()
    say = print if log else (lambda *a, **k: None)
    root = Path(tempfile.mkdtemp(prefix="nearrec-soak-"))
    try:
        with _scratch(opts.server_url) as database_url:
            cluster = Cluster(root, database_url, opts.workers)
            processes = "serve (API + in-process worker)" + (
                f" and {cluster.standalone} standalone workers" if cluster.standalone else ""
            )
            say(f"soak: {opts.seconds:.0f} s, {opts.clients} clients, {processes}; logs in {cluster.logs}")
            cluster.start()
            _seed(cluster, ledger, opts)
            stop = threading.Event()
            threads = [
                threading.Thread(target=_client, args=(cluster, ledger, i, opts, stop), daemon=True)
                for i in range(opts.clients)
            ]
            for t in threads:
                t.start()
            try:
                deadline = time.monotonic() + opts.seconds
                while time.monotonic() + opts.min_gap < deadline:
                    time.sleep(
                        min(rng.uniform(opts.min_gap, opts.max_gap), max(0.0, deadline - time.monotonic()))
                    )
                    name = cluster.kill_random(rng)
                    result.kills += 1
                    result.restarts += 1
                    _verify(cluster, database_url, ledger, opts, result)
                    say(f"  kill {result.kills}: {name}; acknowledged so far {len(ledger.events)} events")
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=30)
            _finish(cluster, database_url, ledger, opts, result)
            leaks = _leaks(root)
            result.leaks = len(leaks)
            result.notes.extend(f"leak: {leak}" for leak in leaks)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result.acknowledged_events = len(ledger.events)
    result.acknowledged_items = ledger.acked_items
    result.acknowledged = result.acknowledged_events + result.acknowledged_items
    result.refused = ledger.refused
    say(result.summary())
    for note in result.notes[:40]:
        say(f"  {note}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="Run length in seconds (short mode: 45).")
    length.add_argument("--minutes", type=float, help="Run length in minutes (by hand: 20).")
    p.add_argument("--clients", type=int, default=3, help="Client threads.")
    p.add_argument(
        "--workers", type=int, default=2, help="Standalone workers (only with NEARREC_QDRANT_URL)."
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--server-url",
        default=os.environ.get("NEARREC_TEST_DATABASE_URL", DEFAULT_SERVER),
        help="A Postgres server URL; the soak creates and drops its own database there.",
    )
    args = p.parse_args(argv)
    seconds = args.minutes * 60 if args.minutes else (args.seconds or 45.0)
    gaps = (2.0, 6.0) if seconds < 300 else (5.0, 30.0)
    opts = Options(
        seconds=seconds,
        clients=args.clients,
        workers=args.workers,
        seed=args.seed,
        server_url=args.server_url,
        min_gap=gaps[0],
        max_gap=gaps[1],
    )
    r = run(opts)
    ok = r.lost == 0 and r.violations == 0 and r.leaks == 0 and r.sync_ok and r.backlog == 0 and r.kills >= 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
