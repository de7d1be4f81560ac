"""The dashboard's arithmetic, on numbers alone: times and ages, progress bars, the
throughput chart, the state table, the banners, and how often a batch is read."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import cast

from ops.web import views
from ops.web.dashboard import ProgressCache
from worker.store.batches import Batches, Progress
from worker.store.stats import Due, KeyStatus, LimitUse, Minute, Snapshot

AT = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)


def snapshot(keys: list[KeyStatus]) -> Snapshot:
    return Snapshot(
        at=AT,
        jobs={},
        waiting={},
        oldest_waiting_seconds=None,
        due=Due(retrying=0, held_back=0, overdue=0),
        throughput=[],
        limit=LimitUse(per_minute=1000, last_minute=0, use=0.0),
        keys=keys,
        workers=[],
    )


def test_times_read_in_utc_and_spans_in_their_two_largest_units() -> None:
    assert views.utc(AT.timestamp()) == "2026-12-01 04:00:00 UTC"
    assert views.utc(None) == ""
    assert views.duration(8.9) == "8 s"
    assert views.duration(185) == "3 min 5 s"
    assert views.duration(7200) == "2 h"
    assert views.duration(7260 + 59) == "2 h 1 min"
    assert views.duration(3 * 86400 + 4 * 3600 + 5) == "3 d 4 h"
    assert views.duration(-5) == "0 s"
    now = AT.timestamp()
    assert views.ago(now - 65, now) == "1 min 5 s ago"
    assert views.ago(AT + timedelta(seconds=30), now) == "in 30 s"
    assert views.ago(now + 0.4, now) == "0 s ago"  # finished just after the page read the time


def test_a_progress_bar_puts_finished_jobs_first_each_as_wide_as_its_share() -> None:
    bar = views.segments(Counter(queued=2, succeeded=5, failed=1, running=0, missing=2))
    assert [(s.state, s.count, s.x, s.width) for s in bar] == [
        ("succeeded", 5, 0.0, 50.0),
        ("failed", 1, 50.0, 10.0),
        ("queued", 2, 60.0, 20.0),
        ("missing", 2, 80.0, 20.0),
    ]
    assert views.segments(Counter()) == []


def test_the_chart_stacks_each_minute_on_a_scale_topped_by_the_busiest() -> None:
    minutes = [
        Minute(at=AT, succeeded=30, failed=10, attempts=45),
        Minute(at=AT, succeeded=10, cancelled=10, attempts=10),
    ]
    chart = views.chart(minutes)
    assert chart.peak == 40 and chart.finished == 60 and chart.attempts == 55
    first, second = chart.bars[-2:]
    assert first.parts == [("succeeded", 30.0, 90.0), ("failed", 0.0, 30.0)]
    assert second.parts == [("succeeded", 90.0, 30.0), ("cancelled", 60.0, 30.0)]
    assert second.x > first.x and second.x + second.width <= views.CHART_WIDTH


def test_an_hour_with_nothing_finished_draws_no_bars_and_divides_by_nothing() -> None:
    chart = views.chart([Minute(at=AT) for _ in range(60)])
    assert chart.peak == 0 and all(bar.parts == [] for bar in chart.bars)


def test_the_state_table_has_a_row_per_lane_and_a_total() -> None:
    rows = views.state_table({"bulk": {"queued": 4, "failed": 1}, "interactive": {"queued": 1}})
    assert [row.lane for row in rows] == ["bulk", "interactive", "all"]
    queued = views.STATES.index("queued")
    assert rows[-1].counts[queued] == 5 and rows[-1].total == 6


def test_a_refused_key_and_an_outage_each_raise_a_banner_and_a_healthy_key_none() -> None:
    refused = KeyStatus(
        fingerprint="abc123",
        refused=True,
        refusal="401: key revoked",
        refused_since=AT - timedelta(minutes=3),
    )
    outage = KeyStatus(fingerprint="def456", refused=False, outage=True, paused_until=AT)
    healthy = KeyStatus(fingerprint="0f0f0f", refused=False)
    found = views.banners(snapshot([refused, outage, healthy]))
    assert [banner.title for banner in found] == [
        "StackOne refuses the API key abc123",
        "StackOne is failing for key def456",
    ]
    assert "401: key revoked" in found[0].detail and "3 min ago" in found[0].detail


def test_a_batch_slow_to_read_or_finished_is_read_again_less_often() -> None:
    running = Progress(Counter(queued=500, succeeded=500), None)
    assert views.reread_after(running, took=0.01) == 1.5
    assert views.reread_after(running, took=2.0) == 10.0
    assert views.reread_after(Progress(Counter(succeeded=9, failed=1), 1.0), took=0.01) == 30.0


def test_the_progress_cache_reads_a_batch_once_per_interval_whoever_asks() -> None:
    clock = [100.0]

    class CountingBatches:
        reads = 0

        def progress(self, batch_id: str) -> Progress:
            self.reads += 1
            clock[0] += 1.0  # a slow read: a second
            return Progress(Counter(queued=10), None)

    batches = cast(Batches, CountingBatches())
    cache = ProgressCache(clock=lambda: clock[0])
    cache.get(batches, "b1")  # read from 100 to 101: kept until 106
    for now in (101.5, 105.9):
        clock[0] = now
        cache.get(batches, "b1")
    assert cast(CountingBatches, batches).reads == 1
    clock[0] = 106.1
    cache.get(batches, "b1")
    assert cast(CountingBatches, batches).reads == 2
