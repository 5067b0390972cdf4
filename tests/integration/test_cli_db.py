"""`nearrec db` and `nearrec config` through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nearrec.cli.main import cli


def test_help_lists_groups() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for group in ("db", "config"):
        assert f"  {group} " in result.output


def test_db_status_against_configured_server(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["db", "status"], env={"NEARREC_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "NEARREC_DATABASE_URL" in result.output
    assert "up to date" in result.output


def test_config_show_masks_secrets() -> None:
    env = {
        "NEARREC_DATABASE_URL": "postgresql://app:hunter2@db.example:5432/rec",
        "NEARREC_QDRANT_API_KEY": "qdrant-secret-key",
        "NEARREC_API_KEYS": "k1:read,k2:write",
    }
    result = CliRunner().invoke(cli, ["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "qdrant-secret-key" not in result.output
    assert "k1" not in result.output
    assert "app:***@db.example" in result.output


def test_embedded_default_upgrade_and_status(pg_tmp: Path) -> None:
    """A real process on the embedded default: starts Postgres under the data dir, migrates, reports it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEARREC_")}
    env["NEARREC_DATA_DIR"] = str(pg_tmp / "data")
    for args in (["db", "upgrade"], ["db", "status"]):
        proc = subprocess.run(
            [sys.executable, "-m", "nearrec", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
    assert "embedded Postgres" in proc.stdout
    assert "up to date" in proc.stdout
    assert (pg_tmp / "data" / "pgdata" / "PG_VERSION").is_file()
    settings = (pg_tmp / "data" / "pgdata" / "postgresql.auto.conf").read_text().splitlines()
    assert "shared_buffers = '1GB'" in settings and "max_wal_size = '8GB'" in settings  # for bulk loads


def test_serve_refuses_a_public_bind_without_api_keys() -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"], env={"NEARREC_API_KEYS": ""})
    assert result.exit_code == 2  # a configuration problem
    assert "refusing to bind 0.0.0.0 without API keys" in result.output


def test_bad_api_keys_setting_names_the_entry_not_the_secret() -> None:
    from nearrec.api.auth import ApiKeys
    from nearrec.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        ApiKeys.parse("good-key:read,super-secret-value:admin")
    assert "entry 2" in str(err.value) and "super-secret-value" not in str(err.value)
