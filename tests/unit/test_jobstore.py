"""Job records in a real (private) Redis: creation, indexes, leases and atomic transitions."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, cast
from unittest.mock import ANY

import pytest
import redis
from pydantic import ValidationError

from worker.contract import (
    MAX_DEPTH,
    AttemptEntry,
    ErrorKind,
    JobError,
    JobSpec,
    JobState,
    Outcome,
    TicketIds,
)
from worker.store.jobs import (
    Claim,
    ClaimCode,
    Due,
    JobStore,
    NewJob,
    NotClaimed,
    Recorded,
    Stored,
    failed,
    retrying,
    spec_from_claim,
    succeeded,
)
from worker.store.keys import (
    COMPACT_FIELDS,
    COUNTS,
    DUE_INDEX,
    FAILED_INDEX,
    MINUTE_PREFIX,
    QUEUES,
    WAKE_TTL_MS,
    batch_key,
    freed_key,
    idempotency_entry,
    inflight_key,
    job_key,
    ref_entry,
    ticket_entry,
    wake_key,
)
from worker.validation import describe_validation_error

TTL = 3600


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60)


def spec(**extra: str) -> JobSpec:
    return JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t"}, **extra})


UNAVAILABLE_503 = JobError(kind=ErrorKind.RETRYABLE, message="unavailable", status=503)


def claimed(store: JobStore, job_spec: JobSpec) -> Claim:
    claim = store.claim(store.create(job_spec, "interactive").job_id)
    assert isinstance(claim, Claim)
    return claim


def test_a_new_job_is_queued_and_keeps_what_the_producer_gave(store: JobStore) -> None:
    created = store.create(spec(ref="r-1", batch_id="b-1"), "bulk")
    record = store.get(created.job_id)

    assert created.is_new and record is not None
    assert (record.state, record.attempts, record.lane) == (JobState.QUEUED, 0, "bulk")
    assert (record.account_id, record.ref, record.batch_id) == ("acct-1", "r-1", "b-1")
    assert record.ticket is None and record.error is None


def test_an_idempotency_key_names_one_job_per_account(store: JobStore) -> None:
    first = store.create(spec(idempotency_key="k"), "interactive")
    again = store.create(spec(idempotency_key="k"), "interactive")
    other_account = store.create(
        JobSpec.model_validate({"account_id": "acct-2", "ticket": {}, "idempotency_key": "k"}),
        "interactive",
    )

    assert (again.job_id, again.is_new) == (first.job_id, False)
    assert other_account.is_new and other_account.job_id != first.job_id


def test_find_by_ref_returns_the_latest_job_with_that_ref(store: JobStore) -> None:
    store.create(spec(ref="r"), "interactive")
    latest = store.create(spec(ref="r"), "interactive")

    found = store.find("acct-1", "r")
    assert found is not None and found.job_id == latest.job_id
    assert store.find("acct-1", "other") is None


def test_a_job_serialized_beforehand_is_stored_as_its_spec_would_be(store: JobStore) -> None:
    job_spec = spec(ref="r-1", idempotency_key="k-1", batch_id="b-1")

    (created,) = store.create_many([NewJob.of(job_spec)], "bulk", positions=[7])

    claim = store.claim(created.job_id)
    assert isinstance(claim, Claim) and spec_from_claim(claim) == job_spec
    assert store.create(job_spec, "bulk") == Stored(created.job_id, is_new=False)
    found = store.find("acct-1", "r-1")
    assert found is not None and found.job_id == created.job_id


def test_refs_with_separators_cannot_collide() -> None:
    assert ref_entry("a:b", "c").field != ref_entry("a", "b:c").field


def test_job_key_names_stay_those_running_deployments_use() -> None:
    """The index entries' old keys are those the versions before the buckets wrote: they
    are still read, so a job indexed by an older version is found."""
    assert [
        job_key("j"),
        ref_entry("a/1", "r:1").old_key,
        idempotency_entry("a", "k").old_key,
        batch_key("b"),
        ticket_entry("a", "t").old_key,
        inflight_key("a"),
        wake_key("a"),
        DUE_INDEX,
        FAILED_INDEX,
    ] == [
        "ticketq:job:j",
        "ticketq:ref:a%2F1:r%3A1",
        "ticketq:idem:a:k",
        "ticketq:batch:b",
        "ticketq:ticket:a:t",
        "ticketq:inflight:a",
        "ticketq:wake:a",
        "ticketq:due",
        "ticketq:failed",
    ]


def test_index_bucket_names_stay_those_running_deployments_use() -> None:
    """A bucket is chosen by a checksum of its field: another choice would lose every
    entry written before."""
    assert [ref_entry("a/1", "r:1"), idempotency_entry("a", "k"), ticket_entry("a", "t")] == [
        ("ticketq:refs:5087", "a%2F1:r%3A1", "ticketq:ref:a%2F1:r%3A1"),
        ("ticketq:idems:1eac", "a:k", "ticketq:idem:a:k"),
        ("ticketq:tickets:1359", "a:t", "ticketq:ticket:a:t"),
    ]


def test_a_batch_that_fails_part_way_takes_back_every_job_it_stored(
    store: JobStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = store.create(spec(ref="r", idempotency_key="k"), "interactive")
    redis_client.hset(idempotency_entry("acct-1", "bad").old_key, "not", "a string")
    monkeypatch.setattr("worker.store.jobs.CREATE_CHUNK", 3)
    batch = [
        spec(ref="r", batch_id="b"),
        spec(ref="r", idempotency_key="k", batch_id="b"),  # names the older job
        spec(ref="r", batch_id="b"),
        spec(idempotency_key="bad", batch_id="b"),  # Redis refuses the second call
    ]

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.create_many(batch, "bulk")

    assert set(redis_client.scan_iter("ticketq:job:*")) == {job_key(older.job_id)}
    assert redis_client.zrange(DUE_INDEX, 0, -1) == [older.job_id]
    assert redis_client.exists(batch_key("b")) == 0
    assert redis_client.hget(*ref_entry("acct-1", "r")[:2]) == older.job_id
    assert redis_client.hget(*idempotency_entry("acct-1", "k")[:2]) == older.job_id


def test_the_worker_reads_back_a_body_nested_as_deep_as_the_door_allows(
    store: JobStore,
) -> None:
    value: Any = "leaf"
    for _ in range(MAX_DEPTH - 2):  # the body and priority are two of the levels
        value = [value]
    job_spec = JobSpec.model_validate(
        {"account_id": "acct-1", "ticket": {"priority": {"source_value": value}}}
    )

    assert spec_from_claim(claimed(store, job_spec)) == job_spec


def test_a_stored_spec_nested_past_any_limit_fails_validation_naming_the_field(
    store: JobStore,
) -> None:
    deep = '{"account_id": "a", "ticket": {"unified_custom_fields": {"x": ' + "[" * 100_000
    claim = replace(claimed(store, spec()), spec_json=deep)  # as another version stored it

    with pytest.raises(ValidationError) as caught:
        spec_from_claim(claim)

    message = describe_validation_error(caught.value)
    assert message.startswith("ticket.unified_custom_fields.x.0.0.")
    assert message.endswith(f": nested deeper than {MAX_DEPTH} levels")


def test_a_claim_runs_the_job_under_a_lease_and_returns_its_spec(store: JobStore) -> None:
    job_spec = spec(ref="r")
    claim = claimed(store, job_spec)

    assert spec_from_claim(claim) == job_spec
    record = store.get(claim.job_id)
    assert record is not None and record.state == JobState.RUNNING


def test_a_second_delivery_is_refused_while_the_lease_holds(store: JobStore) -> None:
    claim = claimed(store, spec())

    refused = store.claim(claim.job_id)

    assert isinstance(refused, NotClaimed) and refused.code is ClaimCode.LEASED


def test_an_expired_lease_can_be_claimed_again_and_the_old_holder_loses(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=0)
    old = claimed(store, spec())
    time.sleep(0.01)

    new = store.claim(old.job_id)

    assert isinstance(new, Claim) and new.token != old.token
    assert store.succeed(old, spec(), TicketIds(id="t-old")) is Recorded.LOST_LEASE
    assert store.succeed(new, spec(), TicketIds(id="t-new", remote_id="R-1")) is Recorded.OK
    record = store.get(old.job_id)
    assert record is not None and record.ticket == TicketIds(id="t-new", remote_id="R-1")


def test_a_finished_job_is_never_claimed_again(store: JobStore) -> None:
    job_spec = spec()
    claim = claimed(store, job_spec)
    store.succeed(claim, job_spec, TicketIds(id="t-1", remote_id="R-1"))

    assert store.claim(claim.job_id) == NotClaimed(ClaimCode.FINAL, "succeeded")
    error = JobError(kind=ErrorKind.TERMINAL, message="x")
    assert store.fail(claim, job_spec, error) is Recorded.SUCCEEDED


def test_an_outcome_adds_the_requests_its_delivery_made_and_frees_the_account_slot(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_spec = spec()
    claim = claimed(store, job_spec)
    redis_client.zadd(inflight_key("acct-1"), {claim.token: time.time() * 1000 + 60_000})
    error = JobError(kind=ErrorKind.RETRYABLE, message="503", status=503)

    store.retry_later(claim, job_spec, error, due_at=time.time(), attempts=3)

    record = store.get(claim.job_id)
    assert record is not None and record.attempts == 3
    assert redis_client.zcard(inflight_key("acct-1")) == 0


def test_an_outcome_that_frees_an_account_slot_counts_it_and_wakes_one_waiting_delivery(
    redis_client: redis.Redis,
) -> None:
    """The first slot counted signals one waiter, which takes them all (slots.lua); never
    more counted than slots free: one another delivery took without waiting wakes nobody."""
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60, account_cap=2)
    first, second = (claimed(store, spec()) for _ in range(2))
    lease_end = time.time() * 1000 + 60_000
    redis_client.zadd(inflight_key("acct-1"), {first.token: lease_end, second.token: lease_end})
    error = JobError(kind=ErrorKind.RETRYABLE, message="503", status=503)

    store.retry_later(first, spec(), error, due_at=time.time(), attempts=1)
    one = (redis_client.get(freed_key("acct-1")), redis_client.llen(wake_key("acct-1")))
    redis_client.zadd(inflight_key("acct-1"), {"took-it-without-waiting": lease_end})
    store.retry_later(second, spec(), error, due_at=time.time(), attempts=1)

    assert one == ("1", 1)
    assert redis_client.get(freed_key("acct-1")) == "1"  # one slot free now
    assert redis_client.llen(wake_key("acct-1")) == 1  # one waiter woken, not two
    assert 0 < redis_client.pttl(freed_key("acct-1")) <= WAKE_TTL_MS
    assert 0 < redis_client.pttl(wake_key("acct-1")) <= WAKE_TTL_MS


def test_an_outcome_that_frees_no_slot_wakes_nobody(
    redis_client: redis.Redis,
) -> None:
    """Not in flight (a handback before sending, a second outcome), or no cap at all."""
    capped = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60, account_cap=2)
    uncapped = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60)
    never_sent, uncapped_job = claimed(capped, spec()), claimed(uncapped, spec())
    redis_client.zadd(inflight_key("acct-1"), {uncapped_job.token: time.time() * 1000 + 60_000})
    error = JobError(kind=ErrorKind.RETRYABLE, message="503", status=503)

    capped.retry_later(never_sent, spec(), error, due_at=time.time(), attempts=0)
    uncapped.retry_later(uncapped_job, spec(), error, due_at=time.time(), attempts=1)

    assert redis_client.zcard(inflight_key("acct-1")) == 0
    assert redis_client.exists(wake_key("acct-1"), freed_key("acct-1")) == 0


def test_success_keeps_the_record_for_the_retention_period_and_its_indexes_as_long(
    store: JobStore, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Index entries share buckets, which never expire: each entry lives until the sweep
    finds its job gone, and names no job meanwhile (its ticket's owner stays, so that no
    other job adopts the ticket before the sweep)."""
    monkeypatch.setattr("worker.store.keys.INDEX_BUCKETS", 2)
    monkeypatch.setattr("worker.store.jobs.INDEX_BUCKETS", 2)
    job_spec = spec(ref="r", idempotency_key="k")
    claim = claimed(store, job_spec)
    assert store.succeed(claim, job_spec, TicketIds(id="t-1", remote_id="R-1")) is Recorded.OK
    # The fleet's numbers are no job's: the counters stay, a minute's hash has its own TTL.
    fleet = {COUNTS, *redis_client.keys(f"{MINUTE_PREFIX}*")}
    buckets = {entry.bucket for entry in (ref_entry("acct-1", "r"), ticket_entry("acct-1", "t-1"))}
    buckets.add(idempotency_entry("acct-1", "k").bucket)
    assert set(redis_client.keys("ticketq:*")) - fleet == {job_key(claim.job_id), *buckets}
    assert 0 < redis_client.ttl(job_key(claim.job_id)) <= TTL
    assert store.sweep_indexes(6) == 0
    found = store.find("acct-1", "r")
    assert found is not None and found.job_id == claim.job_id
    assert store.owners_of("acct-1", ["t-1"]) == [claim.job_id]

    redis_client.delete(job_key(claim.job_id))  # as when its retention is over

    assert store.find("acct-1", "r") is None
    assert store.create(job_spec, "interactive").is_new  # its idempotency key is free
    assert store.sweep_indexes(6) == 1  # the ticket's owner; the ref and key name the new job
    assert store.owners_of("acct-1", ["t-1"]) == [None]


