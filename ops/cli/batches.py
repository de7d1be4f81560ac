"""``ticketq batch``, ``batches``, ``export`` and ``cancel``: a bulk submission followed,
listed, reported row by row, and stopped.

A batch may hold hundreds of thousands of jobs, so every command reads it a page at a time
(``Batches.pages``): memory stays bounded and no one command holds Redis for long. Outside
text (ids, refs, file names, StackOne's messages) reaches a console through ``safe`` and
an export through the csv and json modules, never as markup. Like the rest of the
command, a failure ends in one line and a non-zero exit; Ctrl-C ends with status 130.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.progress import Progress as Bars
from rich.table import Column, Table
from rich.text import Text

from ops.cli.args import utf8
from ops.cli.console import (
    err,
    fail,
    load_settings,
    out,
    print_json,
    redis_errors,
    safe,
    say,
    utc_time,
    wide_console,
)
from producers.client import BrokerError, broker_errors
from worker.store.batches import STATES, Batches, BatchInfo, JobRow, Progress, Summary
from worker.store.jobs import CancelCode, Cancelled, JobStore
from worker.text import printable

batches_app = typer.Typer()

COLUMNS = (
    "line",
    "ref",
    "job_id",
    "state",
    "ticket_id",
    "remote_id",
    "error_kind",
    "error_message",
    "attempts",
)
WATCH_INTERVAL = 1.0  # seconds between two looks at a watched batch
RATE_WINDOW = 10  # looks a watched batch's rate is measured over
CANCEL_PAGE = 500  # jobs given to cancel_many at once

BatchId = Annotated[str, typer.Argument(metavar="BATCH_ID", help="The batch, by id.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class Stream(Protocol):
    """Where an export is written: standard output or the file being written."""

    def write(self, text: str, /) -> int: ...


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def _batches() -> Batches:
    return Batches(JobStore.from_settings(load_settings(), ride_out_restarts=False))


def _info(batches: Batches, batch_id: str) -> BatchInfo:
    """The batch's record; an unknown batch ends the command as an unknown job does."""
    info = batches.info(batch_id)
    if info is None:
        raise fail(f"no batch {batch_id}", 1)
    return info


# ticketq batch / batches


@batches_app.command(help="Show a batch: its jobs' states, rate, and the rows it was made of.")
def batch(
    batch_id: BatchId,
    as_json: JsonFlag = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Follow the batch with live bars until every job is final (Ctrl-C stops "
            "watching; the batch goes on), then show it.",
        ),
    ] = False,
) -> None:
    utf8(BATCH_ID=batch_id)
    with redis_errors(), interrupted_at_130("stopped watching; the batch goes on"):
        batches = _batches()
        info = _info(batches, batch_id)
        if watch:
            _watch(batches, info, err if as_json else out)
            info = batches.info(batch_id) or info  # its counts may have grown meanwhile
        summary = Summary(info, batches.progress(batch_id), time.time())
    if as_json:
        print_json(summary.public())
    else:
        _print_summary(summary)


def _print_summary(summary: Summary) -> None:
    info, progress = summary.info, summary.progress
    rows = [
        ("batch", info.batch_id),
        ("account", info.account_id or "(several)"),
        ("source", info.source or "-"),
        ("opened", utc_time(info.opened_at)),
        ("finished", utc_time(summary.finished_at) or ("-" if progress.done else "not yet")),
        (
            "rows",
            f"{info.rows:,} read: {info.accepted:,} accepted, "
            f"{info.already_known:,} already known, {info.rejected:,} rejected",
        ),
        ("jobs", f"{progress.final:,} of {progress.total:,} done"),
        *((state, f"{n:,}") for state, n in summary.public()["counts"].items()),
        ("rate", _rate(summary.rate)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        out.print(Text.assemble((name.ljust(width), "bold"), "  ", safe(value)), soft_wrap=True)


def _rate(per_second: float | None) -> str:
    return "-" if per_second is None else f"{per_second:,.1f} jobs/s"


@dataclass
class _Pace:
    """A watched batch's rate over its last looks, and the time left at that rate."""

    looks: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))

    def add(self, done: int) -> None:
        self.looks.append((time.monotonic(), done))

    @property
    def rate(self) -> float | None:
        if len(self.looks) < 2:
            return None
        (start, first), (end, last) = self.looks[0], self.looks[-1]
        return (last - first) / (end - start) if end > start else None

    def left(self, remaining: int) -> str:
        rate = self.rate
        if remaining == 0:
            return "0:00:00 left"
        if not rate:
            return "time left unknown"
        return f"{timedelta(seconds=round(remaining / rate))} left"


