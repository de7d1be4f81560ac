"""The shape of the code: what may import what, what importing does, what is public.

The pipeline's stages are layers (``[tool.importlinter]`` in pyproject.toml): delivery
uses limits, queue and the StackOne client, which use the store, which uses the contract
and the settings; producers never load delivery or the HTTP client. Importing builds no
Celery app and reads no settings, so a service that embeds ``producers`` with its own
``Settings`` is not stopped by a variable meant for the workers.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import producers

ROOT = Path(__file__).resolve().parents[2]
# A value every Settings() refuses (the visibility timeout is shorter than one delivery).
UNUSABLE_ENV = {"TICKETQ_VISIBILITY_TIMEOUT": "10", "STACKONE_API_KEY": ""}

PRODUCERS_API = [
    "BatchHandle",
    "BatchNotFound",
    "BrokerError",
    "BrokerUnavailable",
    "ErrorKind",
    "InvalidJob",
    "JobError",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "Producer",
    "Rejected",
    "Settings",
    "TicketCreate",
    "TicketIds",
    "submit",
    "submit_many",
]


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **UNUSABLE_ENV}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )


# The benchmark's textbook Celery task is a module-level app on purpose (it is the baseline,
# written as Celery's docs show; `celery -A ops.bench.baseline` loads it), and the bench's
# scenarios import it to submit to it.
BENCH = "ops.bench"


def modules(package: str) -> list[str]:
    """Every module of a package, except the ``__main__`` ones that run when imported."""
    root = __import__(package)
    found = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if not info.name.endswith("__main__") and not info.name.startswith(BENCH):
            found.append(info.name)
    return found


def test_the_import_rules_between_stages_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")

    result = subprocess.run(
        [str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_importing_any_module_builds_no_app_and_reads_no_settings() -> None:
    names = modules("worker") + modules("producers") + modules("ops")
    code = "\n".join(
        [
            "import importlib",
            f"for name in {names!r}: importlib.import_module(name)",
            "import celery._state",
            "print(len(list(celery._state._apps)))",
        ]
    )

    result = python(code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def loaded_after(statement: str, *prefixes: str) -> list[str]:
    """The modules starting with these prefixes that ``statement`` loads, in a fresh
    interpreter whose worker settings are unusable."""
    listing = f"sorted(m for m in sys.modules if m.startswith({prefixes!r}))"
    result = python(f"import sys\n{statement}\nprint({listing})")
    assert result.returncode == 0, result.stderr
    loaded: list[str] = ast.literal_eval(result.stdout.strip())
    return loaded


def test_producers_import_with_unusable_worker_settings_and_export_the_contract() -> None:
    statement = "from producers import Settings, TicketCreate, JobRecord, JobState"
    never = ("worker.delivery", "worker.limits", "worker.stackone", "ops", "httpx", "aiohttp")

    assert loaded_after(statement, *never) == []


def test_producers_exports_exactly_its_public_surface() -> None:
    public = sorted(
        name
        for name, value in vars(producers).items()
        if not name.startswith("_") and not isinstance(value, type(producers))
    )

    assert producers.__all__ == PRODUCERS_API
    assert public == PRODUCERS_API


def test_the_command_loads_the_stand_in_and_the_worker_only_for_their_own_commands() -> None:
    assert loaded_after("import ops.cli.app", "ops.fakeapi", "worker.delivery") == []
