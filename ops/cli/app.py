"""The ``ticketq`` command: run workers, the stand-in API and the demo; the job commands
(``ops/cli/jobs.py``), the file import (``ops/cli/imports.py``), the batch commands
(``ops/cli/batches.py``), the dead letters
(``ops/cli/dead.py``) and the fleet's numbers (``ops/cli/stats.py``) join it here.

Every failure a user can cause (bad JSON, a field that fails validation, an unreachable
Redis, a bad setting) ends with a one-line message and a non-zero exit, never a traceback;
``--help`` reads no settings. What only one
command needs (the worker's task, the stand-in, the demo) is imported by that command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ops.cli.batches import batches_app
from ops.cli.console import fail, load_settings, wide_console
from ops.cli.dead import dead_app
from ops.cli.flower import flower_app
from ops.cli.imports import imports_app
from ops.cli.jobs import jobs_app
from ops.cli.stats import stats_app
from ops.cli.web import web_app
from worker.store.keys import QUEUES

app = typer.Typer(
    help="ticketq: asynchronous ticket creation through StackOne's ticketing API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(jobs_app)
app.add_typer(batches_app)
app.add_typer(imports_app)
app.add_typer(dead_app, name="dead")
app.add_typer(web_app)
app.add_typer(stats_app)
app.add_typer(flower_app)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Run a Celery worker with ticketq's defaults; extra arguments go to Celery.",
)
def worker(ctx: typer.Context) -> None:
    from worker.delivery.task import worker_app

    settings = load_settings()
    if settings.stackone_api_key is None:
        raise fail("STACKONE_API_KEY is not set; a worker cannot call StackOne without it")
    if settings.log_format == "json":
        from worker.delivery.logs import json_from_start

        json_from_start()
    argv = [
        # JSON logs: no start-up banner either (it is text, not a log line).
        *(["--quiet"] if settings.log_format == "json" else []),
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
    worker_app(settings).worker_main(argv)


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
    list_lag_ms: Annotated[
        float, typer.Option(help="A ticket is listed only this long after its creation.")
    ] = 0.0,
    list_style: Annotated[
        str, typer.Option(help="How reads show a ticket: verbatim, provider or sparse.")
    ] = "verbatim",
) -> None:
    from ops.fakeapi import FakeApiOptions, check_options, serve

    key = load_settings().stackone_api_key
    try:
        options = check_options(
            FakeApiOptions(
                api_key=key.get_secret_value() if key else None,
                latency_ms=latency_ms,
                rpm_limit=rpm,
                error_rate=error_rate,
                accounts=frozenset(accounts.split(",")) if accounts else None,
                list_lag_ms=list_lag_ms,
                list_style=list_style,
            )
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    serve(host, port, options)


@app.command(help="Run everything locally and create a sample of tickets, with live progress.")
def demo(
    workers: Annotated[int, typer.Option(help="Worker processes to start.")] = 2,
    tickets: Annotated[int, typer.Option(help="Valid tickets to submit.")] = 24,
) -> None:
    from ops.demo import run_demo

    console = wide_console(150)
    raise typer.Exit(run_demo(load_settings(), workers=workers, tickets=tickets, console=console))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
