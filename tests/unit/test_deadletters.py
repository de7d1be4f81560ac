"""Dead letters in a real (private) Redis: failed jobs made through the store's own claim
and fail API, then listed, replayed and purged."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import redis

import worker.store.deadletters
from ops.redis_server import RedisServer
from worker.contract import ErrorKind, JobError, JobSpec, JobState, TicketIds
from worker.queue.app import create_app
from worker.queue.dispatch import replay_failed
from worker.settings import Settings
from worker.store.deadletters import DeadLetters, Selection, Skipped
from worker.store.jobs import Claim, ClaimCode, JobStore, NotClaimed, Recorded, retrying
from worker.store.keys import (
    DUE_INDEX,
    FAILED_INDEX,
    QUEUES,
    batch_key,
    idempotency_entry,
    job_key,
    ref_entry,
)

REQUEUE_AFTER = 900.0


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, succeeded_ttl=3600, lease_seconds=60, requeue_after=REQUEUE_AFTER)


@pytest.fixture
def dead(store: JobStore) -> DeadLetters:
    return DeadLetters(store)


def spec(account_id: str = "acct-1", **extra: str) -> JobSpec:
    return JobSpec.model_validate({"account_id": account_id, "ticket": {"title": "t"}, **extra})


def claimed(store: JobStore, job_spec: JobSpec) -> Claim:
    claim = store.claim(store.create(job_spec, "interactive").job_id)
    assert isinstance(claim, Claim)
    return claim


def failed(
    store: JobStore, job_spec: JobSpec | None = None, kind: ErrorKind = ErrorKind.TERMINAL
) -> str:
    """A job that sent two requests, then failed with this kind of error."""
    job_spec = job_spec or spec()
    claim = claimed(store, job_spec)
    error = JobError(kind=kind, message=f"{kind} failure")
    assert store.fail(claim, job_spec, error, attempts=2) is Recorded.OK
    return claim.job_id


def failed_a_moment_later(store: JobStore, job_spec: JobSpec, kind: ErrorKind) -> str:
    """``failed``, after the millisecond of the last failure (the index orders by it)."""
    time.sleep(0.002)
    return failed(store, job_spec, kind)


def field(client: redis.Redis, job_id: str, name: str) -> str | None:
    return cast(str | None, client.hget(job_key(job_id), name))


def test_a_replayed_job_is_queued_afresh_in_the_outbox(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis
) -> None:
    job_id = failed(store)

    requeued = dead.requeue([job_id])

    assert [due.job_id for due in requeued.due] == [job_id] and requeued.skipped == []
    record = store.get(job_id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.QUEUED, 0)
    assert record.finished_at is None and record.next_attempt_at is None
    assert record.error is not None and record.error.kind is ErrorKind.TERMINAL  # until replaced
    assert record.uncertain_since is None
    assert field(redis_client, job_id, "replays") == "1"
    assert redis_client.zscore(FAILED_INDEX, job_id) is None
    due_at = redis_client.zscore(DUE_INDEX, job_id)
    assert due_at is not None and 0 < due_at - time.time() <= REQUEUE_AFTER
    claim = store.claim(job_id)
    assert isinstance(claim, Claim) and not claim.reconcile_first


def test_replay_sends_the_message_and_confirms_it(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    job_id = failed(store)
    app = create_app(Settings(redis_url=redis_server.url))

    report = replay_failed(app, dead, [job_id], bulk_batch=50)

    assert report.done == [job_id] and report.skipped == []
    assert redis_client.llen(QUEUES["interactive"]) == 1
    # sent: the scheduler looks at it again only if nobody claims it in time
    watch = redis_client.zscore(DUE_INDEX, job_id)
    assert watch is not None and watch > time.time() + REQUEUE_AFTER - 5


def test_replay_refuses_jobs_that_are_not_failed_or_have_a_ticket(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis
) -> None:
    job_spec = spec()
    done = claimed(store, job_spec)
    store.succeed(done, job_spec, TicketIds(id="t-1"))
    queued = store.create(spec(), "interactive").job_id
    # Not a state the store makes, but if it ever were: a replay must not send it again.
    with_ticket = failed(store)
    redis_client.hset(job_key(with_ticket), "ticket_id", "t-2")

    requeued = dead.requeue([done.job_id, queued, "0" * 32, with_ticket])

    assert requeued.due == []
    assert requeued.skipped == [
        Skipped(done.job_id, "not failed", "succeeded"),
        Skipped(queued, "not failed", "queued"),
        Skipped("0" * 32, "not found"),
        Skipped(with_ticket, "has a ticket", "t-2"),
    ]
    succeeded = store.get(done.job_id)
    assert succeeded is not None and succeeded.state is JobState.SUCCEEDED
    assert redis_client.zscore(FAILED_INDEX, with_ticket) is not None
    assert field(redis_client, with_ticket, "replays") is None


@pytest.mark.parametrize("kind", [ErrorKind.UNCERTAIN, ErrorKind.POISON])
def test_a_replay_whose_ticket_may_exist_reconciles_from_the_last_delivery(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis, kind: ErrorKind
) -> None:
    job_id = failed(store, kind=kind)
    started = field(redis_client, job_id, "claimed_at")
    assert started is not None

    dead.requeue([job_id])

    claim = store.claim(job_id)
    assert isinstance(claim, Claim)
    assert claim.reconcile_first and claim.uncertain_since == float(started)


def test_a_replay_sent_anyway_by_a_person_who_looked_is_no_longer_uncertain(
    store: JobStore, dead: DeadLetters
) -> None:
    job_id = failed(store, kind=ErrorKind.UNCERTAIN)

    dead.requeue([job_id], reconcile=False)

    claim = store.claim(job_id)
    assert isinstance(claim, Claim)
    assert not claim.reconcile_first and claim.uncertain_since is None


def test_a_job_the_claim_made_poison_is_replayed_to_reconcile(redis_client: redis.Redis) -> None:
    store = JobStore(
        redis_client,
        succeeded_ttl=3600,
        lease_seconds=0,
        requeue_after=REQUEUE_AFTER,
        max_lost_attempts=1,
    )
    claim = claimed(store, spec())
    time.sleep(0.01)
    # The lease ran out with a request in flight: the claim fails the job as poison.
    assert store.claim(claim.job_id) == NotClaimed(ClaimCode.FINAL, "failed")
    record = store.get(claim.job_id)
    assert record is not None and record.error is not None
    assert record.error.kind is ErrorKind.POISON

    DeadLetters(store).requeue([claim.job_id])

    again = store.claim(claim.job_id)
    assert isinstance(again, Claim) and again.reconcile_first
    assert again.uncertain_since is not None


def test_an_earlier_uncertain_moment_is_kept_whatever_the_last_error(
    store: JobStore, dead: DeadLetters
) -> None:
    job_spec = spec()
    claim = claimed(store, job_spec)
    ambiguous = JobError(kind=ErrorKind.AMBIGUOUS, message="read timeout")
    store.apply(
        [
            retrying(
                claim, job_spec, ambiguous, due_at=time.time(), attempts=1, uncertain_since=1000.0
            )
        ]
    )
    second = store.claim(claim.job_id)
    assert isinstance(second, Claim)
    store.fail(second, job_spec, JobError(kind=ErrorKind.TERMINAL, message="422"))

    dead.requeue([claim.job_id])

    third = store.claim(claim.job_id)
    assert isinstance(third, Claim)
    assert third.reconcile_first and third.uncertain_since == 1000.0


def test_purge_deletes_the_job_and_every_index_that_names_it(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis
) -> None:
    job_spec = spec(ref="r", idempotency_key="k", batch_id="b")
    job_id = failed(store, job_spec)

    report = dead.purge([job_id])

    assert report.done == [job_id] and report.skipped == []
    assert not redis_client.exists(job_key(job_id))
    assert redis_client.zscore(FAILED_INDEX, job_id) is None
    assert redis_client.hget(*ref_entry("acct-1", "r")[:2]) is None
    assert redis_client.hget(*idempotency_entry("acct-1", "k")[:2]) is None
    assert redis_client.zscore(batch_key("b"), job_id) is None
    assert store.create(job_spec, "interactive").is_new  # the key is free again


def test_purge_leaves_an_index_that_names_a_newer_job(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis
) -> None:
    old = failed(store, spec(ref="r", batch_id="b"))
    newer = store.create(spec(ref="r", batch_id="b"), "interactive").job_id

    dead.purge([old])

    assert redis_client.hget(*ref_entry("acct-1", "r")[:2]) == newer
    assert redis_client.zrange(batch_key("b"), 0, -1) == [newer]


def test_purge_refuses_jobs_that_are_not_failed(store: JobStore, dead: DeadLetters) -> None:
    queued = store.create(spec(ref="r"), "interactive").job_id

    report = dead.purge([queued, "0" * 32])

    assert report.done == []
    assert report.skipped == [
        Skipped(queued, "not failed", "queued"),
        Skipped("0" * 32, "not found"),
    ]
    assert store.find("acct-1", "r") is not None


def test_recent_lists_newest_first_and_filters_by_account_and_reason(
    store: JobStore, dead: DeadLetters, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker.store.deadletters, "PAGE", 2)  # filtering must walk several pages
    first, second, third, fourth = (
        failed_a_moment_later(store, spec(account), kind)
        for account, kind in [
            ("acct-1", ErrorKind.TERMINAL),
            ("acct-2", ErrorKind.TERMINAL),
            ("acct-2", ErrorKind.EXHAUSTED),
            ("acct-2", ErrorKind.EXHAUSTED),
        ]
    )

    def ids(selection: Selection, limit: int = 50) -> list[str]:
        return [record.job_id for record in dead.recent(selection, limit)]

    assert ids(Selection()) == [fourth, third, second, first]
    assert ids(Selection(), limit=2) == [fourth, third]
    assert ids(Selection(account_id="acct-1")) == [first]
    assert ids(Selection(reason=ErrorKind.TERMINAL)) == [second, first]
    assert ids(Selection(account_id="acct-2", reason=ErrorKind.TERMINAL)) == [second]
    assert ids(Selection(reason=ErrorKind.UNCERTAIN)) == []
    failed_at = store.get(second)
    assert failed_at is not None and failed_at.finished_at is not None
    assert dead.matching(Selection(failed_before=failed_at.finished_at)) == [second, first]


def test_the_reason_filter_reads_only_the_kind_as_replay_lua_does(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis
) -> None:
    """A record written by another version (here, an error without a message) is still
    found by its kind, as replay.lua would read it."""
    job_id = failed(store)
    redis_client.hset(job_key(job_id), "error", '{"kind": "terminal", "status": "422"}')

    assert dead.matching(Selection(reason=ErrorKind.TERMINAL)) == [job_id]


def failing_after(count: int, act: Any) -> Any:
    """``act`` for the first ``count`` calls, then Redis gone for every call after."""
    calls = 0

    def patched(job_id: str, **options: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > count:
            raise redis.ConnectionError("Connection refused")
        return act(job_id, **options)

    return patched


def test_a_replay_redis_stops_part_way_reports_what_it_requeued_and_the_failure(
    store: JobStore,
    dead: DeadLetters,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_ids = [failed(store) for _ in range(5)]
    monkeypatch.setattr(store, "replay", failing_after(3, store.replay))
    app = create_app(Settings(redis_url=redis_server.url))

    report = replay_failed(app, dead, job_ids, bulk_batch=100)

    assert report.done == job_ids[:3] and report.skipped == []
    assert isinstance(report.interrupted, redis.ConnectionError) and report.unsent is None
    assert [field(redis_client, job_id, "state") for job_id in job_ids] == [
        *["queued"] * 3,
        *["failed"] * 2,
    ]


def test_a_purge_redis_stops_part_way_reports_what_it_purged_and_the_failure(
    store: JobStore, dead: DeadLetters, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_ids = [failed(store) for _ in range(5)]
    monkeypatch.setattr(store, "purge", failing_after(2, store.purge))

    report = dead.purge(job_ids)

    assert report.done == job_ids[:2] and report.skipped == []
    assert isinstance(report.interrupted, redis.ConnectionError)
    assert [store.get(job_id) is None for job_id in job_ids] == [True, True, False, False, False]
