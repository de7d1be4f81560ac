"""``ticketq submit``, ``status`` and ``find``: one job in, one job's record out.

Every failure a user can cause (a file that is not UTF-8 JSON or is far too large, a field
that fails validation, an unreachable Redis) ends with a one-line message and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, BinaryIO

import typer
from pydantic import ValidationError
from rich.table import Table
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
)
from producers import InvalidJob, JobRecord, Producer
from worker.contract import MAX_BODY_BYTES, AttemptEntry, load_json
from worker.validation import describe_validation_error

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AccountId = Annotated[str, typer.Option("--account-id", help="StackOne linked account id.")]

jobs_app = typer.Typer()


# The record's Unix times, shown in the table as people read them (``--json`` says ISO 8601).
TIMES = frozenset(("created_at", "updated_at", "finished_at", "next_attempt_at", "uncertain_since"))
# StackOne's message in the table's line per attempt (``--json`` has it as kept, 200 chars).
ATTEMPT_ERROR_SHOWN = 80

# Room above the body limit for whitespace and escapes; past it the file is not a ticket
# body (``/dev/zero``, a log), and reading on would only fill memory.
MAX_INPUT_BYTES = 4 * MAX_BODY_BYTES


def producer() -> Producer:
    return Producer(load_settings(), ride_out_restarts=False)


@jobs_app.command(help="Queue one ticket; FILE (or - for standard input) holds the JSON body.")
def submit(
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="Create-ticket body as JSON.")],
    account_id: AccountId,
    ref: Annotated[str | None, typer.Option(help="Your reference, to find the job later.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting the same key again returns the same job.")
    ] = None,
) -> None:
    utf8(account_id=account_id, ref=ref, idempotency_key=idempotency_key)
    name = "standard input" if file == "-" else file
    try:
        body = load_json(_read(name, file), at=("ticket",))
    except ValidationError as exc:
        said = describe_validation_error(exc)
        if "Extra data" in said:  # JSON after the first value: a file of many tickets
            said += "; one ticket per line is a file to import: ticketq import FILE"
        raise fail(f"{name}: {said}") from None
    try:
        with redis_errors(), producer() as sender:
            handle = sender.submit(account_id, body, ref=ref, idempotency_key=idempotency_key)
    except InvalidJob as exc:
        raise fail(f"invalid job: {exc}") from None
    say(handle.job_id)
    if not handle.is_new:
        say("(idempotency key seen before: this is the existing job)", err)


def _read(name: str, file: str) -> str:
    """The body's text: UTF-8 (a byte order mark allowed), at most ``MAX_INPUT_BYTES``."""
    try:
        if file == "-":
            data = _read_capped(sys.stdin.buffer)
        else:
            with open(file, "rb") as opened:
                data = _read_capped(opened)
    except OSError as exc:
        raise fail(f"{name}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise fail(
            f"{name}: more than {MAX_INPUT_BYTES // 1024} KiB; "
            f"a ticket body is at most {MAX_BODY_BYTES // 1024} KiB"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _read_capped(stream: BinaryIO) -> bytes:
    """Up to one byte past the cap, enough to know the input is too large."""
    return stream.read(MAX_INPUT_BYTES + 1)


@jobs_app.command(help="Show one job by id.")
def status(job_id: str, as_json: JsonFlag = False) -> None:
    utf8(JOB_ID=job_id)
    _show(_lookup(lambda p: p.get(job_id), f"no job {job_id}"), as_json)


@jobs_app.command(help="Find the latest job submitted with a ref for an account.")
def find(
    account_id: AccountId,
    ref: Annotated[str, typer.Option(help="The ref given at submit.")],
    as_json: JsonFlag = False,
) -> None:
    utf8(account_id=account_id, ref=ref)
    _show(_lookup(lambda p: p.find(account_id, ref), f"no job with ref {ref!r}"), as_json)


def _lookup(query: Callable[[Producer], JobRecord | None], missing: str) -> JobRecord:
    with redis_errors():
        record = query(producer())
    if record is None:
        raise fail(missing, 1)
    return record


def _show(record: JobRecord, as_json: bool) -> None:
    """The record's fields, one a row, times in UTC: a table on a terminal, and on a pipe
    or in a file one unwrapped line per field (a long ``error`` would otherwise wrap over
    many lines); the job's last requests one line each, oldest first."""
    if as_json:
        print_json(record.public())
        return
    rows = [
        (name, _shown(name, value))
        for name, value in record.model_dump(exclude={"attempt_log"}).items()
        if value is not None
    ]
    rows += [("attempt_log", _attempt(entry)) for entry in record.attempt_log]
    if not out.is_terminal:
        width = max(len(name) for name, _ in rows)
        for name, shown in rows:
            line = Text.assemble((name.ljust(width), "bold"), "  ", safe(shown))
            out.print(line, soft_wrap=True)
        return
    table = Table(show_header=False, box=None)
    for name, shown in rows:
        table.add_row(Text(name, style="bold"), safe(shown))
    out.print(table)


def _attempt(entry: AttemptEntry) -> str:
    """One request in short: when, status, latency, outcome, and why it failed."""
    status = "no answer" if entry.status is None else str(entry.status)
    line = f"{utc_time(entry.at)}  {status}  {entry.latency_ms:.0f} ms  {entry.outcome}"
    if entry.kind is None:
        return line
    error = entry.error or ""
    if len(error) > ATTEMPT_ERROR_SHOWN:
        error = error[: ATTEMPT_ERROR_SHOWN - 1] + "…"
    return f"{line}  {entry.kind}: {error}"


def _shown(name: str, value: object) -> object:
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if name in TIMES and isinstance(value, float | int):
        return utc_time(value)
    return value
