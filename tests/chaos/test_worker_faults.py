"""Workers that die: a job that kills every worker that touches it, a graceful SIGTERM with
requests in flight, and a message taken off the queue by a consumer that died before it
could record it. (``kill -9`` mid-batch has a module of its own: test_worker_kill.py.)"""

from __future__ import annotations

import functools
import signal
import time
import uuid
from collections.abc import Callable

import pytest
import redis

from producers.client import Producer
from tests.chaos.conftest import StackFactory
from tests.chaos.support import (
    ACCOUNT,
    CONNECT_TIMEOUT,
    LEASE_SECONDS,
    MAX_LOST_ATTEMPTS,
    READ_TIMEOUT,
    SCHEDULER_INTERVAL,
    Row,
    all_final,
    duplicates,
    in_flight,
    log_count,
    not_final,
    records,
    states,
    submit_titled,
    task_args,
    wait_final,
    wait_until,
)
from worker.contract import ErrorKind, JobState
from worker.delivery.runner import ADOPTED

pytestmark = pytest.mark.chaos

Report = Callable[[Row], None]


@pytest.mark.timeout(180)
def test_a_job_that_kills_every_worker_ends_failed_as_poison_and_the_rest_flow(
    chaos_stack: StackFactory, report: Report, request: pytest.FixtureRequest
) -> None:
    stack = chaos_stack(workers=1, concurrency=4, latency_ms=50)
    producer, fake = Producer(stack.settings()), chaos_stack.fake_api(stack)
    run = uuid.uuid4().hex[:8]
    poison = f"poison-{run}"
    # Each delivery's request hangs at the stand-in; the test kills the worker meanwhile,
    # as a crash in the handling would. More steps than deliveries, so none answers.
    fake.script(poison, *[{"delay_ms": 60_000, "status": 500}] * (MAX_LOST_ATTEMPTS + 3))
    started = time.monotonic()
    poison_job = producer.submit(ACCOUNT, {"title": poison}).job_id
    others: dict[str, str] = {}
    kills = 0
    deadline = time.monotonic() + (MAX_LOST_ATTEMPTS + 1) * (LEASE_SECONDS + 15)

    def delivered_again_or_final() -> bool:
        if len(fake.arrivals(poison)) > kills:
            return True
        return records(producer, [poison_job])[poison_job].state.is_final

    while True:
        # Neighbours submitted alongside each delivery of the poison job.
        others |= submit_titled(producer, [f"neighbour-{run}-{kills}-{i}" for i in range(3)])
        wait_until(
            delivered_again_or_final,
            timeout=max(deadline - time.monotonic(), 1),
            what="the poison job delivered again or final",
        )
        if len(fake.arrivals(poison)) <= kills:
            break  # final without another request: the claim declared it poison
        # Let the neighbours finish first, so only the poison job rides on the kill.
        wait_until(
            functools.partial(all_final, producer, list(others.values())),
            timeout=15,
            what="the neighbours finished",
        )
        stack.workers[-1].kill()
        kills += 1
        assert kills <= MAX_LOST_ATTEMPTS + 1, "the poison job is never given up"
        stack.start_worker()
    found = wait_final(producer, [poison_job, *others.values()], timeout=20)
    seconds = time.monotonic() - started

    created = fake.stats()["created_by_title"]
    poisoned = found[poison_job]
    report(
        Row.of(
            "poison job",
            f"every delivery's worker SIGKILLed ({kills} kills), neighbours alongside",
            found,
            tickets=sum(created.get(t, 0) for t in [poison, *others]),
            duplicates=duplicates(created, [poison, *others]),
            adopted_uncertain=f"poison after {len(fake.arrivals(poison))} requests",
            seconds=seconds,
            nodeid=request.node.nodeid,
        )
    )
    assert poisoned.state == JobState.FAILED, f"{poisoned}; logs in {stack.config.run_dir}"
    assert poisoned.error is not None and poisoned.error.kind == ErrorKind.POISON
    assert len(fake.arrivals(poison)) == MAX_LOST_ATTEMPTS
    assert kills == MAX_LOST_ATTEMPTS
    assert created.get(poison, 0) == 0
    assert all(found[job_id].state == JobState.SUCCEEDED for job_id in others.values())
    assert {t: created.get(t, 0) for t in others} == dict.fromkeys(others, 1)