def test_a_succeeded_record_keeps_only_what_correlation_needs_in_compact_form(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """ids, ref, batch, account, state, attempts, times: every value short enough that Redis
    keeps the hash in its compact encoding for the retention period."""
    job_spec = spec(ref="r", idempotency_key="k", batch_id="b")
    claim = claimed(store, job_spec)
    retry_now = retrying(claim, job_spec, UNAVAILABLE_503, due_at=time.time() - 1, attempts=1)
    tried = AttemptEntry(at=time.time(), status=503, latency_ms=9.5, outcome=Outcome.RETRYING)
    assert store.apply([replace(retry_now, tried=(tried,))]) == [Recorded.OK]
    again = store.claim(claim.job_id)
    assert isinstance(again, Claim)

    assert store.succeed(again, job_spec, TicketIds(id="t-1", remote_id="R-1")) is Recorded.OK

    stored = cast(dict[str, str], redis_client.hgetall(job_key(claim.job_id)))
    assert set(stored) == {
        "state",
        *COMPACT_FIELDS.values(),  # account_id, ref, idempotency_key, batch_id, created_at
        "attempts",
        "ticket_id",
        "remote_id",
        "finished_at",
    }
    assert redis_client.object("encoding", job_key(claim.job_id)) in ("ziplist", "listpack")
    record = store.get(claim.job_id)
    assert record is not None and record.attempts == 2 and record.lane == "interactive"
    assert record.updated_at == record.finished_at


def test_retrying_records_the_error_and_when_the_next_attempt_is_due(store: JobStore) -> None:
    job_spec = spec()
    claim = claimed(store, job_spec)
    error = JobError(kind=ErrorKind.RETRYABLE, message="503", status=503)

    assert store.retry_later(claim, job_spec, error, due_at=time.time() + 30) is Recorded.OK

    record = store.get(claim.job_id)
    assert record is not None and record.state == JobState.RETRYING
    assert record.error == error
    assert record.next_attempt_at is not None
    assert 25 < record.next_attempt_at - time.time() <= 30
    assert store.claim(claim.job_id) == NotClaimed(ClaimCode.NOT_DUE, ANY)


def test_a_failed_job_is_listed_and_kept_without_expiry(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_spec = spec(ref="r")
    claim = claimed(store, job_spec)
    error = JobError(
        kind=ErrorKind.TERMINAL,
        message="Summary is required",
        status=422,
        provider_errors=[{"status": 400}],
    )

    assert store.fail(claim, job_spec, error) is Recorded.OK

    assert store.failed_ids() == [claim.job_id]
    assert redis_client.ttl(job_key(claim.job_id)) == -1
    assert redis_client.zscore(FAILED_INDEX, claim.job_id) is not None
    record = store.get(claim.job_id)
    assert record is not None and record.error == error


def test_a_sent_job_stays_watched_until_a_delivery_claims_it(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60, requeue_after=600)
    job_id = store.create(spec(), "bulk").job_id
    assert redis_client.zscore(DUE_INDEX, job_id) is not None

    store.confirm_sent([job_id])

    watch = redis_client.zscore(DUE_INDEX, job_id)
    assert watch is not None and watch > time.time() + 590


def test_a_queued_job_is_sent_again_only_once_its_lane_has_drained(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60, requeue_after=600)
    job_id = store.create(spec(), "bulk").job_id
    redis_client.zadd(DUE_INDEX, {job_id: 0})
    redis_client.rpush(QUEUES["bulk"], "another job's message")

    assert store.take_due() == []  # its message is most likely still in the queue
    redis_client.delete(QUEUES["bulk"])
    redis_client.zadd(DUE_INDEX, {job_id: 0})

    assert store.take_due() == [Due(job_id, "bulk")]


def test_confirming_a_send_keeps_the_lease_of_a_job_already_claimed(
    store: JobStore, redis_client: redis.Redis
) -> None:
    claim = claimed(store, spec())

    store.confirm_sent([claim.job_id])

    assert redis_client.zscore(DUE_INDEX, claim.job_id) is not None


def test_due_jobs_are_handed_out_once_and_retries_become_queued(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60, requeue_after=600)
    job_spec = spec()
    claim = claimed(store, job_spec)
    error = JobError(kind=ErrorKind.RETRYABLE, message="503", status=503)
    store.retry_later(claim, job_spec, error, due_at=time.time())
    never_sent = store.create(spec(), "bulk").job_id
    redis_client.zadd(DUE_INDEX, {never_sent: 0})

    first, again = store.take_due(), store.take_due()

    assert sorted(first, key=lambda d: d.lane) == [
        Due(never_sent, "bulk"),
        Due(claim.job_id, "interactive"),
    ]
    assert again == []
    record = store.get(claim.job_id)
    assert record is not None and record.state == JobState.QUEUED
    assert isinstance(store.claim(claim.job_id), Claim)


def test_a_running_job_becomes_due_when_its_lease_runs_out(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=0)
    claim = claimed(store, spec())
    time.sleep(0.01)

    assert store.take_due() == [Due(claim.job_id, "interactive")]


def test_finished_jobs_leave_the_due_index(store: JobStore, redis_client: redis.Redis) -> None:
    job_spec = spec()
    claim = claimed(store, job_spec)

    store.succeed(claim, job_spec, TicketIds(id="t-1"))

    assert redis_client.zcard(DUE_INDEX) == 0


def test_a_lease_taken_over_cannot_be_renewed_and_the_others_are(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=0)
    old = claimed(store, spec())
    time.sleep(0.01)
    assert isinstance(store.claim(old.job_id), Claim)
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60)
    kept = claimed(store, spec())

    assert store.renew([old, kept]) == {old.job_id}
    assert store.renew([kept]) == set()
    assert store.renew([]) == set()


def test_a_taken_over_job_is_uncertain_since_the_lost_delivery_claimed_it(
    redis_client: redis.Redis,
) -> None:
    store = JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=0)
    old = claimed(store, spec())
    time.sleep(0.01)

    new = store.claim(old.job_id)

    assert isinstance(new, Claim) and new.uncertain_since is not None
    assert new.uncertain_since == pytest.approx(time.time(), abs=5)


