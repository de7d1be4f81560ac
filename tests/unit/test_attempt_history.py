"""A job's record keeps its last requests (``attempt_log``), written by transition.lua with
the outcome, in a real (private) Redis; and reading a history never hides the record."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis

from worker.contract import (
    ATTEMPTS_KEPT,
    AttemptEntry,
    ErrorKind,
    JobError,
    JobSpec,
    JobState,
    Outcome,
    TicketIds,
)
from worker.store.jobs import Claim, JobStore, Recorded, Transition, failed, retrying, succeeded
from worker.store.keys import job_key

SPEC = JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t"}})
UNAVAILABLE = JobError(kind=ErrorKind.RETRYABLE, message="unavailable", status=503)


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, succeeded_ttl=3600, lease_seconds=60)


def claimed(store: JobStore, job_id: str | None = None) -> Claim:
    claim = store.claim(job_id or store.create(SPEC, "interactive").job_id)
    assert isinstance(claim, Claim)
    return claim


def entry(status: int | None, outcome: Outcome, at: float = 1_764_560_000.0) -> AttemptEntry:
    if status == 201:
        return AttemptEntry(at=at, status=201, latency_ms=12.5, outcome=outcome)
    return AttemptEntry(
        at=at,
        status=status,
        latency_ms=80.0,
        outcome=outcome,
        kind=ErrorKind.RETRYABLE,
        error=f"Service unavailable ({status})",
    )


def record(store: JobStore, change: Transition, *tried: AttemptEntry) -> None:
    assert store.apply([replace(change, tried=tried)]) == [Recorded.OK]


def retry_now(claim: Claim, attempts: int = 1) -> Transition:
    return retrying(claim, SPEC, UNAVAILABLE, due_at=time.time() - 1, attempts=attempts)


def test_a_retried_job_keeps_each_request_its_deliveries_made_in_order(
    redis_client: redis.Redis,
) -> None:
    """Once it succeeded, only if its record is kept whole (TICKETQ_KEEP_BODY)."""
    store = JobStore(redis_client, succeeded_ttl=3600, lease_seconds=60, keep_body=True)
    first = claimed(store)
    again, later = entry(503, Outcome.AGAIN, 1.0), entry(503, Outcome.RETRYING, 2.0)
    record(store, retry_now(first, 2), again, later)
    second = claimed(store, first.job_id)
    made = entry(201, Outcome.SUCCEEDED, 3.0)
    record(store, succeeded(second, SPEC, TicketIds(id="t-1"), 1), made)

    job = store.get(first.job_id)
    assert job is not None and job.state is JobState.SUCCEEDED
    assert job.attempt_log == [again, later, made]
    assert job.public()["attempt_log"][0] == {
        "at": "1970-01-01T00:00:01Z",
        "status": 503,
        "latency_ms": 80.0,
        "outcome": "again",
        "kind": "retryable",
        "error": "Service unavailable (503)",
    }


def test_a_job_made_at_a_later_request_keeps_its_attempts_and_no_history(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """A succeeded record keeps what correlation needs; each request's line is long enough
    to cost the record Redis's compact encoding, for the retention period."""
    first = claimed(store)
    record(store, retry_now(first), entry(503, Outcome.RETRYING, 1.0))
    second = claimed(store, first.job_id)
    record(store, succeeded(second, SPEC, TicketIds(id="t-1"), 1), entry(201, Outcome.SUCCEEDED))

    assert redis_client.hget(job_key(first.job_id), "attempt_log") is None
    job = store.get(first.job_id)
    assert job is not None and job.attempt_log == [] and job.attempts == 2


def test_a_job_made_at_its_first_request_keeps_no_history(
    store: JobStore, redis_client: redis.Redis
) -> None:
    claim = claimed(store)
    record(store, succeeded(claim, SPEC, TicketIds(id="t-1"), 1), entry(201, Outcome.SUCCEEDED))

    assert redis_client.hget(job_key(claim.job_id), "attempt_log") is None
    job = store.get(claim.job_id)
    assert job is not None and job.attempt_log == [] and job.attempts == 1


def test_a_failed_job_keeps_its_one_request(store: JobStore) -> None:
    claim = claimed(store)
    refused = entry(422, Outcome.FAILED).model_copy(update={"kind": ErrorKind.TERMINAL})
    error = JobError(kind=ErrorKind.TERMINAL, message="Summary is required", status=422)
    record(store, failed(claim, SPEC, error, 1), refused)

    job = store.get(claim.job_id)
    assert job is not None and job.attempt_log == [refused]


def test_the_history_keeps_only_the_latest_requests(
    store: JobStore, redis_client: redis.Redis
) -> None:
    claim = claimed(store)
    for n in range(ATTEMPTS_KEPT + 3):
        record(store, retry_now(claim), entry(500 + n, Outcome.RETRYING, float(n)))
        claim = claimed(store, claim.job_id)

    job = store.get(claim.job_id)
    assert job is not None
    assert [e.status for e in job.attempt_log] == list(range(503, 500 + ATTEMPTS_KEPT + 3))
    stored = str(redis_client.hget(job_key(claim.job_id), "attempt_log"))
    assert stored.count("\n") == ATTEMPTS_KEPT - 1


def test_an_outcome_with_no_request_leaves_the_history_as_it_was(store: JobStore) -> None:
    claim = claimed(store)
    earlier = entry(503, Outcome.RETRYING)
    record(store, retry_now(claim), earlier)
    claim = claimed(store, claim.job_id)
    record(store, retry_now(claim, 0))  # handed back unsent: the rate limit held it

    job = store.get(claim.job_id)
    assert job is not None and job.attempt_log == [earlier]


def test_an_outcome_not_recorded_adds_nothing_to_the_history(store: JobStore) -> None:
    claim = claimed(store)
    stale = replace(claim, token="not-the-lease")

    assert store.apply([replace(retry_now(stale), tried=(entry(503, Outcome.RETRYING),))]) == [
        Recorded.LOST_LEASE
    ]
    job = store.get(claim.job_id)
    assert job is not None and job.attempt_log == []


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        '{"at": "yesterday", "latency_ms": 1, "outcome": "again"}',
        '{"at": 1, "latency_ms": 1, "outcome": "exploded"}',
        "[1, 2]",
        "\n\n",
        '{"at": 1, "latency_ms": 1, "outcome": "again", "kind": "a new kind"}',
    ],
)
def test_a_history_this_version_cannot_read_never_hides_the_record(
    store: JobStore, redis_client: redis.Redis, stored: str
) -> None:
    claim = claimed(store)
    good = entry(503, Outcome.RETRYING)
    redis_client.hset(job_key(claim.job_id), "attempt_log", f"{stored}\n{good.line()}")

    job = store.get(claim.job_id)
    assert job is not None and job.state is JobState.RUNNING
    assert job.attempt_log == [good]


def test_a_record_without_a_history_reads_as_an_empty_one(store: JobStore) -> None:
    job = store.get(store.create(SPEC, "interactive").job_id)
    assert job is not None and job.attempt_log == [] and job.public()["attempt_log"] == []
