"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

The compose file is validated against the Compose Specification's JSON schema (the one
check-jsonschema vendors), then read for the settings the design depends on.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


def _check_jsonschema() -> Path:
    binary = Path(sys.executable).parent / "check-jsonschema"
    assert binary.is_file(), f"{binary} missing: install the dev extra (pip install -e '.[dev]')"
    return binary


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_check_jsonschema()), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _load_compose() -> dict[str, Any]:
    # PyYAML is not installed; ruamel.yaml comes with check-jsonschema.
    yaml = pytest.importorskip("ruamel.yaml")
    data = yaml.YAML(typ="safe", pure=True).load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_file_matches_the_compose_spec() -> None:
    result = _validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("condition: service_healthy", "condition: service_healty"),
        ("stop_grace_period:", "stop_grace:"),
        ("    image: redis:7", "    image: [redis]"),
    ],
)
def test_the_schema_check_rejects_a_broken_file(tmp_path: Path, old: str, new: str) -> None:
    """The check above would catch a mistake: a broken copy fails it."""
    text = COMPOSE.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    assert _validate(broken).returncode != 0


def test_redis_keeps_every_write() -> None:
    redis = _load_compose()["services"]["redis"]
    assert redis["image"] == "redis:7"
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in _load_compose()["volumes"]
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_worker_talks_to_the_stand_in_after_redis_is_healthy() -> None:
    services = _load_compose()["services"]
    worker = services["worker"]
    assert worker["command"] == ["ticketq", "worker"]
    env = worker["environment"]
    assert env["TICKETQ_REDIS_URL"] == "redis://redis:6379/0"
    assert env["STACKONE_BASE_URL"] == "http://fake-api:8080"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"

    fake = services["fake-api"]
    assert fake["command"] == ["ticketq", "fake-api", "--host", "0.0.0.0", "--port", "8080"]
    # The stand-in checks the very key the worker sends; it is a placeholder, not a secret.
    assert fake["environment"]["STACKONE_API_KEY"] == env["STACKONE_API_KEY"]
    assert "not-a-secret" in env["STACKONE_API_KEY"]
    for name in ("fake-api", "worker"):
        assert services[name]["build"] == "."


def test_no_port_clashes_with_a_system_redis() -> None:
    redis = _load_compose()["services"]["redis"]
    assert "ports" not in redis  # reached as redis:6379 inside the network only


def test_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(line.startswith("RUN pip install .") for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "no USER instruction: the image would run as root"
    assert users[-1] not in {"root", "0"}
    # Everything the package build reads is copied in.
    copied = " ".join(line for line in lines if line.startswith("COPY "))
    for needed in ("pyproject.toml", "README.md", "worker/", "producers/", "ops/"):
        assert needed in copied


def test_the_commands_compose_runs_exist() -> None:
    """`ticketq fake-api --host --port` and `ticketq worker`, as the services call them."""
    import typer.main

    from ops.cli.app import app

    group = typer.main.get_command(app)
    commands: dict[str, Any] = getattr(group, "commands", {})
    assert "worker" in commands
    fake_api_options = {opt for param in commands["fake-api"].params for opt in param.opts}
    assert {"--host", "--port"} <= fake_api_options
