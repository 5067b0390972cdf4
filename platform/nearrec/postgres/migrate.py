"""Alembic, driven from Python: used by `nearrec db ...` and by the test harness.

Alembic takes ~0.4 s to import, so it is imported only to change the schema: reading the current revision
(one row of ``alembic_version``) and the head (the ``revision``/``down_revision`` of the scripts, read with
:mod:`ast`; Alembic decides when they do not form one line) does not need it, which keeps `nearrec db status`
and `serve`'s start-up check fast.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, column, inspect, select, table

from nearrec.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = table("alembic_version", column("version_num"))

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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # `%` is ConfigParser's interpolation character; escape it in URLs (socket paths, passwords).
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def revision(url: str, message: str, autogenerate: bool) -> None:
    from alembic import command

    command.revision(alembic_config(url), message=message, autogenerate=autogenerate)


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database (None: no schema yet)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found = [str(v) for v in conn.execute(select(VERSION_TABLE.c.version_num)).scalars()]
    if len(found) > 1:
        raise ConfigError(
            f"the database is at several revisions ({', '.join(sorted(found))}): branched history"
        )
    return found[0] if found else None


def head_revision(url: str) -> str | None:
    """The newest revision of the scripts."""
    heads = _script_heads(migrations_dir() / "versions")
    if heads is not None and len(heads) == 1:
        return heads[0]
    from alembic.script import ScriptDirectory  # not one line of scripts: Alembic's answer (or its error)

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _script_heads(versions: Path) -> list[str] | None:
    """The revisions no script revises; None when a script does not declare both names as literals."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        names = _literals(ast.parse(path.read_text(encoding="utf-8")))
        rev, down = names.get("revision"), names.get("down_revision", ...)
        if not isinstance(rev, str) or not (down is None or isinstance(down, str)):
            return None  # a tuple of parents (merge) or a computed value: leave it to Alembic
        revisions.add(rev)
        if down:
            revised.add(down)
    return sorted(revisions - revised)


def _literals(module: ast.Module) -> dict[str, object]:
    """Module-level ``name = <literal>`` (or ``name: type = <literal>``); ``...`` for a computed value."""
    names: dict[str, object] = {}
    target: ast.expr
    value: ast.expr
    for node in module.body:
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                names[target.id] = ast.literal_eval(value)
            except ValueError:
                names[target.id] = ...
    return names
