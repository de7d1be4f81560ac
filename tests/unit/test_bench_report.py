"""The benchmark's report: medians over runs, ratio rows, targets, table formatting."""

from __future__ import annotations

import math

from ops.bench.report import (
    COLUMNS,
    Machine,
    Row,
    cell,
    combine,
    cpu_budget,
    markdown_document,
    markdown_table,
    notes_lines,
    rich_table,
    targets,
    with_ratios,
)

COLUMN = {c.field: c for c in COLUMNS}


def test_combine_takes_medians_and_sums_counts() -> None:
    runs = [
        Row("single", "ticketq", 1000, tickets_per_s=700, worker_cpu_ms=1.0, duplicates=0),
        Row("single", "ticketq", 1000, tickets_per_s=650, worker_cpu_ms=3.0, duplicates=1),
        Row("single", "ticketq", 1000, tickets_per_s=720, worker_cpu_ms=2.0, http_429=2),
    ]
    combined = combine(runs)
    assert combined.tickets_per_s == 700
    assert combined.worker_cpu_ms == 2.0
    assert combined.duplicates == 1
    assert combined.http_429 == 2
    assert "median of 3 runs (700, 650, 720/s)" in combined.notes


def test_combine_of_one_run_is_that_run() -> None:
    row = Row("bulk", "baseline", 10, tickets_per_s=5.0)
    assert combine([row]) is row


def test_combine_skips_figures_not_measured() -> None:
    runs = [Row("x", "ticketq", p99_s=math.nan), Row("x", "ticketq", p99_s=2.0)]
    assert combine(runs).p99_s == 2.0


def test_with_ratios_adds_one_row_per_scenario_with_both_systems() -> None:
    rows = [
        Row("single", "ticketq", tickets_per_s=600, worker_cpu_ms=1.5, p99_s=0.5),
        Row("single", "baseline", tickets_per_s=200, worker_cpu_ms=4.5, p99_s=math.nan),
        Row("enqueue", "ticketq", tickets_per_s=10_000),
    ]
    out = with_ratios(rows)
    assert [r.system for r in out] == ["ticketq", "baseline", "ticketq/baseline", "ticketq"]
    ratio = out[2]
    assert ratio.tickets_per_s == 3.0
    assert ratio.worker_cpu_ms == 1 / 3
    assert math.isnan(ratio.p99_s)
    assert cell(ratio, COLUMN["tickets_per_s"]) == "3.00x"
    assert cell(ratio, COLUMN["p99_s"]) == ""
    assert cell(ratio, COLUMN["duplicates"]) == ""


def test_cells_format_numbers_and_leave_the_unmeasured_blank() -> None:
    row = Row(
        "limited import",
        "ticketq",
        5000,
        tickets_per_s=16.4,
        worker_cpu_ms=1.234,
        p99_s=math.nan,
        pct_limit=98.96,
        peak_rss_mb=181.4,
    )
    assert cell(row, COLUMN["tickets"]) == "5,000"
    assert cell(row, COLUMN["tickets_per_s"]) == "16"
    assert cell(row, COLUMN["worker_cpu_ms"]) == "1.23"
    assert cell(row, COLUMN["p99_s"]) == ""
    assert cell(row, COLUMN["pct_limit"]) == "99.0"
    assert cell(row, COLUMN["peak_rss_mb"]) == "181"
    assert cell(Row("a", "b", tickets_per_s=2.345), COLUMN["tickets_per_s"]) == "2.3"
    assert cell(Row("a", "b"), COLUMN["pct_limit"]) == ""


def test_markdown_table_has_a_header_a_rule_and_escaped_rows() -> None:
    rows = [Row("single", "ticketq", 10, tickets_per_s=1234.0, notes="a | b")]
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| scenario | system | tickets | tickets/s |")
    assert lines[1].startswith("|---|---|---:|---:|")
    assert lines[2].startswith("| single | ticketq | 10 | 1,234 |")
    assert lines[2].endswith("| a \\| b |")
    assert all(line.count("|") - line.count("\\|") == len(COLUMNS) + 1 for line in lines)


def test_rich_table_keeps_notes_out_and_lists_them_below() -> None:
    rows = [Row("single", "ticketq", notes="submitted at 900/s"), Row("single", "baseline")]
    table = rich_table(rows, "t")
    assert len(table.columns) == len(COLUMNS) - 1
    assert table.row_count == 2
    assert notes_lines(rows) == ["single, ticketq: submitted at 900/s"]


def test_cpu_budget_adds_every_process_and_gives_the_ceiling() -> None:
    rows = [
        Row("single", "ticketq", producer_cpu_ms=1, worker_cpu_ms=2, api_cpu_ms=0.5,
            redis_cpu_ms=0.5),
        Row("enqueue", "ticketq", redis_cpu_ms=0.1),
    ]  # fmt: skip
    (line,) = cpu_budget(rows, cpus=2)
    assert line.startswith("single, ticketq: 4.00 ms of CPU per ticket in all")
    assert line.endswith("at most 500 tickets/s on 2 CPUs")


def test_targets_compare_ticketq_rows_with_the_issue() -> None:
    rows = [
        Row("single", "ticketq", tickets_per_s=710, worker_cpu_ms=1.6),
        Row("single", "baseline", tickets_per_s=5000, worker_cpu_ms=0.1),
        Row("bulk", "ticketq", tickets_per_s=1500, worker_cpu_ms=0.5),
        Row("limited import", "ticketq", pct_limit=98.5, http_429=0),
        Row("interactive", "ticketq", p99_s=2.5),
        Row("import (jsonl)", "ticketq", tickets_per_s=12_000, peak_rss_mb=80),
        Row("import (csv)", "ticketq", tickets_per_s=12_000, peak_rss_mb=160),
    ]
    verdicts = {t.what: t.verdict for t in targets(rows, rss_growth_mb=1.0)}
    assert verdicts == {
        "single jobs, end to end": "met",
        "single jobs, queued first": "not measured",
        "bulk jobs, end to end": "short",
        "bulk jobs, queued first": "not measured",
        "worker CPU, single jobs": "short",
        "worker CPU, single jobs, queued first": "not measured",
        "worker CPU, bulk jobs": "met",
        "worker CPU, bulk jobs, queued first": "not measured",
        "enqueue from JSONL, validated": "not measured",
        "`ticketq import` of a JSONL file": "met",
        "`ticketq import` of a CSV file": "short",
        "rate-limited import": "met",
        "interactive ticket during the import": "short",
        "worker RSS across the soak": "met",
    }


def test_a_single_429_misses_the_limit_target() -> None:
    rows = [Row("limited import", "ticketq", pct_limit=99.5, http_429=1)]
    target = next(t for t in targets(rows) if t.what == "rate-limited import")
    assert target.verdict == "short"
    assert target.measured == "99.5%, 1 x 429"


def test_document_names_date_machine_command_and_targets() -> None:
    text = markdown_document(
        date="2030-01-01 00:00 UTC",
        machine=Machine(2, "Some CPU", "0.10 0.20 0.30"),
        command="python -m ops.bench",
        settings="stand-in latency 20 ms",
        code="`abc1234`",
        rows=[Row("single", "ticketq", tickets_per_s=700)],
        target_items=targets([]),
        extra=["took 1 s"],
    )
    assert text.startswith("# Performance\n")
    assert "## 2030-01-01 00:00 UTC" in text
    assert "2 CPUs (Some CPU)" in text
    assert "`python -m ops.bench`" in text
    assert "Code: `abc1234`" in text
    assert "| single | one ticket per job" in text
    assert "- took 1 s" in text
