"""``ticketq import``: a CSV or JSONL file of tickets queued as one batch
(``producers/imports.py``), with progress bars on stderr while it is read and queued, each
bad row on a line of its own, and ``--wait`` to follow the batch until every job is final.

Exit statuses: 0 when every valid row was accepted (with ``--wait``: when every job of the
batch succeeded); 1 when Redis failed (part way: how many rows were queued, and the same
command again queues the rest); 2 when the file cannot be read, a row is bad and nothing
was queued (a dry run that found bad rows too), or every row was rejected; 3 with
``--wait`` when some jobs failed or were cancelled; 130 on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import Annotated, TextIO, cast

import typer
from pydantic import TypeAdapter, ValidationError
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ops.cli.args import utf8
from ops.cli.console import err, fail, print_json, redis_errors, say
from ops.cli.jobs import JsonFlag, producer
from producers.files import BadRow, FileProblem, Format, file_format
from producers.imports import ImportOptions, ImportReport, Stage, check_file, import_file
from worker.contract import AccountId, JobState
from worker.store.batches import Batches
from worker.store.batches import Progress as BatchProgress

EXIT_FAILED_JOBS = 3
EXIT_INTERRUPTED = 130
POLL_SECONDS = 1.0  # between two looks at a batch being followed (longer for a large one)
# What each stage's bar counts, and the scale from what the import reports (bytes, lines...).
_UNITS = {Stage.HASHING: ("MB", 1e-6), Stage.VALIDATING: ("lines", 1), Stage.QUEUEING: ("rows", 1)}

imports_app = typer.Typer()


def _check_account(account_id: str) -> None:
    """A bad ``--account-id`` is one line, not one line for every row that would use it."""
    try:
        TypeAdapter(AccountId).validate_python(account_id)
    except ValidationError as exc:
        raise fail(f"--account-id: {exc.errors()[0]['msg']}") from None


@imports_app.command(
    "import",
    help="Queue every row of a CSV or JSONL file (- for standard input) as one batch: "
    "nothing is queued unless every row is valid (or --skip-invalid), and running the "
    "same file again queues no row twice. Prints the batch id last.",
)
def import_(
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="A .csv or .jsonl file.")],
    account_id: Annotated[
        str | None,
        typer.Option("--account-id", help="StackOne linked account of rows that name none."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: the extension's).")
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Queue the valid rows; the bad go to --rejects."),
    ] = False,
    rejects: Annotated[
        str | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="Write the bad rows here, in the input's format, with their line and reason.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only.")] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the batch until every job is final.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    utf8(FILE=file, account_id=account_id, format=fmt, rejects=rejects)
    if dry_run and wait:
        raise fail("--dry-run queues nothing for --wait to follow")
    if skip_invalid and rejects is None:
        raise fail("--skip-invalid needs --rejects FILE, where the rows left out are written")
    if account_id is not None:
        _check_account(account_id)
    name = "standard input" if file == "-" else file
    try:
        form = file_format(file, cast(Format | None, fmt))  # checked there
    except FileProblem as exc:
        raise fail(str(exc)) from None
    options = ImportOptions(account_id=account_id, skip_invalid=skip_invalid)
    bars = _Bars()
    try:
        report = _run(file, form, options, rejects, bars, dry_run)
    except FileProblem as exc:
        raise fail(f"{name}: {exc}") from None
    except OSError as exc:
        raise fail(f"{exc.filename or name}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        raise fail(_interrupted(bars.queued), EXIT_INTERRUPTED) from None
    _report(report, dry_run=dry_run, rejects=rejects, as_json=as_json, wait=wait)


def _run(
    file: str,
    form: Format,
    options: ImportOptions,
    rejects: str | None,
    bars: _Bars,
    dry_run: bool,
) -> ImportReport:
    """Check or import the file, writing its bad rows to ``rejects`` and stderr."""
    source = sys.stdin.buffer if file == "-" else file
    with _rejects_file(rejects, file, form) as written, bars:
        if dry_run:
            return check_file(
                source, form, options, rejects=written, on_progress=bars.show, on_reject=_say
            )
        with redis_errors(), producer() as sender:
            return import_file(
                sender,
                source,
                form,
                options,
                rejects=written,
                on_progress=bars.show,
                on_reject=_say,
            )


@contextlib.contextmanager
def _rejects_file(path: str | None, file: str, form: Format) -> Iterator[TextIO | None]:
    """The rejects file, made anew (a CSV one as the csv module asks); never the input."""
    if path is None:
        yield None
        return
    with contextlib.suppress(OSError):
        if file != "-" and os.path.samefile(path, file):
            raise fail("--rejects names the input file; give another")
    with open(path, "w", encoding="utf-8", newline="" if form == "csv" else None) as written:
        yield written


def _say(bad: BadRow) -> None:
    say(f"line {bad.line}: {bad.reason}", err)


def _interrupted(queued: int) -> str:
    if not queued:
        return "interrupted: nothing was queued"
    return (
        f"interrupted after {queued:,} rows were queued; run the same command again to queue "
        "the rest (rows already queued are not queued twice)"
    )


def _report(
    report: ImportReport, *, dry_run: bool, rejects: str | None, as_json: bool, wait: bool
) -> None:
    """What became of the file, then the batch followed if asked, the batch id last."""
    counts = {
        "batch_id": report.batch_id,
        "rows": report.rows,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "already_known": report.already_known,
    }
    if report.batch_id is None:
        if as_json:
            print_json(counts)
        elif dry_run:
            say(
                f"dry run: rows {report.rows:,}: valid {report.valid:,}, rejected "
                f"{report.rejected:,}; nothing was queued"
            )
        _not_queued(report, dry_run)
        return
    if not as_json:
        written = f" (written to {rejects})" if report.rejected and rejects else ""
        say(
            f"rows {report.rows:,}: accepted {report.accepted:,}, already known "
            f"{report.already_known:,}, rejected {report.rejected:,}{written}"
        )
    final = _waited(report.batch_id, as_json) if wait else None
    if as_json:
        print_json(counts if final is None else {**counts, "states": dict(final.counts)})
    else:
        if final is not None:
            say(_final_counts(final))
        say(report.batch_id)
    if final is not None and final.counts[JobState.SUCCEEDED] != final.total:
        raise typer.Exit(EXIT_FAILED_JOBS)


def _not_queued(report: ImportReport, dry_run: bool) -> None:
    """Exit 2 for a dry run that found a bad row, or why nothing was queued."""
    if dry_run:
        if report.rejected:
            raise typer.Exit(2)
        return
    if not report.valid:
        raise fail(f"no valid row among {report.rows:,}; nothing was queued")
    raise fail(
        f"bad rows: {report.rejected:,} of {report.rows:,}; nothing was queued (fix them, or "
        "give --skip-invalid --rejects FILE to queue the rest)"
    )


def _final_counts(final: BatchProgress) -> str:
    gone = final.counts["missing"]
    return (
        f"jobs {final.total:,}: succeeded {final.counts[JobState.SUCCEEDED]:,}, "
        f"failed {final.counts[JobState.FAILED]:,}, cancelled "
        f"{final.counts[JobState.CANCELLED]:,}" + (f", gone {gone:,}" if gone else "")
    )


def _waited(batch_id: str, as_json: bool) -> BatchProgress:
    """The batch followed until every job is final; a Ctrl-C stops following, not the batch."""
    try:
        with redis_errors(), producer() as sender:
            return _follow(Batches(sender.store), batch_id)
    except KeyboardInterrupt:
        if not as_json:
            say(batch_id)
        raise fail("stopped waiting; the batch goes on", EXIT_INTERRUPTED) from None


def _follow(batches: Batches, batch_id: str) -> BatchProgress:
    """Each look at the batch reads every job's state: a large batch is looked at less
    often, so that following it never keeps Redis busy."""
    with _Following() as shown:
        while True:
            started = time.monotonic()
            progress = batches.progress(batch_id)
            shown.show(progress)
            if progress.done:
                return progress
            time.sleep(max(POLL_SECONDS, 2 * (time.monotonic() - started)))


# Progress bars (stderr, and only on a terminal)


class _Count(ProgressColumn):
    """How far a bar is, in its unit (``28,001/30,001 lines``)."""

    def render(self, task: Task) -> Text:
        total = "" if task.total is None else f"/{task.total:,.0f}"
        return Text(f"{task.completed:,.0f}{total} {task.fields['unit']}")


class _Rate(ProgressColumn):
    """How fast a bar moves (``12,345/s``)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