@pytest.mark.parametrize("keep_body", [False, True])
def test_a_succeeded_job_drops_its_body_unless_told_to_keep_it_and_a_failed_one_keeps_it(
    redis_client: redis.Redis, keep_body: bool
) -> None:
    """Most of a succeeded record's bytes were the body, kept for 30 days though the ticket
    exists; a failed job needs it to be replayed."""
    store = JobStore(redis_client, succeeded_ttl=60, lease_seconds=30, keep_body=keep_body)
    made = store.claim(store.create(spec(ref="r-1", batch_id="b-1"), "bulk").job_id)
    lost = store.claim(store.create(spec(), "bulk").job_id)
    assert isinstance(made, Claim) and isinstance(lost, Claim)
    error = JobError(kind=ErrorKind.TERMINAL, message="no")

    assert store.apply(
        [
            succeeded(made, spec_from_claim(made), TicketIds(id="t-1", remote_id="R-1"), 1),
            failed(lost, spec_from_claim(lost), error, 1),
        ]
    ) == [Recorded.OK, Recorded.OK]

    assert redis_client.hexists(job_key(made.job_id), "0") is keep_body  # its body's first part
    assert redis_client.hexists(job_key(lost.job_id), "0")
    record = store.get(made.job_id)
    assert record is not None and record.ticket == TicketIds(id="t-1", remote_id="R-1")
    assert (record.ref, record.batch_id, record.attempts) == ("r-1", "b-1", 1)


