"""The pure parts of the benchmark's scenarios: outcomes, duplicates, limit use, times."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ops.bench.scenarios import (
    Outcome,
    baseline_outcome,
    busy_cpu,
    duplicates,
    epoch,
    pct_of_limit,
    slow_notes,
    ticket,
    ticketq_outcome,
)
from worker.contract import TicketCreate


def test_bench_tickets_pass_ticketq_validation_and_have_unique_titles() -> None:
    TicketCreate.model_validate(ticket("single", 1))
    assert ticket("single", 1)["title"] != ticket("single", 2)["title"]


def test_duplicates_count_tickets_beyond_one_per_title() -> None:
    assert duplicates({"a": 1, "b": 3, "c": 2}) == 3
    assert duplicates({}) == 0


def test_pct_of_limit() -> None:
    # 5,000 tickets in 303 s at 1000/min: 990/min, 99%
    assert pct_of_limit(5000, 303.03, 1000) == pytest.approx(99.0, abs=0.01)
    assert math.isnan(pct_of_limit(10, 0, 1000))


def test_epoch_reads_celery_date_done_in_its_forms() -> None:
    aware = datetime(2030, 1, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert epoch(aware) == aware.timestamp()
    assert epoch("2030-01-01T12:00:00.500000+00:00") == aware.timestamp()
    assert epoch("2030-01-01T12:00:00.500000") == aware.timestamp()  # naive means UTC
    assert epoch("yesterday") is None
    assert epoch(None) is None


def test_ticketq_outcome_spans_first_created_to_last_finished() -> None:
    times = [
        ("succeeded", 100.0, 100.5),
        ("succeeded", 100.1, 101.0),
        ("failed", 100.2, 100.3),
        ("queued", 100.3, None),
    ]
    outcome = ticketq_outcome(times)
    assert outcome.submitted == 4
    assert outcome.latencies == pytest.approx([0.5, 0.9])
    assert outcome.not_ok == 2
    assert (outcome.first_submit, outcome.last_done, outcome.first_done) == (100.0, 101.0, 100.3)
    assert outcome.rate() == pytest.approx(2.0)


def test_baseline_outcome_uses_date_done_and_counts_failures() -> None:
    submitted = {"a": 10.0, "b": 10.5, "c": 11.0, "d": 11.0}
    metas: dict[str, dict[str, Any]] = {
        "a": {"status": "SUCCESS", "date_done": datetime.fromtimestamp(12.0, UTC).isoformat()},
        "b": {"status": "FAILURE", "date_done": datetime.fromtimestamp(13.0, UTC).isoformat()},
        "c": {"status": "SUCCESS", "date_done": None, "result": {"finished_at": 14.0}},
    }
    outcome = baseline_outcome(["a", "b", "c", "d"], submitted, metas)
    assert outcome.latencies == pytest.approx([2.0, 3.0])
    assert outcome.not_ok == 2  # b failed, d never finished
    assert (outcome.first_submit, outcome.last_done) == (10.0, 14.0)


def test_slow_notes_say_how_many_interactive_tickets_were_late_and_when() -> None:
    outcome = Outcome(
        submitted=4,
        latencies=[0.1, 2.5, 0.2, 4.0],
        first_submit=100,
        last_done=120,
        not_ok=0,
        starts=[100.0, 101.0, 102.0, 110.4],
    )
    assert slow_notes(outcome, 100.0, 0.5) == (
        "one every 0.5 s during the import; 2 over 2 s (max 4.0 s; sent at 1, 10 s into the import)"
    )
    assert slow_notes(replace(outcome, latencies=[0.1] * 4), 100.0, 0.5).endswith("0 over 2 s")


def test_busy_loops_run_for_the_block_and_are_gone_after_it() -> None:
    with busy_cpu(2) as pids:
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, 0)  # alive
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with busy_cpu(0) as none:
        assert none == []