# A worker told to stop finishes the requests it has sent (each bounded by the client's
# timeouts) and hands the rest back; a few seconds more for Celery's own shutdown.
GRACEFUL_EXIT_BOUND = CONNECT_TIMEOUT + READ_TIMEOUT + 3


def test_sigterm_lets_a_worker_finish_its_requests_and_another_does_the_rest(
    chaos_stack: StackFactory, report: Report, request: pytest.FixtureRequest
) -> None:
    stack = chaos_stack(workers=2, concurrency=4, latency_ms=1500)
    producer, fake = Producer(stack.settings()), chaos_stack.fake_api(stack)
    titles = [f"sigterm-{uuid.uuid4().hex[:8]}-{i:02d}" for i in range(24)]
    started = time.monotonic()
    jobs: dict[str, str] = {}
    for title in titles:  # one message each, so that both workers take some at once
        jobs |= submit_titled(producer, [title])
        producer.flush()
    wait_until(lambda: in_flight(fake, 0, 8), timeout=20, what="both workers busy")
    time.sleep(0.3)  # well inside the 1.5 s requests

    stopping = stack.workers[0]
    asked = time.monotonic()
    stopping.signal(signal.SIGTERM)
    wait_until(lambda: not stopping.is_running(), timeout=30, what="the worker exited")
    exit_seconds = time.monotonic() - asked
    found = wait_final(producer, list(jobs.values()), timeout=60)
    seconds = time.monotonic() - started

    stats = fake.stats()
    created = stats["created_by_title"]
    adopted = log_count(stack, ADOPTED)
    report(
        Row.of(
            "graceful shutdown",
            f"SIGTERM 1 of 2 workers mid-request; exited in {exit_seconds:.1f}s",
            found,
            tickets=sum(created.get(t, 0) for t in titles),
            duplicates=duplicates(created, titles),
            adopted_uncertain=f"adopted {adopted}",
            seconds=seconds,
            nodeid=request.node.nodeid,
        )
    )
    assert exit_seconds <= GRACEFUL_EXIT_BOUND, stopping.log_tail()
    assert "Warm shutdown" in stopping.log_text()
    assert not_final(found) == [], f"unfinished {states(found)}; logs in {stack.config.run_dir}"
    assert states(found) == {JobState.SUCCEEDED: 24}
    assert {t: created.get(t, 0) for t in titles} == dict.fromkeys(titles, 1)
    # Nothing was cut off: every job was sent exactly once, nothing needed reconciling.
    assert stats["requests"] == 24 and adopted == 0
    assert all(r.attempts == 1 for r in found.values())


LOST_REQUEUE_AFTER = 5.0  # shorter than the suite's, to wait less; the bug is the same


def test_a_message_lost_between_queue_and_worker_is_sent_again(
    chaos_stack: StackFactory, report: Report, request: pytest.FixtureRequest
) -> None:
    stack = chaos_stack(workers=0, env={"TICKETQ_REQUEUE_AFTER": str(LOST_REQUEUE_AFTER)})
    producer, fake = Producer(stack.settings()), chaos_stack.fake_api(stack)
    title = f"lost-message-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    job_id = producer.submit(ACCOUNT, {"title": title}).job_id

    # What kombu's Redis transport does to consume (BRPOP), by a consumer that is then
    # killed before its next write records the message as unacknowledged: this is the
    # state a `kill -9` of a worker in that window leaves behind, made deterministic.
    broker = redis.Redis.from_url(stack.redis_url)
    try:
        taken = broker.brpop(["ticketq.interactive"], timeout=5)
    finally:
        broker.close()
    if taken is None or [[job_id]] != task_args(taken[1]):
        pytest.fail(f"the job's message was not on the queue: {taken!r}")
    stack.start_worker()
    # Due again REQUEUE_AFTER after it was sent, then a scheduler tick and one request.
    remaining = LOST_REQUEUE_AFTER + 2 * SCHEDULER_INTERVAL + 5 - (time.monotonic() - started)
    found = wait_final(producer, [job_id], timeout=max(remaining, 5))
    seconds = time.monotonic() - started

    created = fake.stats()["created_by_title"]
    report(
        Row.of(
            "message lost in flight",
            "consumer took the message off the queue and died before recording it",
            found,
            tickets=created.get(title, 0),
            duplicates=duplicates(created, [title]),
            adopted_uncertain="-",
            seconds=seconds,
            nodeid=request.node.nodeid,
        )
    )
    assert found[job_id].state == JobState.SUCCEEDED, f"{found[job_id]}"
    assert created.get(title, 0) == 1
