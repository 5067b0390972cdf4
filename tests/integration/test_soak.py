"""The kill test in its short mode: bench/soak.py SIGKILLs `nearrec serve` while clients write, restarts it,
and checks that no acknowledged write is lost, no liked item is recommended, the stores agree at the end and
no process outlives the run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def _soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nearrec_bench_soak", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_short_soak_loses_nothing(database_url: str) -> None:
    soak = _soak()
    server = make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
    result = soak.run(soak.Options(seconds=40, clients=3, min_gap=2.0, max_gap=5.0, server_url=server))
    assert result.kills >= 2, result.summary()
    assert result.acknowledged_events > 0 and result.acknowledged_items > 0, result.summary()
    assert result.lost == 0, result.notes
    assert result.violations == 0, result.notes
    assert result.leaks == 0, result.notes
    assert result.sync_ok and result.backlog == 0, result.notes
    assert result.verifications >= result.kills + 1
