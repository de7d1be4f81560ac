"""``kill -9`` of one of two workers in the middle of a batch, a replacement started at once.

What the killed worker held comes back two ways: the jobs it was sending hold leases that
run out, and the scheduler of a live worker sends them again, reconciling first (their
tickets may exist); the messages it had prefetched but not started are unacknowledged
Celery messages, which the broker gives back after the visibility timeout.

The scenario runs once (a module fixture); the tests below check different promises.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from producers.client import Producer
from tests.chaos.conftest import ROWS, StackFactory
from tests.chaos.support import (
    KOMBU_RESTORE_SWEEP,
    LEASE_SECONDS,
    RESENT_AFTER_RECONCILE,
    VISIBILITY_TIMEOUT,
    Row,
    busiest_sender,
    duplicates,
    in_flight,
    log_count,
    not_final,
    states,
    submit_titled,
    tickets_by_title,
    wait_final,
    wait_until,
)
from worker.contract import JobRecord, JobState
from worker.delivery.runner import ADOPTED

JOBS = 60
# The longest the product may take as built: the visibility timeout, then kombu's next
# restore sweep in a live worker, then a lease for a job that was mid-request.
RECOVERY_DEADLINE = VISIBILITY_TIMEOUT + KOMBU_RESTORE_SWEEP + LEASE_SECONDS + 20
# What the README promises: prefetched messages come back after the visibility timeout.
PROMISED_RECOVERY = VISIBILITY_TIMEOUT + LEASE_SECONDS + 10

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(RECOVERY_DEADLINE + 60)]


@dataclass
class Observed:
    run_dir: Path
    jobs: dict[str, str]  # job id by title
    found: dict[str, JobRecord]
    created: dict[str, int]
    on_record: dict[str, list[str]]  # ticket ids by title, as the stand-in lists them
    adopted: int
    resent: int
    done_after_kill: float  # seconds from the kill until the last job was final


@pytest.fixture(scope="module")
def killed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    factory = StackFactory(tmp_path_factory.mktemp("worker-kill"))
    try:
        stack = factory(workers=2, concurrency=4, latency_ms=600)
        producer, fake = Producer(stack.settings()), factory.fake_api(stack)
        titles = [f"kill9-{uuid.uuid4().hex[:8]}-{i:02d}" for i in range(JOBS)]
        started = time.monotonic()
        jobs = submit_titled(producer, titles)

        # A third done and both workers' requests in flight at the stand-in. The extra
        # moment lets the victim finish taking its next messages off the queue (that window
        # is test_worker_faults.py's lost-message test).
        wait_until(lambda: in_flight(fake, JOBS // 3, 6), timeout=30, what="1/3 done, 6 sent")
        time.sleep(0.1)
        busiest_sender(stack, fake).kill()
        killed_at = time.monotonic()
        stack.start_worker()
        found = wait_final(producer, list(jobs.values()), timeout=RECOVERY_DEADLINE)
        done = time.monotonic()

        created = fake.stats()["created_by_title"]
        seen = Observed(
            run_dir=stack.config.run_dir,
            jobs=jobs,
            found=found,
            created=created,
            on_record=tickets_by_title(stack),
            adopted=log_count(stack, ADOPTED),
            resent=log_count(stack, RESENT_AFTER_RECONCILE),
            done_after_kill=done - killed_at,
        )
        request.config.stash[ROWS].append(
            Row.of(
                "worker kill -9",
                "SIGKILL 1 of 2 workers at 1/3 of the batch, replacement started; "
                f"last job final {seen.done_after_kill:.0f}s after the kill",
                found,
                tickets=sum(created.get(t, 0) for t in titles),
                duplicates=duplicates(created, titles),
                adopted_uncertain=f"adopted {seen.adopted}, resent {seen.resent}",
                seconds=done - started,
                nodeid=request.node.nodeid,  # the module: both tests below
            )
        )
        yield seen
    finally:
        factory.stop_all()


def test_a_worker_killed_mid_batch_loses_no_job_and_duplicates_no_ticket(
    killed: Observed,
) -> None:
    found = killed.found
    assert not_final(found) == [], f"unfinished {states(found)}; logs in {killed.run_dir}"
    assert states(found) == {JobState.SUCCEEDED: JOBS}
    titles = list(killed.jobs)
    assert {t: killed.created.get(t, 0) for t in titles} == dict.fromkeys(titles, 1)
    for title, job_id in killed.jobs.items():
        ticket = found[job_id].ticket
        assert ticket is not None and killed.on_record[title] == [ticket.id]
    # The kill must have cut attempts off mid-request, or the lease path went untested;
    # with reconcile (the default) those jobs were adopted or, if nothing existed, resent.
    assert killed.adopted + killed.resent >= 1, f"nothing in flight died; {killed.run_dir}"


def test_a_killed_workers_prefetched_jobs_come_back_after_the_visibility_timeout(
    killed: Observed,
) -> None:
    if not_final(killed.found):
        pytest.fail("jobs never finished: see the test above")
    assert killed.done_after_kill <= PROMISED_RECOVERY, (
        f"the last job was final {killed.done_after_kill:.0f}s after the kill; the visibility "
        f"timeout is {VISIBILITY_TIMEOUT}s, a lease {LEASE_SECONDS}s"
    )
