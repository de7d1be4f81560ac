"""``ticketq demo``: the whole pipeline on this machine, with nothing set up beforehand.

It starts (or reuses) Redis, the StackOne stand-in and real worker processes, submits a
sample in which some tickets are invalid and some meet injected faults, shows progress
live and ends with one row per ticket. It exits non-zero if any accepted job did not
finish, or if the stand-in created a different number of tickets than jobs succeeded.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ops.fakeapi_client import FakeApiControl, FakeApiOptions
from ops.redis_server import redis_answers
from ops.stack import LocalStack, StackConfig
from producers.client import InvalidJob, Producer
from worker.contract import JobRecord, JobState
from worker.settings import Settings, redacted_url

ACCOUNT_ID = "acct-demo"
FINISH_TIMEOUT = 120.0

# Faults the stand-in injects, by ticket: each runs the pipeline down another path.
FAULTS: dict[int, tuple[str, list[dict[str, Any]]]] = {
    1: ("500 twice, then created: retried in the worker", [{"status": 500}] * 2),
    2: (
        "429 Retry-After 3: every worker pauses, not counted",
        [{"status": 429, "retry_after": "3"}],
    ),
    3: ("slow answer (1.5 s)", [{"delay_ms": 1500}]),
    4: (
        "422 from the provider: not retried",
        [
            {
                "status": 422,
                "message": "Provider rejected the ticket: project is archived",
                "provider_errors": [
                    {
                        "status": 400,
                        "url": "https://jira.example/rest/api/2/issue",
                        "raw": {"errorMessages": ["project is archived"]},
                    }
                ],
            }
        ],
    ),
    5: ("503 on every attempt: retries run out", [{"status": 503}] * 4),
}
INVALID: list[tuple[str, dict[str, Any]]] = [
    ("priority out of range", {"title": "Bad priority", "priority": {"value": "urgent"}}),
    ("misspelt field", {"titel": "Typo in a field name"}),
    ("title too long", {"title": "x" * 1_500}),
]


@dataclass
class Row:
    ref: str
    note: str
    record: JobRecord | None = None
    refused: str | None = None  # why the producer refused it at submit
    job_id: str | None = None


def run_demo(settings: Settings, *, workers: int, tickets: int, console: Console) -> int:
    run = secrets.token_hex(3)
    run_dir = Path(tempfile.mkdtemp(prefix=f"ticketq-demo-{run}-"))
    reuse = settings.redis_url if redis_answers(settings.redis_url) else None
    console.print(
        f"[bold]ticketq demo[/bold] run {run}: "
        + (
            f"using the Redis answering at {redacted_url(reuse)}"
            if reuse
            else "no Redis answers at TICKETQ_REDIS_URL, starting an embedded one"
        )
    )
    config = StackConfig(
        run_dir=run_dir,
        workers=workers,
        redis_url=reuse,
        api_key=(
            settings.stackone_api_key.get_secret_value()
            if settings.stackone_api_key
            else secrets.token_urlsafe(24)
        ),
        fake_api=FakeApiOptions(latency_ms=60),
        settings_env={
            "TICKETQ_MAX_ATTEMPTS": "4",
            "TICKETQ_BACKOFF_BASE": "0.3",
            "TICKETQ_INPROCESS_MAX_DELAY": "2",
        },
    )
    if settings.stackone_api_key is None:
        console.print("No STACKONE_API_KEY set: the stand-in and workers share a generated one.")
    with LocalStack(config) as stack:
        console.print(
            f"Started: stand-in StackOne API at {stack.fake_api_url}, {workers} worker "
            f"processes (logs in {run_dir})."
        )
        producer = Producer(stack.settings())
        control = FakeApiControl(stack.fake_api_url)
        rows = _submit_sample(producer, control, run, tickets)
        finished = _follow(producer, rows, console)
        stats = control.stats()
    _print_table(rows, console)
    return _summarize(rows, stats, f"[{run}]", finished, console)


def _submit_sample(
    producer: Producer, control: FakeApiControl, run: str, tickets: int
) -> list[Row]:
    rows: list[Row] = []
    for n in range(1, tickets + 1):
        title = f"[{run}] Demo ticket {n}"
        note = "created"
        if n in FAULTS:
            note, steps = FAULTS[n]
            control.script(title, *steps)
        ref = f"demo-{run}-{n:03d}"
        body = {
            "title": title,
            "content": [{"plain": f"Submitted by the demo, run {run}"}],
            "priority": {"value": "medium"},
            "tags": ["demo"],
        }
        handle = producer.submit(ACCOUNT_ID, body, ref=ref, idempotency_key=ref)
        rows.append(Row(ref=ref, note=note, job_id=handle.job_id))
    # The same idempotency key again: the same job comes back, no second ticket is made.
    first = rows[0]
    again = producer.submit(
        ACCOUNT_ID, {"title": f"[{run}] Demo ticket 1"}, ref=first.ref, idempotency_key=first.ref
    )
    first.note += f"; resubmitted with its key -> same job: {again.job_id == first.job_id}"
    for n, (why, body) in enumerate(INVALID, start=1):
        row = Row(ref=f"demo-{run}-bad-{n}", note=f"invalid: {why}")
        try:
            producer.submit(ACCOUNT_ID, body, ref=row.ref)
        except InvalidJob as exc:
            row.refused = str(exc)
        rows.append(row)
    return rows


def _follow(producer: Producer, rows: list[Row], console: Console) -> bool:
    """Poll job records until every accepted job is final; True if they all got there."""
    accepted = [row for row in rows if row.job_id]
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + FINISH_TIMEOUT
    last = ""
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("jobs finished", total=len(accepted), states="")
        while True:
            for row in accepted:
                assert row.job_id is not None
                row.record = producer.get(row.job_id)
            counts: dict[str, int] = {}
            for row in accepted:
                state = row.record.state if row.record else "missing"
                counts[state] = counts.get(state, 0) + 1
            done = sum(counts.get(s, 0) for s in (JobState.SUCCEEDED, JobState.FAILED))
            states = "  ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            if not console.is_terminal and states != last:
                # No live bar without a terminal (CI logs): print each change instead.
                console.print(f"{done}/{len(accepted)} finished: {states}")
            last = states
            progress.update(task, completed=done, states=states)
            if done == len(accepted):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)


def _print_table(rows: list[Row], console: Console) -> None:
    table = Table(title="Results", show_lines=False)
    for column in ("ref", "what happened", "state", "tries", "id", "remote_id / error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if row.refused:
            table.add_row(row.ref, row.note, "[red]refused[/red]", "0", "", row.refused[:90])
            continue
        record = row.record
        if record is None:
            table.add_row(row.ref, row.note, "missing", "", "", "")
            continue
        colour = {"succeeded": "green", "failed": "red"}.get(record.state, "yellow")
        detail = (
            (record.ticket.remote_id or "")
            if record.ticket
            else (record.error.message[:90] if record.error else "")
        )
        table.add_row(
            row.ref,
            row.note,
            f"[{colour}]{record.state}[/{colour}]",
            str(record.attempts),
            record.ticket.id if record.ticket else "",
            detail,
        )
    console.print(table)


def _summarize(
    rows: list[Row], stats: dict[str, Any], title_prefix: str, finished: bool, console: Console
) -> int:
    """Count only this run's titles: a reused Redis may still hold an older run's messages."""
    records = [row.record for row in rows if row.record]
    succeeded = sum(1 for r in records if r.state == JobState.SUCCEEDED)
    failed = sum(1 for r in records if r.state == JobState.FAILED)
    refused = sum(1 for row in rows if row.refused)
    ours = {
        t: n for t, n in stats.get("created_by_title", {}).items() if t.startswith(title_prefix)
    }
    created = sum(ours.values())
    duplicates = sum(n - 1 for n in ours.values() if n > 1)
    console.print(
        f"{succeeded} succeeded, {failed} failed, {refused} refused at submit; the stand-in "
        f"created {created} tickets for them ({duplicates} duplicates)."
    )
    if not finished:
        console.print(f"[red]Some jobs did not finish within {FINISH_TIMEOUT:.0f}s.[/red]")
        return 1
    if created != succeeded or duplicates:
        console.print("[red]Tickets created and jobs succeeded disagree.[/red]")
        return 1
    return 0
