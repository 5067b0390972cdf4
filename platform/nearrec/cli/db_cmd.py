"""`nearrec db ...`: schema migrations and database status."""

from __future__ import annotations

import click

from nearrec.config import Settings, mask_url
from nearrec.errors import ConfigError
from nearrec.postgres import migrate
from nearrec.postgres.engine import make_engine, resolve_database_url, server_version


@click.group()
def db() -> None:
    """Database schema (Alembic) and status."""


@db.command()
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate the schema up to REVISION (default: head)."""
    migrate.upgrade(resolve_database_url(Settings()), revision)
    click.echo(f"database upgraded to {revision}")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the schema down to REVISION (e.g. -1 or base)."""
    migrate.downgrade(resolve_database_url(Settings()), revision)
    click.echo(f"database downgraded to {revision}")


@db.command()
def current() -> None:
    """Print the schema revision of the database."""
    engine = make_engine(resolve_database_url(Settings()))
    try:
        click.echo(migrate.current_revision(engine) or "(empty: run `nearrec db upgrade`)")
    finally:
        engine.dispose()


@db.command()
@click.option("-m", "--message", required=True, help="What the migration does.")
@click.option("--autogenerate/--empty", default=True, help="Diff the models against the database.")
def revision(message: str, autogenerate: bool) -> None:
    """Create a new migration script in platform/nearrec/postgres/migrations/versions/."""
    migrate.revision(resolve_database_url(Settings()), message, autogenerate)


@db.command()
def status() -> None:
    """Say which database is in use, its version and schema revision."""
    settings = Settings()
    url = resolve_database_url(settings)
    kind = (
        "embedded Postgres under " + str(settings.data_dir)
        if settings.embedded_database
        else "NEARREC_DATABASE_URL"
    )
    engine = make_engine(url)
    try:
        current = migrate.current_revision(engine)
        head = migrate.head_revision(url)
        click.echo(f"database: {kind}")
        click.echo(f"url:      {mask_url(url)}")
        click.echo(f"server:   PostgreSQL {server_version(engine)}")
        state = "up to date" if current == head else f"behind head {head}: run `nearrec db upgrade`"
        click.echo(f"schema:   {current or '(empty)'} ({state})")
    finally:
        engine.dispose()


@db.command()
@click.option("--force", is_flag=True, help="Stop it even while nearrec processes still use it.")
def stop(force: bool) -> None:
    """Stop the embedded Postgres of the data dir (one a crashed or killed process left running)."""
    from nearrec.postgres.embedded_server import stop_embedded_postgres

    settings = Settings()
    if not settings.embedded_database:
        raise ConfigError("NEARREC_DATABASE_URL is set: there is no embedded Postgres to stop")
    found = stop_embedded_postgres(settings.data_dir, force=force)
    if found.server_pid is None:
        click.echo(f"embedded Postgres in {found.pgdata} is not running")
    else:
        click.echo(f"stopped the embedded Postgres in {found.pgdata} (pid {found.server_pid})")
