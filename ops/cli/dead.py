"""``ticketq dead``: failed jobs (dead letters), for the person who decides what becomes of
them: look at them, send them again, or forget them.

Like the rest of the command, every failure ends in one line on stderr and a non-zero exit.
A replay or purge reports what it did and what it skipped, and why, job by job.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from ops.cli.args import utf8
from ops.cli.console import (
    err,
    fail,
    load_settings,
    print_json,
    redis_errors,
    safe,
    say,
    utc_time,
    wide_console,
)
from worker.contract import ErrorKind, JobRecord
from worker.queue.app import create_app
from worker.queue.dispatch import replay_failed
from worker.settings import Settings
from worker.store.deadletters import DeadLetters, Report, Selection
from worker.store.jobs import JobStore

dead_app = typer.Typer(
    help="Failed jobs (dead letters): list, replay, purge.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

MESSAGE_CHARS = 80

JobIds = Annotated[list[str] | None, typer.Argument(metavar="JOB_ID", help="Failed jobs, by id.")]
AllFlag = Annotated[bool, typer.Option("--all", help="Every failed job the filters admit.")]
AccountFilter = Annotated[
    str | None, typer.Option("--account-id", help="Only jobs of this linked account.")
]
ReasonFilter = Annotated[
    ErrorKind | None, typer.Option("--reason", help="Only jobs whose error has this kind.")
]


def _dead_letters(settings: Settings) -> DeadLetters:
    return DeadLetters(JobStore.from_settings(settings, ride_out_restarts=False))


@dead_app.command("list", help="Failed jobs, most recently failed first.")
def list_jobs(
    account_id: AccountFilter = None,
    reason: ReasonFilter = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    utf8(account_id=account_id)
    with redis_errors():
        records = _dead_letters(load_settings()).recent(
            Selection(account_id=account_id, reason=reason), limit
        )
    if as_json:
        print_json([record.public() for record in records])
    else:
        _print_table(records)


def _print_table(records: list[JobRecord]) -> None:
    table = Table("job_id", "account", "ref", "kind", "status", "message", "attempts", "failed at")
    for record in records:
        error = record.error
        message = error.message if error else ""
        if len(message) > MESSAGE_CHARS:
            message = message[: MESSAGE_CHARS - 1] + "…"
        cells = (
            record.job_id,
            record.account_id,
            record.ref or "",
            error.kind if error else "",
            error.status if error and error.status is not None else "",
            message,
            record.attempts,
            utc_time(record.finished_at),
        )
        table.add_row(*(safe(cell) for cell in cells))
    wide_console(200).print(table, highlight=False)


@dead_app.command(help="Send failed jobs again; one whose ticket may exist is reconciled first.")
def replay(
    job_ids: JobIds = None,
    all_jobs: AllFlag = False,
    reason: ReasonFilter = None,
    account_id: AccountFilter = None,
    send_anyway: Annotated[
        bool,
        typer.Option(
            "--send-anyway",
            help="You checked the customer's tool and the ticket does not exist: send "
            "without reconciling (for an uncertain job whose candidates are not its ticket).",
        ),
    ] = False,
) -> None:
    utf8(JOB_ID=job_ids, account_id=account_id)
    if send_anyway and all_jobs:
        # A person checks particular jobs' candidates; a blanket "send anyway" would risk
        # a duplicate for every job whose ticket may exist.
        raise fail("--send-anyway takes the JOB_IDs you checked, not --all")
    settings = load_settings()
    dead = _dead_letters(settings)
    with redis_errors():
        chosen = _chosen(dead, job_ids, all_jobs, Selection(account_id=account_id, reason=reason))
        report = replay_failed(
            create_app(settings), dead, chosen, settings.bulk_batch, reconcile=not send_anyway
        )
    if report.unsent is not None:
        say(
            f"warning: the replayed jobs are queued but could not be sent now "
            f"({report.unsent}); a worker sends them after TICKETQ_REQUEUE_AFTER",
            err,
        )
    _summarize("replayed", report)


@dead_app.command(help="Delete failed jobs and the ref and idempotency keys that name them.")
def purge(
    job_ids: JobIds = None,
    all_jobs: AllFlag = False,
    reason: ReasonFilter = None,
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", min=0, metavar="DAYS", help="Only jobs failed before."),
    ] = None,
    account_id: AccountFilter = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm --all.")] = False,
) -> None:
    utf8(JOB_ID=job_ids, account_id=account_id)
    dead = _dead_letters(load_settings())
    before = None if older_than is None else datetime.now(UTC).timestamp() - older_than * 86400
    selection = Selection(account_id=account_id, reason=reason, failed_before=before)
    with redis_errors():
        chosen = _chosen(dead, job_ids, all_jobs, selection)
        if all_jobs and chosen and not yes:
            _confirm(f"Delete {len(chosen)} failed jobs for good?")
        report = dead.purge(chosen)
    _summarize("purged", report)


def _chosen(
    dead: DeadLetters, job_ids: list[str] | None, all_jobs: bool, selection: Selection
) -> list[str]:
    """The ids given, or with ``--all`` every failed job the filters admit; never both."""
    if all_jobs:
        if job_ids:
            raise fail("give JOB_IDs or --all, not both")
        return dead.matching(selection)
    if not job_ids:
        raise fail("give the JOB_IDs of failed jobs, or --all")
    if selection != Selection():
        raise fail("--account-id, --reason and --older-than select jobs for --all only")
    return job_ids


def _confirm(question: str) -> None:
    try:
        confirmed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer: standard input closed
        confirmed = False
    if not confirmed:
        raise fail("nothing deleted (confirm, or pass --yes)", 1)


def _summarize(verb: str, report: Report) -> None:
    """One line per skipped job on stderr, then the summary; exit 1 if any was skipped, or
    if Redis failed part way (after saying how many were done before it did)."""
    for skipped in report.skipped:
        say(f"skipped {skipped.job_id}: {skipped.reason}", err)
    if report.interrupted is not None:
        raise fail(
            f"{verb} {len(report.done)}, skipped {len(report.skipped)}, then Redis failed: "
            f"{report.interrupted}; run it again for the rest",
            1,
        )
    counts = Counter(skipped.why for skipped in report.skipped)
    why = (
        ": " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) if counts else ""
    )
    say(f"{verb} {len(report.done)}, skipped {len(report.skipped)}{why}")
    if report.skipped:
        raise typer.Exit(1)
