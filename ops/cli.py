"""The ``ticketq`` command: run workers and the stand-in API, submit jobs, read their status.

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

from ops.console import err, fail, out, redis_errors, wide_console
from ops.dead_cli import dead_app
from ops.fakeapi import FakeApiOptions, serve
from producers.client import InvalidJob, Producer
from worker.contract import JobRecord
from worker.keys import QUEUES
from worker.settings import get_settings

app = typer.Typer(
    help="ticketq: asynchronous ticket creation through StackOne's ticketing API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dead_app, name="dead")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
AccountId = Annotated[str, typer.Option("--account-id", help="StackOne linked account id.")]


def producer() -> Producer:
    return Producer(get_settings())


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Run a Celery worker with ticketq's defaults; extra arguments go to Celery.",
)
def worker(ctx: typer.Context) -> None:
    from worker.celery_app import app as celery  # builds the app from the worker's settings

    settings = get_settings()
    if settings.stackone_api_key is None:
        raise fail("STACKONE_API_KEY is not set; a worker cannot call StackOne without it")
    argv = [
        "worker",
        "--pool",
        "threads",
        "--concurrency",
        str(settings.worker_concurrency),
        "--queues",
        ",".join(QUEUES.values()),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        *ctx.args,
    ]
    celery.worker_main(argv)


@app.command(help="Queue one ticket; FILE (or - for standard input) holds the JSON body.")
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


@app.command(help="Show one job by id.")
def status(job_id: str, as_json: JsonFlag = False) -> None:
    _show(_lookup(lambda p: p.get(job_id), f"no job {job_id}"), as_json)


@app.command(help="Find the latest job submitted with a ref for an account.")
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


@app.command("fake-api", help="Run the local StackOne stand-in (checks auth, injects faults).")
def fake_api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    latency_ms: Annotated[float, typer.Option(help="Added to every request.")] = 0.0,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute before 429.")] = None,
    error_rate: Annotated[float, typer.Option(help="Fraction answered 500 at random.")] = 0.0,
    accounts: Annotated[
        str | None, typer.Option(help="Comma-separated account ids; others get 404.")
    ] = None,
) -> None:
    key = get_settings().stackone_api_key
    options = FakeApiOptions(
        api_key=key.get_secret_value() if key else None,
        latency_ms=latency_ms,
        rpm_limit=rpm,
        error_rate=error_rate,
        accounts=frozenset(accounts.split(",")) if accounts else None,
    )
    serve(host, port, options)


@app.command(help="Run everything locally and create a sample of tickets, with live progress.")
def demo(
    workers: Annotated[int, typer.Option(help="Worker processes to start.")] = 2,
    tickets: Annotated[int, typer.Option(help="Valid tickets to submit.")] = 24,
) -> None:
    from ops.demo import run_demo

    console = wide_console(150)
    raise typer.Exit(run_demo(get_settings(), workers=workers, tickets=tickets, console=console))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
