"""Redis, broker and job store at once, killed with ``kill -9`` mid-batch and started again on
the same port and data directory (AOF on): the workers must find it again by themselves."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from producers.client import Producer
from tests.chaos.conftest import StackFactory
from tests.chaos.support import (
    RESENT_AFTER_RECONCILE,
    Row,
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
from worker.contract import JobState
from worker.delivery.runner import ADOPTED

pytestmark = pytest.mark.chaos

REDIS_DOWN_SECONDS = 2.0
JOBS = 60


def test_redis_killed_and_restarted_mid_batch_loses_no_job(
    chaos_stack: StackFactory, report: Callable[[Row], None], request: pytest.FixtureRequest
) -> None:
    stack = chaos_stack(workers=2, concurrency=4, latency_ms=600)
    assert stack.redis is not None
    producer, fake = Producer(stack.settings()), chaos_stack.fake_api(stack)
    titles = [f"redis-{uuid.uuid4().hex[:8]}-{i:02d}" for i in range(JOBS)]
    started = time.monotonic()
    jobs = submit_titled(producer, titles)

    wait_until(lambda: in_flight(fake, 20, 6), timeout=30, what="a third done, 6 in flight")
    time.sleep(0.1)
    stack.redis.kill()
    time.sleep(REDIS_DOWN_SECONDS)  # requests in flight come back meanwhile
    stack.redis.restart()
    found = wait_final(producer, list(jobs.values()), timeout=60)
    seconds = time.monotonic() - started

    created = fake.stats()["created_by_title"]
    on_record = tickets_by_title(stack)
    adopted, resent = log_count(stack, ADOPTED), log_count(stack, RESENT_AFTER_RECONCILE)
    report(
        Row.of(
            "redis restart",
            f"kill -9 redis-server at 1/3 of the batch, restart {REDIS_DOWN_SECONDS:.0f}s later",
            found,
            tickets=sum(created.get(t, 0) for t in titles),
            duplicates=duplicates(created, titles),
            adopted_uncertain=f"adopted {adopted}, resent {resent}",
            seconds=seconds,
            nodeid=request.node.nodeid,
        )
    )
    run_dir = stack.config.run_dir
    assert all(worker.is_running() for worker in stack.workers), f"a worker died; {run_dir}"
    for worker in stack.workers:  # each found the new Redis by itself
        assert worker.log_text().count("Connected to ") >= 2, worker.log_tail()
    assert not_final(found) == [], f"unfinished {states(found)}; logs in {run_dir}"
    assert states(found) == {JobState.SUCCEEDED: JOBS}
    # No request was ambiguous here, so no job may have more than its one ticket.
    assert {t: created.get(t, 0) for t in titles} == dict.fromkeys(titles, 1)
    for title, job_id in jobs.items():
        ticket = found[job_id].ticket
        assert ticket is not None and on_record[title] == [ticket.id]
