"""CLI start-up: wall time of whole `nearrec` processes vs an empty `python -c pass`, in the same run.

Each command runs ``--runs`` times (interleaved with the others, so a change in the machine's load hits them
all alike); prints min and median per command, the ratio of the median to the median of ``python -c pass``
and the target. Targets (issue 13): ``nearrec --help`` under 0.5 s, ``nearrec db status`` under 1.5 s.

``db status`` talks to a scratch database (created, migrated and dropped here) on the Postgres server of
``--server-url`` (default ``NEARREC_TEST_DATABASE_URL`` or 127.0.0.1:5432), so it measures the command, not
the start of an embedded Postgres. Runs in a temporary directory with a private data dir.

    .venv/bin/python bench/cli.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGETS = {"nearrec --help": 0.5, "nearrec db status": 1.5}


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def measure(database_url: str, runs: int) -> dict[str, list[float]]:
    """Wall seconds per run of each command, runs interleaved."""
    nearrec = [sys.executable, "-m", "nearrec"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nearrec --help": [*nearrec, "--help"],
        "nearrec --version": [*nearrec, "--version"],
        "nearrec db status": [*nearrec, "db", "status"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="nearrec-cli-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
        env.update({"NEARREC_DATABASE_URL": database_url, "NEARREC_DATA_DIR": str(Path(tmp) / "data")})
        for argv in commands.values():  # warm the file cache once, unmeasured
            _time(argv, Path(tmp), env)
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(_time(argv, Path(tmp), env))
    return times


def report(times: dict[str, list[float]]) -> None:
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<20} {'min s':>7} {'median s':>9} {'x python -c pass':>17} {'target s':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        target = TARGETS.get(name)
        verdict = "" if target is None else f"{target:>9.1f} {'ok' if median < target else 'SLOW'}"
        print(f"{name:<20} {min(values):>7.3f} {median:>9.3f} {median / base:>17.1f} {verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--server-url", default=os.environ.get("NEARREC_TEST_DATABASE_URL", DEFAULT_SERVER))
    args = p.parse_args()
    from nearrec.postgres.scratch import scratch_database

    with scratch_database(args.server_url, f"nearrec_cli_bench_{os.getpid()}") as url:
        times = measure(url, args.runs)
    print(f"{args.runs} runs each, interleaved; python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    report(times)


if __name__ == "__main__":
    main()
