"""What a benchmark run produced: rows, their medians over repeats, ratios, targets, and the
same table as a rich table for the terminal and as Markdown for ``docs/performance.md``.

Everything here is pure (no processes, no clocks), so the unit tests cover it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

from rich.table import Table

__all__ = [
    "COLUMNS",
    "Machine",
    "Row",
    "Target",
    "combine",
    "markdown_document",
    "markdown_table",
    "rich_table",
    "targets",
    "with_ratios",
]


@dataclass(frozen=True)
class Row:
    """One scenario on one system. NaN (or None for % of limit) means not measured."""

    scenario: str
    system: str  # "ticketq", "baseline", or "ticketq/baseline" for a ratio row
    tickets: int = 0  # jobs submitted
    tickets_per_s: float = math.nan  # succeeded / (last finished - first submitted)
    producer_cpu_ms: float = math.nan  # the benchmark process: submitting and waiting
    worker_cpu_ms: float = math.nan  # worker process trees' CPU per ticket
    api_cpu_ms: float = math.nan  # the stand-in's CPU per ticket
    redis_cpu_ms: float = math.nan  # redis-server's CPU per ticket
    p50_s: float = math.nan  # submit -> result stored
    p99_s: float = math.nan
    peak_rss_mb: float = math.nan  # worker process trees, sampled every 0.5 s
    duplicates: int = 0  # tickets the stand-in created beyond one per title
    http_429: int = 0  # 429 answers the stand-in sent
    failed: int = 0  # jobs that did not succeed (failed, or unfinished at the deadline)
    pct_limit: float | None = None  # requests admitted per minute / the limit, in %
    pct_bound: float = math.nan  # the rate / the rate the scenario's bound allows, in %
    notes: str = ""


NUMERIC = (
    "tickets_per_s",
    "producer_cpu_ms",
    "worker_cpu_ms",
    "api_cpu_ms",
    "redis_cpu_ms",
    "p50_s",
    "p99_s",
    "peak_rss_mb",
    "pct_bound",
)


def _median(values: Iterable[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return statistics.median(present) if present else math.nan


def combine(runs: Sequence[Row]) -> Row:
    """The median of each measured figure over repeated runs of one scenario and system.

    Counts (duplicates, 429s, failures) are summed: one duplicate in any run is one too
    many. The notes keep the first run's and list every run's tickets/s.
    """
    if not runs:
        raise ValueError("no runs to combine")
    first = runs[0]
    if len(runs) == 1:
        return first
    medians = {name: _median(getattr(run, name) for run in runs) for name in NUMERIC}
    limits = [run.pct_limit for run in runs if run.pct_limit is not None]
    spread = ", ".join(_number(run.tickets_per_s) for run in runs)
    notes = f"median of {len(runs)} runs ({spread}/s)"
    return replace(
        first,
        **cast(dict[str, Any], medians),
        duplicates=sum(run.duplicates for run in runs),
        http_429=sum(run.http_429 for run in runs),
        failed=sum(run.failed for run in runs),
        pct_limit=statistics.median(limits) if limits else None,
        notes=f"{notes}; {first.notes}" if first.notes else notes,
    )


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def with_ratios(rows: Sequence[Row]) -> list[Row]:
    """After each scenario's ticketq and baseline rows, a row of ticketq / baseline."""
    result: list[Row] = []
    scenarios = list(dict.fromkeys(row.scenario for row in rows))
    for scenario in scenarios:
        group = [row for row in rows if row.scenario == scenario]
        result.extend(group)
        ours = next((row for row in group if row.system == "ticketq"), None)
        theirs = next((row for row in group if row.system == "baseline"), None)
        if ours is None or theirs is None:
            continue
        ratios = {name: _ratio(getattr(ours, name), getattr(theirs, name)) for name in NUMERIC}
        values = cast(dict[str, Any], ratios)
        result.append(Row(scenario=scenario, system="ticketq/baseline", **values))
    return result


@dataclass(frozen=True)
class Column:
    title: str
    field: str
    digits: int = 0
    short: str = ""  # the terminal table's narrower title

    @property
    def terminal_title(self) -> str:
        return self.short or self.title


