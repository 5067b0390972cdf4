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


def migrations_dir() -> Path:
    """The Alembic scripts: ``NEARREC_MIGRATIONS_DIR``, else ``migrations/`` of the source checkout."""
    env = os.environ.get("NEARREC_MIGRATIONS_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "migrations")
    for path in candidates:
        if (path / "env.py").is_file():
            return path
    raise ConfigError(
        "cannot find the Alembic migrations; install nearrec from a source checkout or set NEARREC_MIGRATIONS_DIR"
    )


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
