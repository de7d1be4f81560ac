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

from ops.bench import report, scenarios
from ops.bench.report import Row
from ops.bench.scenarios import Bench, Options

ALL = ("single", "bulk", "enqueue", "import", "limited", "interactive", "memory")
DOC = Path("docs/performance.md")


@dataclass(frozen=True)
class Sizes:
    tickets: int
    import_tickets: int
    enqueue: int
    soak: int
    repeat: int
    import_rows: int = 200_000  # the rows of each file `ticketq import` reads


FULL = Sizes(tickets=10_000, import_tickets=5_000, enqueue=20_000, soak=100_000, repeat=3)
QUICK = Sizes(
    tickets=1_000, import_tickets=300, enqueue=4_000, soak=2_000, repeat=1, import_rows=20_000
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ops.bench",
        description="ticketq beside a textbook Celery task, measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 2 minutes")
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
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.scenarios.split(",") if name.strip()}
    unknown = chosen - set(ALL)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if "interactive" in chosen:
        chosen.add("limited")
    args.chosen = chosen
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
    )
    settings = (
        f"stand-in latency {options.latency_ms:g} ms; ticketq {options.workers} worker "
        f"processes x {options.concurrency} threads; baseline 1 process x "
        f"{options.baseline_concurrency} threads; {size.tickets:,} tickets per single/bulk run, "
        f"{size.repeat} run(s); import {size.import_tickets:,} tickets at {options.rpm}/min; "
        f"enqueue {size.enqueue:,} lines; import {size.import_rows:,} rows a file; "
        f"soak {size.soak:,} tickets"
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
    table_rows = report.with_ratios(rows)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"ticketq bench {date}{' (quick)' if args.quick else ''}"
    console.print(report.rich_table(table_rows, title))
    for line in report.notes_lines(table_rows):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    items = report.targets(rows, growth)
    console.print(report.targets_table(items))
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
                extra=extra,
            )
        )
        console.print(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
