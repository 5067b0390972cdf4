"""The package data listed in pyproject.toml exists, and covers what an installed nearrec needs at run time
(the Alembic migrations of ``nearrec db upgrade``, the quickstart demo files)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from nearrec.postgres import migrate

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "platform" / "nearrec"


def _patterns() -> list[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns: list[str] = doc["tool"]["setuptools"]["package-data"]["nearrec"]
    return patterns


def test_every_package_data_pattern_matches_a_file() -> None:
    for pattern in _patterns():
        assert [p for p in PACKAGE.glob(pattern) if p.is_file()], pattern


def test_migrations_and_demo_files_are_package_data() -> None:
    assert migrate.migrations_dir() == PACKAGE / "postgres" / "migrations"
    listed = {p for pattern in _patterns() for p in PACKAGE.glob(pattern)}

    def files(folder: Path) -> list[Path]:
        return [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]

    needed = files(migrate.migrations_dir()) + [p for p in files(PACKAGE / "demo") if p.suffix != ".py"]
    missing = [str(p.relative_to(PACKAGE)) for p in needed if p not in listed]
    assert not missing
