"""`nearrec` starts fast because nothing heavy is imported before a command uses it (timings: bench/cli.py)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

from nearrec.cli.main import COMMANDS, cli, load_command

HEAVY = {
    "torch",
    "sentence_transformers",
    "transformers",
    "onnxruntime",
    "qdrant_client",
    "qdrant_edge",
    "fastapi",
    "starlette",
    "uvicorn",
    "pyarrow",
    "scipy",
    "matplotlib",
    "numpy",
    "rich",
    "implicit",
    "alembic",
}
PROBE = "import json, sys\n{body}\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy})))"


def _heavy_modules(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=sorted(HEAVY))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_imports_no_heavy_library() -> None:
    assert _heavy_modules("import nearrec.cli.main") == []


def test_help_imports_no_heavy_library_and_no_command_module() -> None:
    body = (
        "from nearrec.cli.main import cli\n"
        "try:\n    cli(['--help'], prog_name='nearrec')\nexcept SystemExit:\n    pass\n"
        "assert not [m for m in sys.modules if m.endswith('_cmd')], 'a command module was imported'"
    )
    assert _heavy_modules(body) == []


def test_the_probe_sees_a_heavy_import() -> None:  # the check above could fail
    assert "numpy" in _heavy_modules("import nearrec.model.cf")


def test_help_summaries_match_the_commands() -> None:
    for spec in COMMANDS:
        command = load_command(spec)
        assert command.name == spec.name
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert " ".join(first.split()) == spec.summary, spec.name
    assert cli.list_commands(None) == [s.name for s in COMMANDS]  # type: ignore[arg-type]


def test_db_status_needs_no_alembic_and_reads_the_same_head() -> None:
    assert _heavy_modules("import nearrec.cli.db_cmd") == []
    from alembic.script import ScriptDirectory

    from nearrec.postgres import migrate

    url = "postgresql+psycopg://nobody@localhost/none"
    alembic_head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    assert migrate.head_revision(url) == alembic_head is not None
