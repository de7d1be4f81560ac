"""``python -m ops.bench [--quick] [--scenarios ...] [--tickets N] [--soak N]``."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from rich.console import Console

from ops.bench import report, scenarios, sharing
from ops.bench.report import BUSY, Row
from ops.bench.scenarios import Bench, Options
from ops.bench.sharing import CapOptions, FairOptions

ALL = (
    "single",
    "bulk",
    "enqueue",
    "import",
    "limited",
    "interactive",
    "memory",
    "fair",
    "cap",
    "loaded",
)
DOC = Path("docs/performance.md")


@dataclass(frozen=True)
class Sizes:
    tickets: int
    import_tickets: int
    enqueue: int
    soak: int
    repeat: int
    import_rows: int = 200_000  # the rows of each file `ticketq import` reads
    fair_tickets: int = 1_500  # account A's import beside account B's
    fair_b_tickets: int = 60
    cap_tickets: int = 3_000  # per lane at the short latency
    cap_slow_tickets: int = 1_500  # at the long latency, where the limit binds


FULL = Sizes(tickets=10_000, import_tickets=5_000, enqueue=20_000, soak=100_000, repeat=3)
QUICK = Sizes(
    tickets=1_000,
    import_tickets=300,
    enqueue=4_000,
    soak=2_000,
    repeat=1,
    import_rows=20_000,
    fair_tickets=300,
    fair_b_tickets=30,
    cap_tickets=500,
    cap_slow_tickets=200,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ops.bench",
        description="ticketq beside a textbook Celery task, measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 7 minutes")
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL),
        help=f"comma-separated, from {','.join(ALL)} (interactive runs with limited)",
    )
    parser.add_argument(
        "--tickets", type=int, help="tickets per run of single and bulk, and in the import"
    )
    parser.add_argument("--import-tickets", type=int, help="tickets in the rate-limited import")
    parser.add_argument("--enqueue", type=int, help="lines in the JSONL file to enqueue")
    parser.add_argument("--import-rows", type=int, help="rows of each file `ticketq import` reads")
    parser.add_argument("--soak", type=int, help="tickets worked off in the memory soak")
    parser.add_argument("--repeat", type=int, help="runs of single, bulk, enqueue (median)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the stand-in's latency")
    parser.add_argument("--rpm", type=int, default=1000, help="the limit of the import")
    parser.add_argument("--workers", type=int, default=2, help="ticketq worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="threads per ticketq worker")
    parser.add_argument("--doc", type=Path, help=f"Markdown to write (default {DOC}, not --quick)")
    parser.add_argument("--no-doc", action="store_true", help="write no Markdown")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument(
        "--ticketq-env",
        action="append",
        default=[],
        metavar="TICKETQ_X=VALUE",
        help="a setting for every ticketq phase, after the scenario's own (repeatable)",
    )
    fair = parser.add_argument_group("fair (issue 13): account B's tickets beside A's import")
    fair.add_argument("--fair-tickets", type=int, help="account A's bulk import (1,500)")
    fair.add_argument("--fair-b-tickets", type=int, help="account B's tickets (60)")
    fair.add_argument("--fair-rpm", type=int, default=600, help="the key's limit there")
    fair.add_argument("--fair-delay", type=float, default=5.0, help="B's submission after A's")
    fair.add_argument("--fair-weights", default="1,3", help="A's and B's weights: 'a,b'")
    fair.add_argument("--no-fair-weighted", action="store_true", help="skip the weighted variant")
    cap = parser.add_argument_group("cap (issue 13): one account's requests in flight")
    cap.add_argument("--cap", type=int, default=10, help="TICKETQ_ACCOUNT_CONCURRENCY")
    cap.add_argument("--cap-tickets", type=int, help="tickets per lane at the short latency")
    cap.add_argument("--cap-latency-ms", type=float, default=20.0, help="the short latency")
    cap.add_argument("--cap-slow-tickets", type=int, help="the import at the long latency")
    cap.add_argument("--cap-slow-latency-ms", type=float, default=500.0)
    cap.add_argument("--cap-slow-rpm", type=int, default=1000, help="the limit there")
    cap.add_argument(
        "--cap-slow-baseline", action="store_true", help="run the baseline at the long latency"
    )
    loaded = parser.add_argument_group("loaded (issue 13): the limited import, busy CPU")
    loaded.add_argument("--busy", type=int, default=2, help="busy-loop processes")
    loaded.add_argument(
        "--no-loaded-baseline", action="store_true", help="skip the baseline (about 6 min)"
    )
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.scenarios.split(",") if name.strip()}
    unknown = chosen - set(ALL)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if "interactive" in chosen:
        chosen.add("limited")
    args.chosen = chosen
    args.extra_env = {}
    for item in args.ticketq_env:
        name, equals, value = item.partition("=")
        if not equals or not name.startswith("TICKETQ_"):
            parser.error(f"--ticketq-env takes TICKETQ_NAME=VALUE, not {item!r}")
        args.extra_env[name] = value
    return args


def sizes(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else FULL
    tickets = args.tickets or base.tickets
    return Sizes(
        tickets=tickets,
        import_tickets=args.import_tickets or (args.tickets or base.import_tickets),
        enqueue=args.enqueue or (4 * args.tickets if args.tickets else base.enqueue),
        soak=args.soak or base.soak,
        repeat=args.repeat or base.repeat,
        import_rows=args.import_rows or base.import_rows,
        fair_tickets=args.fair_tickets or base.fair_tickets,
        fair_b_tickets=args.fair_b_tickets or base.fair_b_tickets,
        cap_tickets=args.cap_tickets or base.cap_tickets,
        cap_slow_tickets=args.cap_slow_tickets or base.cap_slow_tickets,
    )


def fair_options(args: argparse.Namespace, size: Sizes) -> FairOptions:
    a, _, b = args.fair_weights.partition(",")
    return FairOptions(
        a_tickets=size.fair_tickets,
        b_tickets=size.fair_b_tickets,
        rpm=args.fair_rpm,
        delay=args.fair_delay,
        weights=(int(a), int(b)),
        weighted=not args.no_fair_weighted,
    )


def cap_options(args: argparse.Namespace, size: Sizes) -> CapOptions:
    return CapOptions(
        tickets=size.cap_tickets,
        cap=args.cap,
        latency_ms=args.cap_latency_ms,
        slow_tickets=size.cap_slow_tickets,
        slow_latency_ms=args.cap_slow_latency_ms,
        slow_rpm=args.cap_slow_rpm,
        slow_baseline=args.cap_slow_baseline,
    )


def busy_neighbours() -> list[str]:
    """Other pytest or benchmark processes on this machine: the figures share its cores."""
    found = []
    me = str(Path("/proc/self").resolve().name)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "pytest" in cmd and not cmd.startswith("timeout"):
            found.append(cmd.strip()[:100])
    return found


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"`{commit}`" + (" with uncommitted changes" if dirty else "")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """The first Ctrl-C or SIGTERM stops the run; later ones must not cut the clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def run(args: argparse.Namespace, console: Console) -> tuple[list[Row], float | None, str]:
    size = sizes(args)
    run_dir = Path(tempfile.mkdtemp(prefix="ticketq-bench-"))
    options = Options(
        run_dir=run_dir,
        tickets=size.tickets,
        import_tickets=size.import_tickets,
        soak=size.soak,
        repeat=size.repeat,
        latency_ms=args.latency_ms,
        rpm=args.rpm,
        workers=args.workers,
        concurrency=args.concurrency,
        log=lambda text: console.print(text, highlight=False),
        extra_env=args.extra_env,
    )
    settings = (
        f"stand-in latency {options.latency_ms:g} ms; ticketq {options.workers} worker "
        f"processes x {options.concurrency} threads; baseline 1 process x "
        f"{options.baseline_concurrency} threads; {size.tickets:,} tickets per single/bulk run, "
        f"{size.repeat} run(s); import {size.import_tickets:,} tickets at {options.rpm}/min; "
        f"enqueue {size.enqueue:,} lines; import {size.import_rows:,} rows a file; "
        f"soak {size.soak:,} tickets"
    )
    if args.extra_env:
        settings += "; every ticketq phase with " + ", ".join(
            f"{name}={value}" for name, value in sorted(args.extra_env.items())
        )
    fair, cap = fair_options(args, size), cap_options(args, size)
    if "fair" in args.chosen:
        settings += (
            f"; fair: A {fair.a_tickets:,}, B {fair.b_tickets:,} after {fair.delay:g} s, "
            f"{fair.rpm}/min" + (f", weights {fair.weights}" if fair.weighted else "")
        )
    if "cap" in args.chosen:
        settings += (
            f"; cap {cap.cap}: {cap.tickets:,} per lane at {cap.latency_ms:g} ms, "
            f"{cap.slow_tickets:,} at {cap.slow_latency_ms:g} ms and {cap.slow_rpm}/min"
            + (" (baseline too)" if cap.slow_baseline else "")
        )
    if "loaded" in args.chosen:
        settings += f"; busy CPU: {args.busy} busy loops" + (
            " (ticketq only)" if args.no_loaded_baseline else ""
        )
    console.print(f"[bold]ticketq bench[/]: {settings}\nlogs in {run_dir}", highlight=False)
    rows: list[Row] = []
    growth: float | None = None
    ok = False
    try:
        with Bench(options) as bench:
            for name in ("single", "bulk"):
                if name in args.chosen:
                    console.rule(name)
                    rows.append(report.combine(scenarios.throughput_ticketq(bench, name)))
                    rows.append(report.combine(scenarios.throughput_baseline(bench, name)))
                    rows += scenarios.queued_first(bench, name)
            if "enqueue" in args.chosen:
                console.rule("enqueue")
                path = scenarios.write_jsonl(run_dir / "tickets.jsonl", size.enqueue)
                ours = [scenarios.enqueue_ticketq(bench, path, size.enqueue)]
                theirs = [scenarios.enqueue_baseline(bench, path, size.enqueue)]
                for _ in range(size.repeat - 1):
                    ours.append(scenarios.enqueue_ticketq(bench, path, size.enqueue))
                    theirs.append(scenarios.enqueue_baseline(bench, path, size.enqueue))
                rows += [report.combine(ours), report.combine(theirs)]
            if "import" in args.chosen:
                console.rule(f"import ({size.import_rows:,} rows, JSONL and CSV)")
                for name in ("tickets.jsonl", "tickets.csv"):
                    path = scenarios.write_import_file(run_dir / name, size.import_rows)
                    rows.append(scenarios.import_cli(bench, path, size.import_rows))
            if "limited" in args.chosen:
                console.rule(f"limited import ({size.import_tickets:,} at {args.rpm}/min)")
                limited = scenarios.limited_ticketq(bench) + scenarios.limited_baseline(bench)
                rows += [r for r in limited if r.scenario == "limited import"]
                if "interactive" in args.chosen:
                    rows += [r for r in limited if r.scenario == "interactive"]
            if "loaded" in args.chosen:
                console.rule(f"limited import, {args.busy} busy loops")
                rows += scenarios.limited_ticketq(bench, busy=args.busy, suffix=BUSY)
                if not args.no_loaded_baseline:
                    rows += scenarios.limited_baseline(bench, busy=args.busy, suffix=BUSY)
            if "fair" in args.chosen:
                console.rule(f"fair share ({fair.a_tickets:,} + {fair.b_tickets:,})")
                rows.append(sharing.fair_ticketq(bench, fair))
                rows.append(sharing.fair_baseline(bench, fair))
                if fair.weighted:
                    rows.append(sharing.fair_ticketq(bench, fair, weighted=True))
            if "cap" in args.chosen:
                console.rule(f"cap {cap.cap}")
                ours = sharing.cap_ticketq(bench, cap)
                theirs = sharing.cap_baseline(bench, cap)
                rows += [r for r in ours if not r.scenario.startswith("cap 0,")]
                rows += theirs + [r for r in ours if r.scenario.startswith("cap 0,")]
                rows.append(sharing.cap_slow_ticketq(bench, cap))
                if cap.slow_baseline:
                    rows.append(sharing.cap_slow_baseline(bench, cap))
            if "memory" in args.chosen:
                console.rule(f"memory ({size.soak:,} tickets)")
                soak_rows, growth = scenarios.soak(bench, size.soak)
                rows += soak_rows
        if "memory" in args.chosen:
            from ops.footprint import measure

            footprint = measure()
            rows = [
                r
                if (r.scenario, r.system) != ("memory", "ticketq")
                else _note(
                    r,
                    f"ops.footprint (records only): queued {footprint.queued:,.0f} B, "
                    f"succeeded {footprint.succeeded:,.0f} B",
                )
                for r in rows
            ]
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            console.print(f"run directory kept: {run_dir}")
    return rows, growth, settings


