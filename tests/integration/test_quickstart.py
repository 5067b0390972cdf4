"""`nearrec quickstart --no-serve` as a newcomer runs it: a real process on the embedded default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_quickstart(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
    # The hashing embedder keeps this test fast; the real model runs end to end in the sync tests.
    env |= {"NEARREC_DATA_DIR": str(data_dir), "NEARREC_EMBEDDING_MODEL": "hashing:128", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "nearrec", "quickstart", "--no-serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=data_dir.parent,
    )


def test_quickstart_twice(pg_tmp: Path) -> None:
    first = run_quickstart(pg_tmp / "data")
    assert first.returncode == 0, first.stderr
    assert re.search(r"items\s+read\s+360\s+inserted\s+360", first.stdout)
    assert "recommendations for user-01" in first.stdout
    assert re.search(r"│ 1 │ sku-\d{4} │", first.stdout)
    assert (pg_tmp / "data" / "pgdata" / "PG_VERSION").is_file()

    second = run_quickstart(pg_tmp / "data")
    assert second.returncode == 0, second.stderr
    assert re.search(r"items\s+read\s+360\s+inserted\s+0\s+updated\s+0\s+unchanged\s+360", second.stdout)
    assert "(0 outbox rows processed)" in second.stdout
    assert "recommendations for user-01" in second.stdout