def test_a_succeeded_record_is_rewritten_compact_and_keeps_its_retention(
    redis_client: redis.Redis,
) -> None:
    """Redis keeps a hash compact only while it never held a long value: an error (or a
    body kept whole, by another version) had made the record a hashtable, which dropping
    it alone did not undo."""
    store = JobStore(redis_client, succeeded_ttl=600, lease_seconds=30)
    long_title = JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t" * 300}})
    first = store.claim(store.create(long_title, "interactive").job_id)
    assert isinstance(first, Claim)
    long_error = JobError(kind=ErrorKind.RETRYABLE, message="unavailable " * 20, status=503)
    store.apply([retrying(first, long_title, long_error, due_at=time.time() - 1, attempts=1)])
    claim = store.claim(first.job_id)
    assert isinstance(claim, Claim)
    assert redis_client.object("encoding", job_key(claim.job_id)) == "hashtable"

    store.apply([succeeded(claim, long_title, TicketIds(id="t-1", remote_id="R-1"), 1)])

    compact = ("listpack", "ziplist")  # its name since Redis 7, and before
    assert redis_client.object("encoding", job_key(claim.job_id)) in compact
    assert 0 < redis_client.ttl(job_key(claim.job_id)) <= 600
    record = store.get(claim.job_id)
    assert record is not None and record.state is JobState.SUCCEEDED
    assert record.ticket == TicketIds(id="t-1", remote_id="R-1") and record.finished_at


