"""Limits shared by a fleet: two worker processes on one Redis keep one rate between them,
and an interactive ticket goes ahead of a bulk import that saturates it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack, StackConfig
from producers.client import Producer
from tests.integration.support import FAST_RETRIES
from worker.contract import JobState
from worker.limits.rate import INTERACTIVE_BURST, interval_us, reserve_ahead
from worker.settings import RateLimit

pytestmark = pytest.mark.integration
RATE = "10/s"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    run_dir: Path = tmp_path_factory.mktemp("fleet")
    settings = {**FAST_RETRIES, "TICKETQ_RATE_LIMIT": RATE, "TICKETQ_BULK_BATCH": "10"}
    # One delivery at a time per worker, prefetching 4 messages: the import's 6 messages
    # cannot all go to one worker, so both send, and only a shared limit keeps the rate.
    config = StackConfig(run_dir=run_dir, workers=2, worker_concurrency=1, settings_env=settings)
    with LocalStack(config) as stack:
        yield stack


def test_workers_share_one_rate_and_interactive_tickets_go_ahead_of_bulk(
    fleet: LocalStack,
) -> None:
    producer = Producer(fleet.settings())
    stand_in = FakeApiControl(fleet.fake_api_url)
    bulk = producer.submit_many("acct-fleet", [{"title": f"bulk {n}"} for n in range(60)])
    time.sleep(2.0)  # the import now keeps the rate saturated
    interactive = producer.submit("acct-fleet", {"title": "interactive"})

    record = interactive.wait(timeout=30)
    counts = bulk.wait(timeout=60)

    assert counts == {JobState.SUCCEEDED: 60}
    assert record.state == JobState.SUCCEEDED
    assert record.finished_at is not None and record.finished_at - record.created_at < 2.0
    arrivals = sorted(t for times in stand_in.stats()["requests_by_title"].values() for t in times)
    per_second = 1e6 / interval_us(RateLimit.parse(RATE))
    busiest = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert busiest <= per_second + INTERACTIVE_BURST + 1


def test_an_account_that_comes_late_gets_its_fair_share_instead_of_waiting_behind_an_import(
    fleet: LocalStack,
) -> None:
    producer = Producer(fleet.settings())
    early = producer.submit_many("acct-early", [{"title": f"early {n}"} for n in range(120)])
    time.sleep(2.0)  # the early import keeps the rate saturated: its jobs wait in line
    came = time.time()
    late = producer.submit_many("acct-late", [{"title": f"late {n}"} for n in range(8)])

    assert late.wait(timeout=60) == {JobState.SUCCEEDED: 8}
    done = max(r.finished_at or 0.0 for r in producer.store.get_many(late.job_ids) if r)
    early_left = sum(1 for state in early.progress().elements() if state != JobState.SUCCEEDED)
    # Half the rate takes 8 in 16 of its intervals, and the scheduler lets the line out once
    # a second. At 10/s the interval keeps room in each second for the interactive burst, its
    # reach and requests sent late (about 0.19 s: 16 take 3.0 s); behind the 40 or more of
    # the import still waiting, B would have waited over 40 of them.
    settings = fleet.settings()
    ahead = reserve_ahead(settings.scheduler_interval, settings.inprocess_max_delay)
    interval = interval_us(RateLimit.parse(RATE), ahead) / 1e6
    assert done - came < 16 * interval + 2 * settings.scheduler_interval
    assert early_left >= 40
    assert early.wait(timeout=60) == {JobState.SUCCEEDED: 120}
