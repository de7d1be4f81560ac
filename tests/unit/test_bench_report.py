"""The benchmark's report: medians over runs, ratio rows, targets, table formatting."""

from __future__ import annotations

import math

from ops.bench.report import (
    COLUMNS,
    Machine,
    Row,
    cell,
    combine,
    cpu_against_unlimited,
    cpu_budget,
    markdown_document,
    markdown_table,
    notes_lines,
    rich_table,
    targets,
    targets_13,
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


def test_pct_of_bound_is_a_column_left_out_of_ratio_rows() -> None:
    rows = [
        Row("cap 10, 20 ms, bulk", "ticketq", tickets_per_s=450, pct_bound=90.0),
        Row("cap 10, 20 ms, bulk", "baseline", tickets_per_s=250),
    ]
    ours, theirs, ratio = with_ratios(rows)
    assert cell(ours, COLUMN["pct_bound"]) == "90.0"
    assert cell(theirs, COLUMN["pct_bound"]) == ""
    assert cell(ratio, COLUMN["pct_bound"]) == ""
    assert cell(ratio, COLUMN["tickets_per_s"]) == "1.80x"


def test_issue_13_targets_read_the_fair_cap_and_busy_rows() -> None:
    rows = [
        Row("fair share", "ticketq", pct_bound=85.0),
        Row("fair share", "baseline", pct_bound=10.0),
        Row("fair share, weights 1:3", "ticketq", pct_bound=70.0),
        Row("cap 10, 20 ms, bulk", "ticketq", tickets_per_s=450, pct_bound=90.0),
        Row("cap 10, 20 ms, single", "ticketq", tickets_per_s=179, pct_bound=35.8),
        Row("cap 0, 20 ms, bulk", "ticketq", tickets_per_s=1300),
        Row("cap 10, 500 ms, limit 1000/min, bulk", "ticketq", pct_limit=98.0),
        Row("limited import, busy CPU", "ticketq", pct_limit=97.0, http_429=1, worker_cpu_ms=0.9),
        Row("interactive, busy CPU", "ticketq", p99_s=0.5),
        Row("limited import", "ticketq", worker_cpu_ms=0.4),
        Row("bulk", "ticketq", worker_cpu_ms=0.5),
    ]
    found = {t.what: (t.verdict, t.measured) for t in targets_13(rows)}
    assert found == {
        "account B beside A's import": ("met", "85% of the bound"),
        "account B beside A's import, weighted": ("short", "70% of the bound"),
        "one account's bulk import, short latency": ("met", "450/s, 90% of the bound"),
        "one account's single jobs, short latency": ("short", "179/s, 36% of the bound"),
        "one account's bulk import, long latency (the limit binds)": ("met", "98.0%, 0 x 429"),
        "rate-limited import, busy CPU": ("short", "97.0%, 1 x 429"),
        "interactive ticket during it, busy CPU": ("met", "p99 0.50 s"),
        "worker CPU under the limit": ("met", "0.40 ms against 0.50 ms"),
        "worker CPU under the limit, busy CPU": ("short", "0.90 ms against 0.50 ms"),
    }
    assert {t.verdict for t in targets_13([])} == {"not measured"}


def test_limited_imports_are_noted_against_the_same_systems_unlimited_bulk_run() -> None:
    rows = [
        Row("bulk", "ticketq", worker_cpu_ms=0.5),
        Row("bulk", "baseline", worker_cpu_ms=4.0),
        Row("limited import", "ticketq", worker_cpu_ms=8.0, notes="5,000 created"),
        Row("limited import, busy CPU", "baseline", worker_cpu_ms=36.0),
        Row("interactive", "ticketq", worker_cpu_ms=1.0),
    ]
    out = cpu_against_unlimited(rows)
    assert out[2].notes == (
        "5,000 created; worker CPU 16.0x the unlimited bulk run's 0.50 ms/ticket"
    )
    assert out[3].notes == "worker CPU 9.0x the unlimited bulk run's 4.00 ms/ticket"
    assert out[4].notes == "" and out[:2] == rows[:2]


def test_document_has_issue_13s_targets_and_explains_every_scenario() -> None:
    text = markdown_document(
        date="2030-01-01 00:00 UTC",
        machine=Machine(2, "Some CPU", "0.10 0.20 0.30"),
        command="python -m ops.bench",
        settings="s",
        rows=[],
        target_items=[],
        issue13=targets_13([]),
    )
    assert "### Targets (issue 13)" in text
    for scenario in (
        "fair share",
        "cap N, 20 ms, bulk / single",
        "limited import / interactive, busy CPU",
    ):
        assert f"| {scenario}" in text
    assert "one FIFO queue for\nevery account" in text
