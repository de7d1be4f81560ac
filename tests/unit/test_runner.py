"""What one delivery of a job decides, with a real job store and a scripted StackOne.

The HTTP side is replaced by a list of outcomes here; the integration tests run the same
decisions against real HTTP and a real worker process.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from worker.contract import ErrorKind, JobSpec, JobState, TicketCreate, TicketIds
from worker.jobstore import JobStore, job_key
from worker.retry import RetryPolicy
from worker.runner import JobRunner, Requeue
from worker.settings import Settings
from worker.stackone import Created, Failed, Outcome


class ScriptedStackOne:
    """Answers each create with the next scripted outcome and remembers what was sent."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, TicketCreate]] = []

    def create_ticket(self, account_id: str, ticket: TicketCreate) -> Outcome:
        self.sent.append((account_id, ticket))
        return self.outcomes.pop(0)


CREATED = Created(ticket=TicketIds(id="t-1", remote_id="PROJ-1"))


def failure(kind: ErrorKind, status: int | None = None, **extra: Any) -> Failed:
    return Failed(kind=kind, message=f"{kind} {status}", status=status, **extra)


def make_runner(
    redis_client: redis.Redis, api: ScriptedStackOne, **overrides: Any
) -> tuple[JobRunner, JobStore]:
    settings = Settings.model_validate(
        {"TICKETQ_MAX_ATTEMPTS": 3, "TICKETQ_INPROCESS_MAX_DELAY": 0, **overrides}
    )
    store = JobStore(redis_client, succeeded_ttl=60, lease_seconds=60)
    policy = RetryPolicy(settings, rng=random.Random(1), sleep=lambda _: None)
    return JobRunner(settings, store, api, policy), store


def submit(store: JobStore) -> str:
    spec = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": "t"}})
    return store.create(spec, "interactive").job_id


def test_a_created_ticket_ends_the_job_succeeded(redis_client: redis.Redis) -> None:
    runner, store = make_runner(redis_client, ScriptedStackOne(CREATED))
    job_id = submit(store)

    assert runner.run(job_id) is None

    record = store.get(job_id)
    assert record is not None and record.state == JobState.SUCCEEDED
    assert record.ticket == CREATED.ticket


def test_a_long_wait_hands_the_job_back_to_the_queue(redis_client: redis.Redis) -> None:
    api = ScriptedStackOne(failure(ErrorKind.RETRYABLE, 429, retry_after=30.0))
    runner, store = make_runner(redis_client, api)
    job_id = submit(store)

    decision = runner.run(job_id)

    assert isinstance(decision, Requeue) and decision.delay >= 30.0
    record = store.get(job_id)
    assert record is not None and record.state == JobState.RETRYING


def test_a_finished_job_redelivered_is_not_sent_again(redis_client: redis.Redis) -> None:
    api = ScriptedStackOne(CREATED)
    runner, store = make_runner(redis_client, api)
    job_id = submit(store)
    runner.run(job_id)

    assert runner.run(job_id) is None
    assert len(api.sent) == 1


def test_ambiguous_outcomes_are_parked_when_the_policy_says_park(
    redis_client: redis.Redis,
) -> None:
    api = ScriptedStackOne(failure(ErrorKind.AMBIGUOUS, 408))
    runner, store = make_runner(redis_client, api, TICKETQ_ON_AMBIGUOUS="park")
    job_id = submit(store)

    runner.run(job_id)

    record = store.get(job_id)
    assert record is not None and record.state == JobState.FAILED
    assert record.error is not None and record.error.kind == ErrorKind.UNCERTAIN
    assert len(api.sent) == 1


def test_bad_credentials_keep_the_job_for_later(redis_client: redis.Redis) -> None:
    runner, store = make_runner(redis_client, ScriptedStackOne(failure(ErrorKind.BAD_CREDENTIALS)))
    job_id = submit(store)

    decision = runner.run(job_id)

    assert decision == Requeue(delay=Settings().backoff_max)
    record = store.get(job_id)
    assert record is not None and record.state == JobState.RETRYING


def test_a_job_redelivered_after_its_last_attempt_was_cut_off_is_parked_unsent(
    redis_client: redis.Redis,
) -> None:
    api = ScriptedStackOne()
    runner, store = make_runner(redis_client, api, TICKETQ_MAX_ATTEMPTS=1)
    job_id = submit(store)
    redis_client.hset(job_key(job_id), mapping={"attempts": 1})

    runner.run(job_id)

    record = store.get(job_id)
    assert record is not None and record.state == JobState.FAILED
    assert record.error is not None and record.error.kind == ErrorKind.UNCERTAIN
    assert api.sent == []


@pytest.mark.parametrize("stored", ['{"account_id": "acct", "ticket": {"sumary": "x"}}', "{}"])
def test_a_stored_job_that_no_longer_validates_fails_as_invalid(
    redis_client: redis.Redis, stored: str
) -> None:
    api = ScriptedStackOne()
    runner, store = make_runner(redis_client, api)
    job_id = submit(store)
    redis_client.hset(job_key(job_id), "spec", stored)

    runner.run(job_id)

    record = store.get(job_id)
    assert record is not None and record.state == JobState.FAILED
    assert record.error is not None and record.error.kind == ErrorKind.INVALID
    assert api.sent == []