def _watch(batches: Batches, info: BatchInfo, console: Console) -> None:
    """Live bars (done, succeeded, failed) until every job is final; without a terminal
    (a pipe, CI logs), one line each time the counts change."""
    pace = _Pace()
    shown = ""
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Bars(*columns, console=console, disable=not console.is_terminal) as bars:
        done = bars.add_task("done", total=None, detail="")
        succeeded = bars.add_task("succeeded", total=None, detail="")
        failed = bars.add_task("failed", total=None, detail="")
        while True:
            progress = batches.progress(info.batch_id)
            pace.add(progress.final)
            pace_now = f"{_rate(pace.rate)}, {pace.left(progress.total - progress.final)}"
            total = progress.total
            bars.update(done, total=total, completed=progress.final, detail=pace_now)
            bars.update(succeeded, total=total, completed=progress.counts["succeeded"])
            bars.update(failed, total=total, completed=progress.counts["failed"])
            line = f"{progress.final:,}/{total:,} done: {_states(progress)}; {pace_now}"
            if not console.is_terminal and line != shown:
                say(line, console)
                shown = line
            if progress.done:
                return
            time.sleep(WATCH_INTERVAL)


def _states(progress: Progress) -> str:
    """The states a batch's jobs are in, those with jobs only: ``succeeded 7, failed 1``."""
    return ", ".join(
        f"{state} {progress.counts[state]:,}" for state in STATES if progress.counts[state]
    )


@batches_app.command(
    "batches",
    help="Recent batches, newest first, with their progress (each listed batch's jobs are "
    "read to count them: a long list of large batches takes a while).",
)
def list_batches(
    account_id: Annotated[
        str | None, typer.Option("--account-id", help="Only batches of this linked account.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Show at most this many.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    utf8(account_id=account_id)
    with redis_errors():
        batches = _batches()
        now = time.time()
        summaries = [
            Summary(info, batches.progress(info.batch_id), now)
            for info in batches.recent(limit, account_id)
        ]
    if as_json:
        print_json([summary.public() for summary in summaries])
        return
    table = Table(
        # The id is what batch, export and cancel take: never cut, whatever the width.
        Column("batch_id", no_wrap=True, min_width=32),
        "opened",
        "account",
        "source",
        "rows",
        "accepted",
        "known",
        "rejected",
        "done",
        "finished",
    )
    for summary in summaries:
        info, progress = summary.info, summary.progress
        cells = (
            info.batch_id,
            utc_time(info.opened_at),
            info.account_id or "(several)",
            info.source or "",
            f"{info.rows:,}",
            f"{info.accepted:,}",
            f"{info.already_known:,}",
            f"{info.rejected:,}",
            f"{progress.final:,}/{progress.total:,}",
            utc_time(summary.finished_at),
        )
        table.add_row(*(safe(cell) for cell in cells))
    wide_console(200).print(table, highlight=False)


# ticketq export


@batches_app.command(
    help="One line per job of a batch, in input order: line, ref, job_id, state, ticket_id, "
    "remote_id, error_kind, error_message, attempts. CSV with a header, or JSON lines; read "
    "and written a page at a time. On a terminal, control characters in CSV show as escapes.",
)
def export(
    batch_id: BatchId,
    export_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format", help="csv or jsonl (default: jsonl for a FILE ending .jsonl, else csv)."
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Write to FILE (written whole, then moved in place), not standard output; an "
            "existing FILE is refused unless --force.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing FILE.")] = False,
) -> None:
    utf8(BATCH_ID=batch_id, output=output)
    chosen = export_format or _format_of(output)
    target = None if output in (None, "-") else Path(output)
    if target is not None and target.exists() and not force:
        raise fail(f"{target}: exists (pass --force to overwrite)")
    with redis_errors():
        batches = _batches()
        _info(batches, batch_id)
    with interrupted_at_130("export stopped"):
        if target is None:
            _export_to_stdout(batches, batch_id, chosen)
        else:
            written = _export_to_file(batches, batch_id, chosen, target, force)
            say(f"wrote {written:,} rows to {target}", err)


def _format_of(output: str | None) -> ExportFormat:
    is_jsonl = output is not None and output.endswith(".jsonl")
    return ExportFormat.JSONL if is_jsonl else ExportFormat.CSV


def _export_to_stdout(batches: Batches, batch_id: str, chosen: ExportFormat) -> None:
    """UTF-8 whatever the locale; a reader that stops early (``| head``) ends it quietly."""
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        _write_rows(batches, batch_id, _writer(chosen, stream, sys.stdout.isatty()))
        stream.flush()
    except BrokenPipeError:
        # Python would complain again while flushing at exit: point stdout at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(1) from None
    finally:
        stream.detach()


def _export_to_file(
    batches: Batches, batch_id: str, chosen: ExportFormat, target: Path, force: bool
) -> int:
    """Written beside ``target``, then moved in place: a stopped export leaves no half file."""
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, then moved)
            "w",
            dir=target.parent,
            prefix=f".{target.name}.",
            suffix=".part",
            encoding="utf-8",
            newline="",
            delete=False,
        )
    except OSError as exc:
        raise fail(f"{target}: {exc.strerror}") from None
    try:
        with handle:
            written = _write_rows(batches, batch_id, _writer(chosen, handle, False))
        if target.exists() and not force:
            raise fail(f"{target}: exists (pass --force to overwrite)")
        _readable_as_umask_allows(handle.name)
        os.replace(handle.name, target)
    except OSError as exc:
        raise fail(f"{target}: {exc.strerror}") from None
    finally:
        Path(handle.name).unlink(missing_ok=True)
    return written


