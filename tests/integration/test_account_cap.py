"""The account cap in full: a fleet keeps an account's requests in flight at its cap, never
above it, and hands a freed slot to a waiting job at once instead of after a poll's sleep.

The stand-in counts the requests in flight per account itself (``in_flight_by_account``);
its mean over the run is the cap's use, asserted loosely (tickets/s belong to the bench).
When waiting jobs slept out the cap's wait (up to 1 s) instead, a slot freed after 100 ms
stood idle most of the time: the mean was about a third of the cap or less.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.fakeapi_client import FakeApiControl, FakeApiOptions
from ops.stack import LocalStack, StackConfig
from producers.client import Producer
from worker.contract import JobState

pytestmark = pytest.mark.integration
CAP = 3
LATENCY_MS = 100
THREADS = 8  # per worker; two workers
USED = 0.6  # of the cap, on average, at least: the poll it replaces used about a third


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    run_dir: Path = tmp_path_factory.mktemp("capped")
    settings = {"TICKETQ_ACCOUNT_CONCURRENCY": str(CAP), "TICKETQ_RATE_LIMIT": "1000000/min"}
    config = StackConfig(
        run_dir=run_dir,
        workers=2,
        worker_concurrency=THREADS,
        fake_api=FakeApiOptions(latency_ms=LATENCY_MS),
        settings_env=settings,
    )
    with LocalStack(config) as stack:
        yield stack


def in_flight(stack: LocalStack, account: str) -> dict[str, Any]:
    control = FakeApiControl(stack.fake_api_url)
    try:
        figures: dict[str, Any] = control.stats()["in_flight_by_account"][account]
        return figures
    finally:
        control.close()


def test_a_bulk_import_keeps_its_account_at_the_cap_and_never_above_it(
    capped: LocalStack,
) -> None:
    """One delivery carries the whole import: its jobs the cap holds back go round as soon
    as its own answers free their slots."""
    producer = Producer(capped.settings())

    batch = producer.submit_many("acct-cap-bulk", [{"title": f"bulk {n}"} for n in range(30)])

    assert batch.wait(timeout=60) == {JobState.SUCCEEDED: 30}
    figures = in_flight(capped, "acct-cap-bulk")
    assert figures["peak"] == CAP
    assert figures["mean"] >= USED * CAP, figures


def test_single_jobs_waiting_for_their_account_each_take_a_slot_as_it_comes_free(
    capped: LocalStack,
) -> None:
    """As many single jobs as the fleet has threads, all claimed at once: all but the cap's
    worth wait in their deliveries, and each freed slot wakes one of them."""
    producer = Producer(capped.settings())

    jobs = [producer.submit("acct-cap-single", {"title": f"single {n}"}) for n in range(16)]

    assert {job.wait(timeout=60).state for job in jobs} == {JobState.SUCCEEDED}
    figures = in_flight(capped, "acct-cap-single")
    assert figures["peak"] == CAP
    assert figures["mean"] >= USED * CAP, figures
