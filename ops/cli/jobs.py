"""``ticketq submit``, ``status`` and ``find``: one job in, one job's record out.

Every failure a user can cause (bad JSON, a field that fails validation, an unreachable
Redis) ends with a one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ops.cli.console import err, fail, out, redis_errors
from producers import InvalidJob, JobRecord, Producer
from worker.settings import get_settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AccountId = Annotated[str, typer.Option("--account-id", help="StackOne linked account id.")]

jobs_app = typer.Typer()


def producer() -> Producer:
    return Producer(get_settings())


@jobs_app.command(help="Queue one ticket; FILE (or - for standard input) holds the JSON body.")
def submit(
    file: Annotated[str, typer.Argument(metavar="FILE|-", help="Create-ticket body as JSON.")],
    account_id: AccountId,
    ref: Annotated[str | None, typer.Option(help="Your reference, to find the job later.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting the same key again returns the same job.")
    ] = None,
) -> None:
    text = sys.stdin.read() if file == "-" else _read_file(file)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{file}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    try:
        with redis_errors(), producer() as sender:
            handle = sender.submit(account_id, body, ref=ref, idempotency_key=idempotency_key)
    except InvalidJob as exc:
        raise fail(f"invalid job: {exc}") from None
    out.print(handle.job_id, highlight=False)
    if not handle.is_new:
        err.print("(idempotency key seen before: this is the existing job)")


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise fail(f"{path}: {exc.strerror}") from None


@jobs_app.command(help="Show one job by id.")
def status(job_id: str, as_json: JsonFlag = False) -> None:
    _show(_lookup(lambda p: p.get(job_id), f"no job {job_id}"), as_json)


@jobs_app.command(help="Find the latest job submitted with a ref for an account.")
def find(
    account_id: AccountId,
    ref: Annotated[str, typer.Option(help="The ref given at submit.")],
    as_json: JsonFlag = False,
) -> None:
    _show(_lookup(lambda p: p.find(account_id, ref), f"no job with ref {ref!r}"), as_json)


def _lookup(query: Callable[[Producer], JobRecord | None], missing: str) -> JobRecord:
    with redis_errors():
        record = query(producer())
    if record is None:
        raise fail(missing, 1)
    return record


def _show(record: JobRecord, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(record.public()))
        return
    table = Table(show_header=False, box=None)
    for name, value in record.public().items():
        if value is not None:
            table.add_row(
                f"[bold]{name}[/bold]", json.dumps(value) if isinstance(value, dict) else str(value)
            )
    out.print(table)
