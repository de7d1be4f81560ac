"""``ticketq stats``: the dashboard's numbers on the command line (``worker/store/stats.py``),
as tables, or as the JSON of ``GET /v1/stats`` with ``--json``.

Times are in UTC, ages as people say them (``3 m 12 s``); what comes from outside (worker
names, StackOne's refusal) goes through ``safe``. An unreachable Redis ends in one line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ops.cli.console import load_settings, print_json, redis_errors, safe, utc_time, wide_console
from worker.store import connect
from worker.store.stats import Minute, Snapshot, Stats
from worker.store.stats import recount as rebuild

stats_app = typer.Typer()

SPARKS = "▁▂▃▄▅▆▇█"  # the first for none
WINDOW = 10  # minutes per row of the last hour's table
COLUMNS = {  # a job state, and what its number means
    "queued": "queued",
    "running": "running",
    "retrying": "retrying",
    "succeeded": "succeeded (1 h)",
    "failed": "failed (kept)",
    "cancelled": "cancelled (1 h)",
}


@stats_app.command(help="The fleet's numbers: jobs by state, queues, throughput, limit, workers.")
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    recount: Annotated[
        bool,
        typer.Option(
            "--recount",
            help="First rebuild the counters from every job record (after an upgrade; stop "
            "the workers first).",
        ),
    ] = False,
) -> None:
    settings = load_settings()
    with redis_errors():
        client = connect(settings, ride_out_restarts=False)
        if recount:
            rebuild(client)
        snapshot = Stats(client, settings).snapshot(time.time())
    if as_json:
        print_json(snapshot.public())
    else:
        show(snapshot, wide_console(100))


def show(snapshot: Snapshot, console: Console) -> None:
    """The snapshot as a person reads it: a few tables and lines."""
    console.print(f"ticketq at {_when(snapshot.at)}", soft_wrap=True)
    console.print(_jobs(snapshot))
    for line in _queue_lines(snapshot):
        console.print(line, soft_wrap=True)
    done = [m.succeeded + m.failed + m.cancelled for m in snapshot.throughput]
    console.print(f"Finished per minute, last hour: {sparkline(done)}", soft_wrap=True)
    console.print(_hour(snapshot.throughput))
    console.print(_keys(snapshot))
    console.print(_workers(snapshot))


def age(seconds: float) -> str:
    """``45 s``, ``3 m 12 s``, ``2 h 5 m``, ``3 d 4 h``: how long, as people say it (a
    negative age, from clocks that disagree, as ``0 s``)."""
    whole = max(int(seconds), 0)
    for unit, size, smaller, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "m", 60),
        ("m", 60, "s", 1),
    ):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {unit} {rest} {smaller}"
    return f"{whole} s"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, its height against the largest (the lowest for none)."""
    top = max(values, default=0)
    last = len(SPARKS) - 1
    return "".join(SPARKS[0 if v == 0 else max(1, round(v * last / top))] for v in values)


def _when(moment: datetime) -> str:
    return utc_time(moment.timestamp())


def _jobs(snapshot: Snapshot) -> Table:
    table = Table(title="Jobs", title_justify="left")
    table.add_column("lane")
    for header in COLUMNS.values():
        table.add_column(header, justify="right")
    states = tuple(COLUMNS)
    for lane, row in snapshot.jobs.items():
        table.add_row(lane, *(f"{row.get(state, 0):,}" for state in states))
    totals = [sum(row.get(state, 0) for row in snapshot.jobs.values()) for state in states]
    table.add_row("all", *(f"{total:,}" for total in totals), style="bold")
    return table


def _queue_lines(snapshot: Snapshot) -> list[str]:
    waiting = ", ".join(f"{lane} {count:,}" for lane, count in snapshot.waiting.items())
    oldest = snapshot.oldest_waiting_seconds
    due, limit = snapshot.due, snapshot.limit
    return [
        f"Waiting: {sum(snapshot.waiting.values()):,} jobs ({waiting}); oldest waiting: "
        + (age(oldest) if oldest is not None else "none waits"),
        f"Due index: {due.retrying:,} retrying, {due.held_back:,} held back by the rate "
        f"limit, {due.overdue:,} overdue",
        f"Rate limit: {limit.last_minute:,} requests in the last 60 s of "
        f"{limit.per_minute:,.0f}/min ({limit.use:.0%})",
    ]


def _hour(throughput: Sequence[Minute]) -> Table:
    """The last hour, ten minutes a row."""
    table = Table(title="Last hour", title_justify="left")
    table.add_column("from (UTC)")
    for header in ("succeeded", "failed", "cancelled", "requests"):
        table.add_column(header, justify="right")
    for start in range(0, len(throughput), WINDOW):
        window = throughput[start : start + WINDOW]
        table.add_row(
            window[0].at.strftime("%H:%M"),
            f"{sum(m.succeeded for m in window):,}",
            f"{sum(m.failed for m in window):,}",
            f"{sum(m.cancelled for m in window):,}",
            f"{sum(m.attempts for m in window):,}",
        )
    return table


def _keys(snapshot: Snapshot) -> Table:
    table = Table(title="API keys (by fingerprint)", title_justify="left")
    for header in ("key", "state", "paused until"):
        table.add_column(header)
    for key in snapshot.keys:
        if key.refused:
            since = f" since {_when(key.refused_since)}" if key.refused_since else ""
            state = Text.assemble(("refused", "red"), safe(f"{since}: {key.refusal or ''}"))
        elif key.outage:
            state = Text("outage: StackOne fails, one probe at a time", style="yellow")
        else:
            state = Text("ok", style="green")
        until = _when(key.paused_until) if key.paused_until else ""
        table.add_row(safe(key.fingerprint), state, until)
    return table


def _workers(snapshot: Snapshot) -> Table:
    now = snapshot.at
    table = Table(title=f"Workers alive: {len(snapshot.workers)}", title_justify="left")
    for header in ("name", "pid", "threads", "up", "last seen", "key"):
        table.add_column(header)
    for worker in snapshot.workers:
        table.add_row(
            safe(worker.name),
            str(worker.pid),
            str(worker.concurrency),
            age((now - worker.started_at).total_seconds()),
            f"{age((now - worker.seen_at).total_seconds())} ago",
            safe(worker.key_fingerprint),
        )
    return table