class _Bars:
    """One bar per stage of the import, and where a Ctrl-C takes effect: at the next
    report (every 1,000 rows validated, every chunk queued), not wherever it lands.
    Pydantic turns a KeyboardInterrupt raised in its serializer into a validation error,
    which would make a bad row of it and go on; and a chunk is then stored whole or not at
    all, so the count of rows queued is exact. A second Ctrl-C stops at once (a read
    from standard input may be waiting)."""

    def __init__(self) -> None:
        self.queued = 0
        self._interrupted = False
        self._bars = _progress(TextColumn("{task.description:<10}"))
        self._tasks: dict[Stage, TaskID] = {}

    def __enter__(self) -> _Bars:
        self._default = signal.signal(signal.SIGINT, self._interrupt)
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()
        signal.signal(signal.SIGINT, self._default)

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True

    def show(self, stage: Stage, done: int, total: int | None) -> None:
        if stage is Stage.QUEUEING:
            self.queued = done
        if self._interrupted:
            raise KeyboardInterrupt
        unit, scale = _UNITS[stage]
        shown = None if total is None else total * scale
        if stage not in self._tasks:
            self._tasks[stage] = self._bars.add_task(stage.value, total=shown, unit=unit)
        self._bars.update(self._tasks[stage], completed=done * scale, total=shown)


class _Following:
    """The batch's bar while it is followed: jobs final of all; created, failed, retrying."""

    def __init__(self) -> None:
        self._bars = _progress(
            TextColumn("batch"),
            TextColumn("created {task.fields[created]:,}, failed {task.fields[failed]:,}, "
                       "retrying {task.fields[retrying]:,}"),
        )  # fmt: skip
        self._task = self._bars.add_task(
            "", total=None, unit="final", created=0, failed=0, retrying=0
        )

    def __enter__(self) -> _Following:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def show(self, progress: BatchProgress) -> None:
        self._bars.update(
            self._task,
            completed=progress.final,
            total=progress.total,
            created=progress.counts[JobState.SUCCEEDED],
            failed=progress.counts[JobState.FAILED],
            retrying=progress.counts[JobState.RETRYING],
        )


def _progress(label: ProgressColumn, *more: ProgressColumn) -> Progress:
    """Bars on stderr, gone when done; none when stderr is not a terminal."""
    return Progress(
        label,
        BarColumn(),
        _Count(),
        *more,
        _Rate(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