def _note(row: Row, text: str) -> Row:
    from dataclasses import replace

    return replace(row, notes=f"{row.notes}; {text}" if row.notes else text)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    console = Console(width=None if sys.stdout.isatty() else 200)
    neighbours_before = busy_neighbours()
    machine = report.Machine.here()
    code = code_version()
    started = time.monotonic()
    try:
        rows, growth, settings = run(args, console)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: everything the bench started has been stopped")
        return 130
    neighbours = sorted(set(neighbours_before) | set(busy_neighbours()))
    table_rows = report.with_ratios(report.cpu_against_unlimited(rows))
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"ticketq bench {date}{' (quick)' if args.quick else ''}"
    console.print(report.rich_table(table_rows, title))
    for line in report.notes_lines(table_rows):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    items = report.targets(rows, growth)
    console.print(report.targets_table(items))
    items_13 = report.targets_13(rows)
    console.print(report.targets_table(items_13, issue=13))
    extra = [f"took {time.monotonic() - started:,.0f} s"]
    extra += report.cpu_budget(rows, machine.cpus)
    if neighbours:
        extra.append(
            "other test processes were running and shared the cores: " + "; ".join(neighbours)
        )
    else:
        extra.append("no other pytest process was running")
    for line in extra:
        console.print(line, highlight=False)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in table_rows], indent=1) + "\n")
    doc = None if args.no_doc else (args.doc or (None if args.quick else DOC))
    if doc is not None:
        command = shlex.join(["python", "-m", "ops.bench", *(argv or sys.argv[1:])])
        doc.write_text(
            report.markdown_document(
                date=date + (" (quick)" if args.quick else ""),
                machine=machine,
                command=command,
                settings=settings,
                code=code,
                rows=table_rows,
                target_items=items,
                issue13=items_13,
                extra=extra,
            )
        )
        console.print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
