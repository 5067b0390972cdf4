"""Screenshots of the dashboard for the README: docs/dashboard-overview.png and docs/dashboard-user.png.

    .venv/bin/python scripts/screenshots.py [--model hashing] [--out docs]

Loads the bundled demo catalog into a scratch database (the Postgres at NEARREC_DATABASE_URL's server or
127.0.0.1:5432, else an embedded one), syncs it with the configured embedding model (default: the bundled
all-MiniLM-L6-v2), trains the cf model, records a `sync check`, serves the app on 127.0.0.1, sends a few API
requests (so the latency table has figures) and photographs two pages in headless Chromium.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests"))  # the shared test factories

from cdp import Browser, chromium_path  # noqa: E402
from dashboard_support import Server, seed_demo  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from nearrec.config import Settings  # noqa: E402
from nearrec.postgres.scratch import scratch_database  # noqa: E402

LOCAL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@contextmanager
def database() -> Iterator[str]:
    server = os.environ.get("NEARREC_DATABASE_URL")
    if server is None:
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
            server = LOCAL
        except OSError:
            from nearrec.postgres import migrate
            from nearrec.postgres.embedded_server import start_embedded_postgres

            url = start_embedded_postgres(Path(tempfile.mkdtemp(prefix="nearrec-shots-pg-")))
            migrate.upgrade(url)
            yield url
            return
    with scratch_database(server, f"nearrec_screenshots_{os.getpid()}") as url:
        yield url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=None, help="Embedding model (default: NEARREC_EMBEDDING_MODEL or MiniLM)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--user", default="user-01")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    binary = chromium_path()
    if binary is None:
        sys.exit("no Chromium found (apt-get install chromium, or set NEARREC_CHROMIUM)")
    args.out.mkdir(parents=True, exist_ok=True)
    with database() as url, tempfile.TemporaryDirectory(prefix="nearrec-shots-") as tmp:
        extra = {"embedding_model": args.model} if args.model else {}
        settings = Settings(database_url=SecretStr(url), data_dir=Path(tmp), _env_file=None, **extra)  # type: ignore[call-arg]
        seed_demo(settings)
        with Server(settings) as srv, httpx.Client(base_url=srv.url) as api:
            for n in range(1, 41):
                api.get(f"/v1/users/user-{n:02d}/recommendations", params={"k": 10}).raise_for_status()
                api.get(f"/v1/items/sku-{n:04d}/similar").raise_for_status()
            with Browser(binary, width=1400, height=900) as browser:
                for path, name in (("/dashboard", "overview"), (f"/dashboard/users/{args.user}", "user")):
                    browser.goto(srv.url + path)
                    browser.wait_for("!document.querySelector('.loading')")  # the user page's lazy lists
                    target = args.out / f"dashboard-{name}.png"
                    browser.screenshot(target)
                    print(f"wrote {target}")


if __name__ == "__main__":
    main()
