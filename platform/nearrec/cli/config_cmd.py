"""`nearrec config show`."""

from __future__ import annotations

import json

import click

from nearrec.config import Settings


@click.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def show(as_json: bool) -> None:
    """Print the effective settings (environment, .env, defaults) with secrets masked."""
    values = Settings().masked()
    if as_json:
        click.echo(json.dumps(values, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("environment variable", "value")
    for name, value in values.items():
        table.add_row(f"NEARREC_{name.upper()}", "" if value is None else str(value))
    Console().print(table)
