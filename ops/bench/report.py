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
    Column("notes", "notes"),
)
# Ratios shown in a ratio row: peak RSS is left out, one process model against another.
_RATIO_ONLY = frozenset(NUMERIC) - {"peak_rss_mb"}


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


def targets_markdown(items: Sequence[Target]) -> str:
    lines = ["| target | goal | measured | verdict |", "|---|---|---|---|"]
    for t in items:
        lines.append(f"| {t.what} | {t.goal} | {t.measured or '-'} | {t.verdict} |")
    return "\n".join(lines)


def targets_table(items: Sequence[Target]) -> Table:
    table = Table(title="targets (issue 4), ticketq")
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
of up to the limit). Ratio rows are ticketq / baseline.

This is a shared 2-core machine and the figures are noisy (the stand-in, Redis, the
producer and the workers share the cores): repeated scenarios report the median of the
runs and list each run's tickets/s. Benchmarks are not timed tests; nothing fails on a
figure.
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
    if extra:
        parts += ["### Observations\n", *(f"- {line}" for line in extra), ""]
    return "\n".join(parts) + "\n"


def field_names() -> list[str]:
    return [f.name for f in fields(Row)]