@pytest.mark.parametrize("keep_body", [False, True])
def test_a_queued_body_is_stored_in_parts_that_keep_the_record_compact_and_read_whole(
    redis_client: redis.Redis, keep_body: bool
) -> None:
    """Each part ("0", "1", ...) at most 64 bytes (hash-max-listpack-value), never cut
    inside a character; a body kept after success is kept whole."""
    store = JobStore(redis_client, succeeded_ttl=600, lease_seconds=30, keep_body=keep_body)
    job_spec = JobSpec.model_validate(
        {"account_id": "acct-1", "ticket": {"title": "é€😀" * 60, "content": [{"plain": "x"}]}}
    )
    job_id = store.create(job_spec, "interactive").job_id
    stored = cast(dict[str, str], redis_client.hgetall(job_key(job_id)))
    parts = {name for name in stored if name.isdigit()}
    assert len(parts) > 5 and all(len(stored[name].encode()) <= 64 for name in parts)
    assert redis_client.object("encoding", job_key(job_id)) in ("listpack", "ziplist")
    claim = store.claim(job_id)
    assert isinstance(claim, Claim) and spec_from_claim(claim) == job_spec

    store.succeed(claim, job_spec, TicketIds(id="t-1"))

    kept = cast(dict[str, str], redis_client.hgetall(job_key(job_id)))
    assert ({name for name in kept if name.isdigit()} == parts) is keep_body
    assert ("0" in kept) is keep_body


def test_indexes_an_earlier_version_kept_as_keys_are_read_and_move_into_buckets(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """Upgrading keeps every job findable: a job indexed by a version before the buckets
    (its ref and idempotency key as keys of their own) is found, is not made twice, and its
    keys move into the buckets when it moves."""
    job_spec = spec(ref="r", idempotency_key="k")
    claim = claimed(store, job_spec)
    by_ref, by_key = ref_entry("acct-1", "r"), idempotency_entry("acct-1", "k")
    for entry in (by_ref, by_key):  # as the earlier version wrote them
        redis_client.hdel(entry.bucket, entry.field)
        redis_client.set(entry.old_key, claim.job_id)
    found = store.find("acct-1", "r")
    assert found is not None and found.job_id == claim.job_id
    assert store.create(job_spec, "interactive") == Stored(claim.job_id, is_new=False)

    assert store.succeed(claim, job_spec, TicketIds(id="t-1")) is Recorded.OK

    for entry in (by_ref, by_key):
        assert redis_client.exists(entry.old_key) == 0
        assert redis_client.hget(entry.bucket, entry.field) == claim.job_id