def _readable_as_umask_allows(path: str) -> None:
    """A temporary file is private (0600); the export gets the mode a new file would."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _write_rows(batches: Batches, batch_id: str, write: Callable[[JobRow], None]) -> int:
    """Every row, page by page; Redis failing part way says how far it got."""
    written = 0
    try:
        with broker_errors():
            for page in batches.pages(batch_id):
                for row in batches.rows(page):
                    write(row)
                    written += 1
    except BrokerError as exc:
        raise fail(f"export stopped after {written:,} rows: {exc}", 1) from None
    return written


def _writer(chosen: ExportFormat, stream: Stream, terminal: bool) -> Callable[[JobRow], None]:
    """How one row is written: a CSV line (after the header, written now), or a JSON line."""
    if chosen is ExportFormat.JSONL:

        def write_json(row: JobRow) -> None:
            # ASCII JSON: the same data, and nothing in it a terminal would obey.
            stream.write(json.dumps(_fields(row)) + "\n")

        return write_json
    table = csv.writer(stream)
    table.writerow(COLUMNS)

    def write_csv(row: JobRow) -> None:
        cells = ("" if value is None else value for value in _fields(row).values())
        table.writerow([printable(cell) if terminal else cell for cell in cells])

    return write_csv


def _fields(row: JobRow) -> dict[str, Any]:
    """One row of the report, its columns in ``COLUMNS`` order."""
    return {
        "line": row.position,
        "ref": row.ref,
        "job_id": row.job_id,
        "state": row.state,
        "ticket_id": row.ticket_id,
        "remote_id": row.remote_id,
        "error_kind": row.error_kind,
        "error_message": row.error_message,
        "attempts": row.attempts,
    }


# ticketq cancel


@dataclass
class Tally:
    """What a cancel did, for its summary: cancelled, in flight, already final (by state),
    not found; ``interrupted``: the Redis error that stopped it part way."""

    codes: Counter[CancelCode] = field(default_factory=Counter)
    final: Counter[str] = field(default_factory=Counter)
    interrupted: str | None = None

    def add(self, answer: Cancelled) -> None:
        self.codes[answer.code] += 1
        if answer.code is CancelCode.FINAL:
            self.final[answer.detail] += 1

    @property
    def all_stopped(self) -> bool:
        """Every job is cancelled or was final already: none will be sent."""
        return not (self.codes[CancelCode.IN_FLIGHT] or self.codes[CancelCode.MISSING])


@batches_app.command(
    help="Cancel jobs not yet sent (queued, or retrying between attempts): they end "
    "'cancelled' and are never sent. A job in flight finishes; a final one stays as it is. "
    "Exit 0 if every job is cancelled or was final already, 1 if some were in flight or "
    "not found."
)
def cancel(
    job_ids: Annotated[
        list[str] | None, typer.Argument(metavar="JOB_ID", help="Jobs to cancel, by id.")
    ] = None,
    batch_id: Annotated[
        str | None,
        typer.Option("--batch", metavar="BATCH_ID", help="Every job of this batch."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm --batch.")] = False,
) -> None:
    utf8(JOB_ID=job_ids, batch=batch_id)
    if job_ids and batch_id is not None:
        raise fail("give JOB_IDs or --batch, not both")
    if not job_ids and batch_id is None:
        raise fail("give the JOB_IDs of the jobs to cancel, or --batch BATCH_ID")
    with redis_errors():
        batches = _batches()
        if batch_id is None:
            assert job_ids is not None
            tally = _cancel(batches.store, [job_ids], every_job=True)
        else:
            _confirm_batch(batches, _info(batches, batch_id), yes)
            pages = ([job_id for _, job_id in page] for page in batches.pages(batch_id))
            tally = _cancel(batches.store, pages, every_job=False, of_batch=batch_id)
    _summarize(tally)


def _confirm_batch(batches: Batches, info: BatchInfo, yes: bool) -> None:
    """Ask before cancelling a batch whose jobs are not all final, unless ``--yes``."""
    if yes:
        return
    progress = batches.progress(info.batch_id)
    unfinished = progress.total - progress.final
    if unfinished == 0:
        return
    question = (
        f"Cancel the {unfinished:,} unfinished jobs of batch {printable(info.batch_id)} "
        f"(of {progress.total:,})?"
    )
    try:
        confirmed = typer.confirm(question, default=False, err=True)
    except typer.Abort:  # no answer: standard input closed
        err.print()  # end the question's line
        confirmed = False
    if not confirmed:
        raise fail("nothing cancelled (confirm, or pass --yes)", 1)


def _cancel(
    store: JobStore, pages: Iterable[list[str]], every_job: bool, of_batch: str | None = None
) -> Tally:
    """Cancel page by page, saying what became of each job (with ``every_job`` False, only of
    those that could not be stopped: a batch's cancelled and finished jobs are counted).
    ``of_batch``: the rows of the batch that an older batch's jobs stand for are left to
    that batch (cancel them by id)."""
    tally = Tally()
    try:
        with broker_errors():
            for page in pages:
                for start in range(0, len(page), CANCEL_PAGE):
                    chunk = page[start : start + CANCEL_PAGE]
                    for answer in store.cancel_many(chunk, of_batch=of_batch):
                        tally.add(answer)
                        if every_job or answer.code in (CancelCode.IN_FLIGHT, CancelCode.MISSING):
                            say(f"{answer.job_id}: {_outcome(answer)}")
    except BrokerError as exc:
        tally.interrupted = str(exc)
    return tally


def _outcome(answer: Cancelled) -> str:
    return {
        CancelCode.OK: "cancelled",
        CancelCode.IN_FLIGHT: "in flight: its attempt finishes; cancelled then unless it "
        "made the ticket",
        CancelCode.FINAL: f"already final ({answer.detail})",
        CancelCode.MISSING: "not found",
        CancelCode.OTHER_BATCH: f"left alone: a job of batch {answer.detail}",
    }[answer.code]


def _summarize(tally: Tally) -> None:
    """The summary line; exit 1 if a job could not be stopped, or Redis failed part way
    (after saying how far it got)."""
    final = sum(tally.final.values())
    states = ", ".join(f"{n:,} {state}" for state, n in sorted(tally.final.items()))
    line = (
        f"cancelled {tally.codes[CancelCode.OK]:,}, "
        f"in flight {tally.codes[CancelCode.IN_FLIGHT]:,}, "
        f"already final {final:,}{f' ({states})' if states else ''}, "
        f"not found {tally.codes[CancelCode.MISSING]:,}"
    )
    if tally.codes[CancelCode.OTHER_BATCH]:
        line += (
            f", left alone {tally.codes[CancelCode.OTHER_BATCH]:,} (jobs an earlier batch "
            "made, which this import found known; cancel them by id)"
        )
    if tally.interrupted is not None:
        raise fail(f"{line}, then Redis failed: {tally.interrupted}; run it again for the rest", 1)
    say(line)
    if not tally.all_stopped:
        raise typer.Exit(1)


@contextmanager
def interrupted_at_130(what: str) -> Iterator[None]:
    """Ctrl-C ends the command with status 130 and one line, never a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        say(what, err)
        raise typer.Exit(130) from None