COLUMNS = (
    Column("scenario", "scenario"),
    Column("system", "system"),
    Column("tickets", "tickets"),
    Column("tickets/s", "tickets_per_s"),
    Column("producer CPU ms/ticket", "producer_cpu_ms", 2, "producer ms/t"),
    Column("worker CPU ms/ticket", "worker_cpu_ms", 2, "worker ms/t"),
    Column("stand-in CPU ms/ticket", "api_cpu_ms", 2, "API ms/t"),
    Column("Redis CPU ms/ticket", "redis_cpu_ms", 2, "Redis ms/t"),
    Column("p50 s", "p50_s", 3),
    Column("p99 s", "p99_s", 3),
    Column("peak RSS MB", "peak_rss_mb", 0, "RSS MB"),
    Column("dups", "duplicates"),
    Column("429s", "http_429"),
    Column("not ok", "failed"),
    Column("% of limit", "pct_limit", 1, "% limit"),
    Column("% of bound", "pct_bound", 1, "% bound"),
    Column("notes", "notes"),
)
# Ratios shown in a ratio row: peak RSS is left out, one process model against another,
# and so is % of bound, a bound the baseline does not have.
_RATIO_ONLY = frozenset(NUMERIC) - {"peak_rss_mb", "pct_bound"}


def _number(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return ""
    if digits == 0 and abs(value) >= 10:
        return f"{value:,.0f}"
    if digits == 0:
        return f"{value:.1f}"
    return f"{value:,.{digits}f}"


def cell(row: Row, column: Column) -> str:
    """A row's value in a column, as both tables print it."""
    value = getattr(row, column.field)
    ratio = row.system == "ticketq/baseline"
    if ratio:
        if column.field in ("scenario", "system"):
            return str(value)
        if column.field in _RATIO_ONLY and isinstance(value, float) and not math.isnan(value):
            return f"{value:.2f}x"
        return ""
    if value is None:
        return ""
    if isinstance(value, float):
        return _number(value, column.digits)
    if isinstance(value, int) and column.field == "tickets":
        return f"{value:,}"
    return str(value)


def rich_table(rows: Sequence[Row], title: str) -> Table:
    """The terminal's table; the notes go below it (``notes_lines``), too wide for a column."""
    table = Table(title=title, show_lines=False)
    columns = [c for c in COLUMNS if c.field != "notes"]
    for column in columns:
        table.add_column(
            column.terminal_title,
            justify="left" if column.field in ("scenario", "system") else "right",
            no_wrap=True,
        )
    previous = None
    for row in rows:
        if previous is not None and row.scenario != previous:
            table.add_section()
        previous = row.scenario
        style = "dim" if row.system == "ticketq/baseline" else None
        table.add_row(*(cell(row, column) for column in columns), style=style)
    return table


def notes_lines(rows: Sequence[Row]) -> list[str]:
    return [f"{row.scenario}, {row.system}: {row.notes}" for row in rows if row.notes]


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Row]) -> str:
    right = {c.field for c in COLUMNS} - {"scenario", "system", "notes"}
    header = "| " + " | ".join(c.title for c in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if c.field in right else "---" for c in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_escape(cell(row, c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def cpu_budget(rows: Sequence[Row], cpus: int) -> list[str]:
    """CPU per ticket of every process that took part, and the rate those CPUs allow."""
    lines = []
    for r in rows:
        parts = (r.producer_cpu_ms, r.worker_cpu_ms, r.api_cpu_ms, r.redis_cpu_ms)
        if r.system == "ticketq/baseline" or any(math.isnan(p) for p in parts):
            continue
        total = sum(parts)
        if total <= 0:
            continue
        lines.append(
            f"{r.scenario}, {r.system}: {total:.2f} ms of CPU per ticket in all "
            f"(producer {parts[0]:.2f}, worker {parts[1]:.2f}, stand-in {parts[2]:.2f}, "
            f"Redis {parts[3]:.2f}): at most {cpus * 1000 / total:,.0f} tickets/s on "
            f"{cpus} CPUs"
        )
    return lines


# --- targets (issue 4) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    what: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "short", None: "not measured"}[self.met]


def _find(rows: Sequence[Row], scenario: str, system: str = "ticketq") -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.system == system), None)


def _at_least(row: Row | None, name: str, goal: float, fmt: str) -> tuple[str, bool | None]:
    if row is None or math.isnan(getattr(row, name)):
        return "", None
    value = float(getattr(row, name))
    return fmt.format(value), value >= goal


def _at_most(row: Row | None, name: str, goal: float, fmt: str) -> tuple[str, bool | None]:
    if row is None or math.isnan(getattr(row, name)):
        return "", None
    value = float(getattr(row, name))
    return fmt.format(value), value <= goal


def targets(rows: Sequence[Row], rss_growth_mb: float | None = None) -> list[Target]:
    """The targets of issue 4, each with what this run measured and whether it was met."""
    single, bulk = _find(rows, "single"), _find(rows, "bulk")
    limited, interactive = _find(rows, "limited import"), _find(rows, "interactive")
    enqueue = _find(rows, "enqueue")
    single_q, bulk_q = _find(rows, "single (queued first)"), _find(rows, "bulk (queued first)")
    out = [
        Target("single jobs, end to end", ">= 700 tickets/s",
               *_at_least(single, "tickets_per_s", 700, "{:,.0f}/s")),
        Target("single jobs, queued first", ">= 700 tickets/s",
               *_at_least(single_q, "tickets_per_s", 700, "{:,.0f}/s")),
        Target("bulk jobs, end to end", ">= 2,000 tickets/s",
               *_at_least(bulk, "tickets_per_s", 2000, "{:,.0f}/s")),
        Target("bulk jobs, queued first", ">= 2,000 tickets/s",
               *_at_least(bulk_q, "tickets_per_s", 2000, "{:,.0f}/s")),
        Target("worker CPU, single jobs", "<= 1.5 ms/ticket",
               *_at_most(single, "worker_cpu_ms", 1.5, "{:.2f} ms")),
        Target("worker CPU, single jobs, queued first", "<= 1.5 ms/ticket",
               *_at_most(single_q, "worker_cpu_ms", 1.5, "{:.2f} ms")),
        Target("worker CPU, bulk jobs", "<= 0.8 ms/ticket",
               *_at_most(bulk, "worker_cpu_ms", 0.8, "{:.2f} ms")),
        Target("worker CPU, bulk jobs, queued first", "<= 0.8 ms/ticket",
               *_at_most(bulk_q, "worker_cpu_ms", 0.8, "{:.2f} ms")),
        Target("enqueue from JSONL, validated", ">= 10,000 jobs/s",
               *_at_least(enqueue, "tickets_per_s", 10000, "{:,.0f}/s")),
        _import_target(_find(rows, "import (jsonl)"), "JSONL"),
        _import_target(_find(rows, "import (csv)"), "CSV"),
    ]  # fmt: skip
    if limited is None or limited.pct_limit is None:
        out.append(Target("rate-limited import", ">= 98% of the limit, no 429", "", None))
    else:
        out.append(
            Target(
                "rate-limited import",
                ">= 98% of the limit, no 429",
                f"{limited.pct_limit:.1f}%, {limited.http_429} x 429",
                limited.pct_limit >= 98 and limited.http_429 == 0,
            )
        )
    out.append(
        Target(
            "interactive ticket during the import",
            "created within 2 s at p99",
            *_at_most(interactive, "p99_s", 2.0, "p99 {:.2f} s"),
        )
    )
    if rss_growth_mb is None:
        out.append(Target("worker RSS across the soak", "flat", "", None))
    else:
        out.append(
            Target(
                "worker RSS across the soak",
                "flat (grows < 10 MB after warm-up)",
                f"{rss_growth_mb:+.1f} MB",
                rss_growth_mb < 10,
            )
        )
    return out


def _import_target(row: Row | None, kind: str) -> Target:
    """Issue 11: a large file imported at >= 10,000 rows/s in under 150 MB."""
    what, goal = f"`ticketq import` of a {kind} file", ">= 10,000 rows/s, peak RSS < 150 MB"
    if row is None:
        return Target(what, goal, "", None)
    measured = f"{row.tickets_per_s:,.0f}/s, {row.peak_rss_mb:.0f} MB"
    return Target(what, goal, measured, row.tickets_per_s >= 10_000 and row.peak_rss_mb < 150)


# --- targets (issue 13) --------------------------------------------------------------------

BUSY = ", busy CPU"  # the suffix of the limited import's scenarios under a competing load
FAIR_SHARE_GOAL = 80.0  # % of B's fair share's rate: done within 1.25 x its fair share time
CAP_GOAL = 80.0  # % of cap / latency
LIMIT_GOAL = 95.0  # % of the limit where the limit binds


def _cap_row(rows: Sequence[Row], lane: str, limited: bool) -> Row | None:
    """The ticketq row of the capped run (not the cap-0 reference) for ``lane``, at the
    short latency (no limit in the name) or at the long one (``limit N/min``)."""
    return next(
        (
            r
            for r in rows
            if r.system == "ticketq"
            and r.scenario.startswith("cap ")
            and not r.scenario.startswith("cap 0,")
            and r.scenario.endswith(f", {lane}")
            and ("limit" in r.scenario) == limited
        ),
        None,
    )


def _bound_target(what: str, row: Row | None, goal: float, text: str, rate: bool = True) -> Target:
    """% of bound against ``goal``; with the row's tickets/s if that is the rate bound."""
    got = _at_least(row, "pct_bound", goal, "{:.0f}% of the bound")
    if rate and row is not None and not math.isnan(row.tickets_per_s) and got[0]:
        got = (f"{row.tickets_per_s:,.0f}/s, {got[0]}", got[1])
    return Target(what, text, *got)


def _limit_target(what: str, row: Row | None, goal: float) -> Target:
    text = f">= {goal:g}% of the limit, no 429"
    if row is None or row.pct_limit is None:
        return Target(what, text, "", None)
    measured = f"{row.pct_limit:.1f}%, {row.http_429} x 429"
    return Target(what, text, measured, row.pct_limit >= goal and row.http_429 == 0)


def _cpu_target(what: str, limited: Row | None, unlimited: Row | None) -> Target:
    goal = "<= the unlimited bulk run's worker CPU/ticket"
    if limited is None or unlimited is None:
        return Target(what, goal, "", None)
    a, b = limited.worker_cpu_ms, unlimited.worker_cpu_ms
    if math.isnan(a) or math.isnan(b):
        return Target(what, goal, "", None)
    return Target(what, goal, f"{a:.2f} ms against {b:.2f} ms", a <= b)


def targets_13(rows: Sequence[Row]) -> list[Target]:
    """Issue 13's goals (fair share, the cap in full, the margin under load, CPU under the
    limit), each with what this run measured. The thresholds of the fair share and of the
    long-latency cap are the bench's reading of the issue's "about" and "reaches"."""
    fair = _find(rows, "fair share")
    weighted = next((r for r in rows if r.scenario.startswith("fair share, weights")), None)
    fair_goal = f">= {FAIR_SHARE_GOAL:g}% of its fair share's rate"
    return [
        _bound_target("account B beside A's import", fair, FAIR_SHARE_GOAL, fair_goal,
                      rate=False),
        _bound_target("account B beside A's import, weighted", weighted, FAIR_SHARE_GOAL,
                      fair_goal, rate=False),
        _bound_target("one account's bulk import, short latency", _cap_row(rows, "bulk", False),
                      CAP_GOAL, f">= {CAP_GOAL:g}% of cap / latency"),
        _bound_target("one account's single jobs, short latency",
                      _cap_row(rows, "single", False), CAP_GOAL,
                      f">= {CAP_GOAL:g}% of cap / latency"),
        _limit_target("one account's bulk import, long latency (the limit binds)",
                      _cap_row(rows, "bulk", True), LIMIT_GOAL),
        _limit_target("rate-limited import, busy CPU", _find(rows, f"limited import{BUSY}"),
                      LIMIT_GOAL),
        Target("interactive ticket during it, busy CPU", "created within 2 s at p99",
               *_at_most(_find(rows, f"interactive{BUSY}"), "p99_s", 2.0, "p99 {:.2f} s")),
        _cpu_target("worker CPU under the limit", _find(rows, "limited import"),
                    _find(rows, "bulk")),
        _cpu_target("worker CPU under the limit, busy CPU",
                    _find(rows, f"limited import{BUSY}"), _find(rows, "bulk")),
    ]  # fmt: skip


def cpu_against_unlimited(rows: Sequence[Row]) -> list[Row]:
    """The limited imports' rows with a note: their worker CPU per ticket against the same
    system's unlimited bulk run (issue 13: waiting for the limit should cost nothing)."""
    out = []
    for r in rows:
        reference = _find(rows, "bulk", r.system)
        if (
            r.scenario.startswith("limited import")
            and reference is not None
            and not math.isnan(r.worker_cpu_ms)
            and not math.isnan(reference.worker_cpu_ms)
            and reference.worker_cpu_ms > 0
        ):
            text = (
                f"worker CPU {r.worker_cpu_ms / reference.worker_cpu_ms:.1f}x the unlimited "
                f"bulk run's {reference.worker_cpu_ms:.2f} ms/ticket"
            )
            r = replace(r, notes=f"{r.notes}; {text}" if r.notes else text)
        out.append(r)
    return out


def targets_markdown(items: Sequence[Target]) -> str:
    lines = ["| target | goal | measured | verdict |", "|---|---|---|---|"]
    for t in items:
        lines.append(f"| {t.what} | {t.goal} | {t.measured or '-'} | {t.verdict} |")
    return "\n".join(lines)


def targets_table(items: Sequence[Target], issue: int = 4) -> Table:
    table = Table(title=f"targets (issue {issue}), ticketq")
    for name in ("target", "goal", "measured", "verdict"):
        table.add_column(name)
    colours = {"met": "green", "short": "red", "not measured": "dim"}
    for t in items:
        table.add_row(t.what, t.goal, t.measured, f"[{colours[t.verdict]}]{t.verdict}[/]")
    return table


# --- the document --------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    cpus: int
    model: str
    load: str  # /proc/loadavg at the start

    @classmethod
    def here(cls) -> Machine:
        import os

        model = "unknown CPU"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        try:
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        except OSError:
            load = "?"
        return cls(os.cpu_count() or 0, model, load)

    def describe(self) -> str:
        return f"{self.cpus} CPUs ({self.model}), load average {self.load} at the start"


PREAMBLE = """\
# Performance

`make bench` (or `python -m ops.bench`) measures ticketq beside a textbook Celery task in
the same run, on this machine, against the local StackOne stand-in (`ticketq fake-api`):

- **baseline**: `ops/bench/baseline.py`, one task written the way Celery's docs show it
  (`autoretry_for=(httpx.HTTPError,)`, `retry_backoff`, `retry_jitter`, `max_retries=8`,
  a shared sync httpx client), run as `celery -A ops.bench.baseline worker --pool threads
  --concurrency 50` with a Redis result backend;
- **ticketq**: `ticketq worker` processes started by `ops.stack.LocalStack`.

Both use one private `redis-server` that the benchmark starts (AOF on, as in production;
never the system Redis) and a fresh stand-in per scenario, all on 127.0.0.1.

{scenarios}

Columns: tickets/s = tickets that succeeded / (last result stored - first submitted);
CPU = utime + stime of the process trees (from `/proc`) over the measured run, per ticket
submitted; p50/p99 = submit to result stored (ticketq: the job record's `finished_at -
created_at`; baseline: the result backend's `date_done` minus the time before `.delay()`);
peak RSS = the worker trees, sampled every 0.5 s; dups = tickets the stand-in created more
than once for a title; 429s = answers the stand-in sent; not ok = jobs that did not succeed
(or were unfinished at the deadline); % of limit = tickets created per minute over the run
/ the limit (a run shorter than 60 s can exceed 100%: a strict sliding window admits a burst
of up to the limit); % of bound = tickets/s / the rate the scenario's bound allows (named in
the row's notes: cap / latency, the key's limit, or account B's fair share of it). Ratio rows
are ticketq / baseline.

The textbook task has no fair share and no cap. What it does instead: one FIFO queue for
every account (account B's tickets wait behind account A's import, except where A's tasks
went back to the queue for a retry after a 429), and as many requests in flight as it has
threads (50), whichever account they are for; it has no limiter either, so where the
stand-in enforces a limit it gets 429s and retries them with backoff (once a run holds more
than a minute's worth of the limit: the sliding window admits the first minute's at once).

Issue 13's targets are the issue's goals: at least 80% of cap / latency at 20 ms; at least
95% of the limit, no 429 and an interactive p99 under 2 s with the cores busy; no more
worker CPU per ticket under the limit than in the unlimited bulk run. Two are the bench's
reading of the issue's words: B "in about" its fair share is at least 80% of its fair
share's rate (done within 1.25 x its fair-share time), and "reaches the key's limit" at
500 ms is at least 95% of it (ticketq keeps 1.5% below the limit by design).

This is a shared 2-core machine and the figures are noisy (the stand-in, Redis, the
producer and the workers share the cores): repeated scenarios report the median of the
runs and list each run's tickets/s. Benchmarks are not timed tests; nothing fails on a
figure.

`make bench` runs every scenario at its default size: about an hour on this machine. By the
scenarios' own runs on `0984fe3` (before issue 13's changes): issue 4's and 11's about 33
minutes, fair share 10 (the baseline 4 of them; the weighted variant 3, seconds once B gets
its share), cap 5 (the 500 ms import 2 of them; the capped bulk import 1, at 55/s),
busy CPU 14 (the baseline 7; `--no-loaded-baseline` skips it). `--scenarios` picks some
(`single,bulk,enqueue,import,limited,interactive,memory`; issue 13's `fair,cap,loaded`), the
size options shorten them (`python -m ops.bench --help`), and `--quick` runs all at small
sizes in about 7 minutes; at those sizes a run holds less than a minute's worth of the limit,
so the stand-in never refuses the baseline and its fair share and busy-CPU rows show little.
`--no-doc` leaves this file as it is.
"""


SCENARIOS = (
    (
        "single",
        "one ticket per job: `Producer.submit` (interactive lane; the producer's publisher "
        "thread puts the jobs submitted during one send into the next message, up to 10) / "
        "`task.delay()`, as fast as one producer thread submits; the limit out of the way "
        "(`TICKETQ_RATE_LIMIT=1000000/min`, `TICKETQ_ACCOUNT_CONCURRENCY=0`)",
    ),
    (
        "bulk",
        "the same through `Producer.submit_many` in chunks of 1,000 (bulk lane); the baseline "
        "has no bulk notion and gets `.delay()` in a loop",
    ),
    (
        "single / bulk (queued first)",
        "the engine alone: the same number of jobs queued with no worker running, then the "
        "workers (all up) told to start consuming (Celery remote control `add_consumer`); "
        "tickets/s = tickets / (last result - that moment); no latency",
    ),
    (
        "limited import",
        "the stand-in enforces its limit strictly (sliding 60 s window); a bulk import of "
        "`--import-tickets` tickets; ticketq runs with `TICKETQ_RATE_LIMIT` at the same limit",
    ),
    (
        "interactive",
        "during that import, one interactive ticket every 0.5 s: submit to created",
    ),
    (
        "enqueue",
        "a JSONL file into the queue, no worker running: ticketq parses, validates and "
        "`submit_many`s chunks of 1,000 (with a ref per line); the baseline `json.loads` and "
        "`.delay()`s each line (no validation)",
    ),
    (
        "import (jsonl / csv)",
        "`ticketq import FILE --account-id A` as its own process, no worker running, on a file "
        "of `--import-rows` rows (the bench's tickets as JSONL bodies, or as CSV columns): "
        "tickets/s = rows / the command's wall time (start-up, hashing, validating, "
        "queueing); producer CPU and peak RSS are that process's (`wait4`), not the workers'",
    ),
    (
        "memory",
        "`--soak` tickets queued first (Redis bytes per queued job), then worked off (RSS "
        "after 10% of them vs at the end; Redis bytes per finished job), as queued first",
    ),
    (
        "fair share",
        "issue 13: one key at `--fair-rpm` (600/min; the stand-in enforces it, ticketq has "
        "`TICKETQ_RATE_LIMIT` at it); account A submits a bulk import of `--fair-tickets` "
        "(1,500), account B `--fair-b-tickets` (60, bulk) 5 s later. Notes: B's time from its "
        "submission to its last ticket created against its fair share (half the limit: 60 / "
        "5/s = 12 s), A's time, and the limit used while both had work (tickets created per "
        "minute from B's submission until one of them was done / the limit); % of limit over "
        "the whole run; % of bound = B's rate / its fair share's (fair share time / B's "
        "time); p50/p99 are B's tickets', submit to created. The baseline gets the same "
        "submissions (`.delay()` per ticket)",
    ),
    (
        "fair share, weights 1:3",
        "the same with `TICKETQ_ACCOUNT_WEIGHTS=acct-a=1,acct-b=3` (B's share 3/4); only B "
        "is waited for, so the run-wide columns (tickets/s, CPU, % of limit) are left blank; "
        "`--no-fair-weighted` skips it; no baseline (it has no weights)",
    ),
    (
        "cap N, 20 ms, bulk / single",
        "issue 13: one account, `TICKETQ_ACCOUNT_CONCURRENCY=N` (`--cap`, default 10), the "
        "stand-in at 20 ms (`--cap-latency-ms`), the limit out of the way "
        "(`TICKETQ_RATE_LIMIT=1000000/min`): `--cap-tickets` (3,000) through `submit_many` "
        "(bulk), then as many through `submit` (single); % of bound = tickets/s / (cap / "
        "latency: 500/s). The baseline's rows: `.delay()` in a loop, no cap (up to its 50 "
        "threads in flight)",
    ),
    (
        "cap 0, 20 ms, bulk / single",
        "the same with no cap (`TICKETQ_ACCOUNT_CONCURRENCY=0`), for reference",
    ),
    (
        "cap N, 500 ms, limit 1000/min, bulk",
        "the stand-in at 500 ms (`--cap-slow-latency-ms`) enforcing 1000/min "
        "(`--cap-slow-rpm`), ticketq at the same limit: cap / latency (20/s) exceeds the limit "
        "(16.7/s), so the limit binds; `--cap-slow-tickets` (1,500) through `submit_many`; % "
        "of bound = tickets/s / the limit. The baseline only with `--cap-slow-baseline`",
    ),
    (
        "limited import / interactive, busy CPU",
        "issue 13: the limited import and its interactive tickets again, while `--busy` (2) "
        "processes `python -c 'while True: pass'`, at the bench's own nice level, keep the "
        "cores busy from the moment the stack is up; the limited import's notes compare its "
        "worker CPU per ticket with the unlimited bulk run's. `--no-loaded-baseline` skips the "
        "baseline (about 6 minutes)",
    ),
)


def preamble() -> str:
    lines = ["| scenario | what runs |", "|---|---|"]
    lines += [f"| {name} | {text} |" for name, text in SCENARIOS]
    return PREAMBLE.format(scenarios="\n".join(lines))


def markdown_document(
    *,
    date: str,
    machine: Machine,
    command: str,
    settings: str,
    rows: Sequence[Row],
    code: str = "",
    target_items: Sequence[Target],
    issue13: Sequence[Target] = (),
    extra: Sequence[str] = (),
) -> str:
    parts = [
        preamble(),
        f"## {date}\n",
        f"Machine: {machine.describe()}.\n",
        f"Command: `{command}`\n",
        *([f"Code: {code}\n"] if code else []),
        f"Settings: {settings}\n",
        markdown_table(rows),
        "",
        "### Targets (issue 4)\n",
        targets_markdown(target_items),
        "",
    ]
    if issue13:
        parts += ["### Targets (issue 13)\n", targets_markdown(issue13), ""]
    if extra:
        parts += ["### Observations\n", *(f"- {line}" for line in extra), ""]
    return "\n".join(parts) + "\n"


def field_names() -> list[str]:
    return [f.name for f in fields(Row)]
