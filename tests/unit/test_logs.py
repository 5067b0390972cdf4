"""Logging is configured from Settings, so a value in ``.env`` counts as much as one in the environment."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nearrec.cli.main import cli
from nearrec.logs import JsonFormatter, TextFormatter


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("restore_logging")
def test_log_settings_from_dotenv_drive_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NEARREC_LOG_FORMAT", "NEARREC_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("NEARREC_LOG_FORMAT=json\nNEARREC_LOG_LEVEL=info\n", encoding="utf-8")
    assert CliRunner().invoke(cli, ["config", "show", "--json"]).exit_code == 0
    root = logging.getLogger()
    assert root.level == logging.INFO
    assert [type(h.formatter) for h in root.handlers] == [JsonFormatter]

    (tmp_path / ".env").unlink()
    assert CliRunner().invoke(cli, ["config", "show", "--json"]).exit_code == 0
    assert root.level == logging.WARNING
    assert [type(h.formatter) for h in root.handlers] == [TextFormatter]
