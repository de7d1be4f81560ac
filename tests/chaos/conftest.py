"""Chaos tests: real processes, real signals, real sockets, on 127.0.0.1 only.

Each scenario starts its own stack (private redis-server with AOF, the StackOne stand-in
and ``celery worker`` processes) with the short timings of ``support.CHAOS_ENV``, strikes
while work is in flight, and checks the product promise: every accepted job becomes
exactly one ticket or one explained failure. Each scenario adds a row to a table printed
at the end of the session: what was broken, what was submitted, created (by ticketq, and by
someone else where a scenario has such tickets), duplicated, adopted wrongly and lost, and
the command that runs it again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from ops.fakeapi_client import FakeApiControl, FakeApiOptions
from ops.stack import LocalStack, StackConfig
from tests.chaos.support import CHAOS_ENV, Row

ROWS = pytest.StashKey[list[Row]]()
OUTCOMES = pytest.StashKey[dict[str, str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: kills workers and Redis mid-flight; real processes and signals"
    )
    config.stash[ROWS] = []
    config.stash[OUTCOMES] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    outcomes = item.config.stash[OUTCOMES]
    xfail = hasattr(report, "wasxfail")
    if report.when == "call":
        outcomes[item.nodeid] = (
            ("xfailed" if report.skipped else "XPASS") if xfail else report.outcome
        )
    elif report.failed:
        outcomes[item.nodeid] = f"error in {report.when}"
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = terminalreporter.config.stash.get(ROWS, [])
    if not rows:
        return
    outcomes = terminalreporter.config.stash.get(OUTCOMES, {})
    for row in rows:
        results = sorted(
            {outcome for nodeid, outcome in outcomes.items() if nodeid.startswith(row.nodeid)}
        )
        row.result = ",".join(results) or "?"
    header = (
        "scenario",
        "fault",
        "jobs",
        "ok",
        "failed",
        "tickets",
        "by others",
        "dups",
        "wrong",
        "lost",
        "adopted/uncertain",
        "secs",
        "result",
        "reproduce",
    )
    lines = [
        (
            row.scenario,
            row.fault,
            str(row.submitted),
            str(row.succeeded),
            str(row.failed),
            str(row.tickets),
            _optional(row.elsewhere),
            str(row.duplicates),
            _optional(row.wrong),
            str(row.lost),
            row.adopted_uncertain,
            f"{row.seconds:.1f}",
            row.result,
            f"`.venv/bin/pytest '{row.nodeid}'`",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    terminalreporter.section("ticketq chaos scenarios")
    for cells in [header, tuple("-" * w for w in widths), *lines]:  # a Markdown table
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        terminalreporter.write_line("| " + " | ".join(padded) + " |")


def _optional(count: int | None) -> str:
    return "-" if count is None else str(count)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[Row], None]:
    """Adds this scenario's row to the end-of-session table."""
    return request.config.stash[ROWS].append


class StackFactory:
    """Starts chaos stacks, each logging under its own directory, and stops them all."""

    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir
        self._stacks: list[LocalStack] = []
        self._controls: list[FakeApiControl] = []

    def __call__(
        self,
        *,
        workers: int = 1,
        concurrency: int = 4,
        latency_ms: float = 0.0,
        env: dict[str, str] | None = None,
    ) -> LocalStack:
        config = StackConfig(
            run_dir=self._run_dir / f"stack-{len(self._stacks)}",
            workers=workers,
            worker_concurrency=concurrency,
            fake_api=FakeApiOptions(latency_ms=latency_ms),
            settings_env={**CHAOS_ENV, **(env or {})},
        )
        stack = LocalStack(config)
        self._stacks.append(stack)  # stopped even if it fails half-way through starting
        stack.start()
        return stack

    def fake_api(self, stack: LocalStack) -> FakeApiControl:
        """The stand-in's control API for one of these stacks."""
        control = FakeApiControl(stack.fake_api_url)
        self._controls.append(control)
        return control

    def stop_all(self) -> None:
        for control in self._controls:
            control.close()
        for stack in self._stacks:
            stack.stop()


@pytest.fixture
def chaos_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Stacks for this test; logs stay under its tmp_path for a person to read."""
    factory = StackFactory(tmp_path)
    yield factory
    factory.stop_all()
