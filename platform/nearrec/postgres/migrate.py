"""Alembic, driven from Python: used by `nearrec db ...` and by the test harness."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from nearrec.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""The Alembic scripts, shipped inside the package (so a checkout and an installed wheel both have them)."""


def migrations_dir() -> Path:
    """The Alembic scripts: ``NEARREC_MIGRATIONS_DIR`` when set, else :data:`MIGRATIONS`."""
    env = os.environ.get("NEARREC_MIGRATIONS_DIR")
    path = Path(env) if env else MIGRATIONS
    if not (path / "env.py").is_file():
        raise ConfigError(f"cannot find the Alembic migrations in {path} (no env.py)")
    return path


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # `%` is ConfigParser's interpolation character; escape it in URLs (socket paths, passwords).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def revision(url: str, message: str, autogenerate: bool) -> None:
    command.revision(alembic_config(url), message=message, autogenerate=autogenerate)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
