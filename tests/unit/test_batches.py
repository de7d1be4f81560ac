"""Batches in a real (private) Redis: their members in input order, their record and index,
how long they live, each row's outcome, and cancelling jobs nobody is attempting."""

from __future__ import annotations

import json
import time

import pytest
import redis

from worker.contract import ErrorKind, JobError, JobSpec, JobState, TicketIds
from worker.store.batches import Batches, BatchInfo, JobRow
from worker.store.jobs import (
    CancelCode,
    Cancelled,
    Claim,
    ClaimCode,
    JobStore,
    NotClaimed,
    Recorded,
    retrying,
)
from worker.store.keys import (
    BATCH_INDEX,
    DUE_INDEX,
    batch_info_key,
    batch_key,
    idempotency_entry,
    job_key,
    ref_entry,
)

TTL = 3600


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, succeeded_ttl=TTL, lease_seconds=60)


@pytest.fixture
def batches(store: JobStore) -> Batches:
    return Batches(store)


def spec(batch_id: str | None = "b", account_id: str = "acct-1", **extra: str) -> JobSpec:
    fields = {"account_id": account_id, "ticket": {"title": "t"}, **extra}
    if batch_id is not None:
        fields["batch_id"] = batch_id
    return JobSpec.model_validate(fields)


def claimed(store: JobStore, job_id: str) -> Claim:
    claim = store.claim(job_id)
    assert isinstance(claim, Claim)
    return claim


def succeeded(store: JobStore, job_id: str, job_spec: JobSpec, ticket: str = "t-1") -> None:
    claim = claimed(store, job_id)
    assert store.succeed(claim, job_spec, TicketIds(id=ticket, remote_id=f"R-{ticket}")) is (
        Recorded.OK
    )


def failed(store: JobStore, job_id: str, job_spec: JobSpec, message: str = "no") -> None:
    error = JobError(kind=ErrorKind.TERMINAL, message=message, status=422)
    assert store.fail(claimed(store, job_id), job_spec, error, attempts=2) is Recorded.OK


def retried(store: JobStore, job_id: str, job_spec: JobSpec) -> None:
    error = JobError(kind=ErrorKind.RETRYABLE, message="503", status=503)
    claim = claimed(store, job_id)
    due = time.time() + 60
    assert store.retry_later(claim, job_spec, error, due_at=due) is Recorded.OK


# Members in input order


def test_create_many_puts_the_members_in_the_order_of_their_input_rows(
    store: JobStore, batches: Batches
) -> None:
    stored = store.create_many([spec(), spec(), spec()], "bulk", positions=[7, 3, 5])

    assert list(batches.pages("b")) == [
        [(3, stored[1].job_id), (5, stored[2].job_id), (7, stored[0].job_id)]
    ]


def test_without_positions_each_job_is_at_its_index(store: JobStore, batches: Batches) -> None:
    stored = store.create_many([spec(), spec()], "bulk")

    assert batches.job_ids("b") == [s.job_id for s in stored]
    assert [position for position, _ in next(batches.pages("b"))] == [0, 1]


def test_a_batch_is_read_a_page_at_a_time_in_order(
    store: JobStore, batches: Batches, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.store.batches.PAGE", 2)
    stored = store.create_many([spec() for _ in range(5)], "bulk")

    pages = list(batches.pages("b"))

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [job_id for page in pages for _, job_id in page] == [s.job_id for s in stored]


def test_a_row_whose_idempotency_key_is_known_joins_the_new_batch_at_its_row(
    store: JobStore, batches: Batches
) -> None:
    known = store.create(spec(batch_id="old", idempotency_key="k"), "bulk")

    stored = store.create_many(
        [spec(batch_id="new"), spec(batch_id="new", idempotency_key="k")], "bulk", [1, 2]
    )

    assert (stored[1].job_id, stored[1].is_new) == (known.job_id, False)
    assert list(batches.pages("new")) == [[(1, stored[0].job_id), (2, known.job_id)]]
    assert batches.job_ids("old") == [known.job_id]  # it stays in its own batch too


def test_a_key_given_twice_in_one_batch_keeps_the_job_at_the_row_that_made_it(
    store: JobStore, batches: Batches
) -> None:
    first = store.create_many([spec(idempotency_key="k"), spec()], "bulk", [1, 2])
    again = store.create_many([spec(idempotency_key="k")], "bulk", [3])  # a later page

    assert again[0].job_id == first[0].job_id and not again[0].is_new
    assert list(batches.pages("b")) == [[(1, first[0].job_id), (2, first[1].job_id)]]


def test_a_failed_create_many_takes_its_known_rows_out_of_the_batch_too(
    store: JobStore, batches: Batches, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = store.create(spec(batch_id="old", idempotency_key="k"), "bulk")
    redis_client.hset(idempotency_entry("acct-1", "bad").old_key, "not", "a string")
    monkeypatch.setattr("worker.store.jobs.CREATE_CHUNK", 1)  # Redis refuses the second call

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.create_many(
            [
                spec(batch_id="new", idempotency_key="k"),
                spec(batch_id="new", idempotency_key="bad"),
            ],
            "bulk",
        )

    assert batches.job_ids("new") == []
    assert batches.job_ids("old") == [known.job_id]
    assert store.get(known.job_id) is not None


def test_a_failed_page_of_a_batch_leaves_the_rows_earlier_pages_stored(
    store: JobStore, batches: Batches, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import stores a batch page by page; a page that fails is taken back, and only it:
    a row of it whose key names a job an earlier page made is not that job's row."""
    earlier = store.create_many([spec(idempotency_key="k")], "bulk", [1])
    redis_client.hset(idempotency_entry("acct-1", "bad").old_key, "not", "a string")
    monkeypatch.setattr("worker.store.jobs.CREATE_CHUNK", 1)  # Redis refuses the second call

    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.create_many([spec(idempotency_key="k"), spec(idempotency_key="bad")], "bulk", [2, 3])

    assert list(batches.pages("b")) == [[(1, earlier[0].job_id)]]


# The record and the index


def test_a_batch_opened_and_counted_is_read_back(batches: Batches) -> None:
    batches.open("b", at=1000.5, account_id="acct-1", source="tickets.csv")
    batches.count("b", rows=10, accepted=7)
    batches.count("b", already_known=2, rejected=1, accepted=0)

    assert batches.info("b") == BatchInfo(
        batch_id="b",
        opened_at=1000.5,
        account_id="acct-1",
        source="tickets.csv",
        rows=10,
        accepted=7,
        already_known=2,
        rejected=1,
    )
    assert batches.info("never") is None


def test_a_batch_of_several_accounts_and_no_file_says_neither(batches: Batches) -> None:
    batches.open("b", at=1.0, account_id=None, source=None)

    info = batches.info("b")

    assert info is not None and (info.account_id, info.source, info.rows) == (None, None, 0)


def test_counting_a_name_that_is_not_a_count_is_refused(batches: Batches) -> None:
    with pytest.raises(ValueError, match="no such batch count"):
        batches.count("b", rowz=1)


def test_recent_lists_the_newest_batches_first_and_of_one_account_if_asked(
    batches: Batches,
) -> None:
    for n, account in enumerate(["a", "b", "a", "a"]):
        batches.open(f"batch-{n}", at=1000.0 + n, account_id=account, source=None)

    assert [i.batch_id for i in batches.recent()] == ["batch-3", "batch-2", "batch-1", "batch-0"]
    assert [i.batch_id for i in batches.recent(limit=2)] == ["batch-3", "batch-2"]
    assert [i.batch_id for i in batches.recent(account_id="a", limit=2)] == [
        "batch-3",
        "batch-2",
    ]
    assert [i.batch_id for i in batches.recent(account_id="b")] == ["batch-1"]


def test_a_batch_that_expired_is_forgotten_by_the_index(
    batches: Batches, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("worker.store.batches.PAGE", 2)
    for n in range(5):
        batches.open(f"batch-{n}", at=1000.0 + n, account_id="a", source=None)
    redis_client.delete(batch_info_key("batch-4"), batch_info_key("batch-3"))

    assert [i.batch_id for i in batches.recent(limit=2)] == ["batch-2", "batch-1"]
    assert redis_client.zrevrange(BATCH_INDEX, 0, -1) == ["batch-2", "batch-1", "batch-0"]


# Progress and rows


def test_progress_counts_the_jobs_in_each_state_and_when_the_last_finished(
    store: JobStore, batches: Batches, redis_client: redis.Redis
) -> None:
    job_spec = spec()
    ids = [s.job_id for s in store.create_many([job_spec] * 6, "bulk")]
    succeeded(store, ids[0], job_spec)
    failed(store, ids[1], job_spec)
    retried(store, ids[2], job_spec)
    claimed(store, ids[3])
    redis_client.delete(job_key(ids[4]))

    progress = batches.progress("b")

    assert progress.counts == {
        "succeeded": 1,
        "failed": 1,
        "retrying": 1,
        "running": 1,
        "missing": 1,
        "queued": 1,
    }
    assert (progress.total, progress.final, progress.done) == (6, 3, False)
    finished = [store.get(job_id) for job_id in ids[:2]]
    assert progress.last_finished_at == max(r.finished_at for r in finished if r and r.finished_at)


def test_a_batch_is_done_once_every_job_is_final_or_gone(store: JobStore, batches: Batches) -> None:
    job_spec = spec()
    ids = [s.job_id for s in store.create_many([job_spec] * 2, "bulk")]
    succeeded(store, ids[0], job_spec)
    store.cancel_many([ids[1]])

    progress = batches.progress("b")

    assert progress.done and progress.counts == {"succeeded": 1, "cancelled": 1}


def test_rows_give_each_rows_outcome_and_read_an_error_they_cannot_decode_as_its_message(
    store: JobStore, batches: Batches, redis_client: redis.Redis
) -> None:
    job_spec = spec(ref="r-0")
    ids = [s.job_id for s in store.create_many([job_spec, spec(), spec(), spec()], "bulk")]
    succeeded(store, ids[0], job_spec, ticket="t-9")
    failed(store, ids[1], spec(), message="Project is archived")
    redis_client.hset(job_key(ids[2]), "error", "not json {")
    redis_client.delete(job_key(ids[3]))

    rows = batches.rows(next(batches.pages("b")))

    assert rows == [
        JobRow(0, ids[0], "r-0", "succeeded", "t-9", "R-t-9", None, None, 1),
        JobRow(1, ids[1], None, "failed", None, None, "terminal", "Project is archived", 2),
        JobRow(2, ids[2], None, "queued", None, None, None, "not json {", 0),
        JobRow(3, ids[3], None, "missing", None, None, None, None, 0),
    ]


def test_an_error_that_is_json_but_not_an_object_is_its_message(
    store: JobStore, batches: Batches, redis_client: redis.Redis
) -> None:
    (stored,) = store.create_many([spec()], "bulk")
    redis_client.hset(job_key(stored.job_id), "error", json.dumps(["a", "list"]))

    (row,) = batches.rows(next(batches.pages("b")))

    assert (row.error_kind, row.error_message) == (None, '["a", "list"]')


# How long a batch lives


def test_a_batch_lives_as_long_as_its_jobs_from_its_creation(
    store: JobStore, batches: Batches, redis_client: redis.Redis
) -> None:
    batches.open("b", at=time.time(), account_id="acct-1", source=None)
    store.create_many([spec()], "bulk")

    for key in (batch_key("b"), batch_info_key("b")):
        assert TTL - 5 < redis_client.ttl(key) <= TTL, key


def test_a_move_of_any_job_keeps_its_batch_alive(
    store: JobStore, batches: Batches, redis_client: redis.Redis
) -> None:
    batches.open("b", at=time.time(), account_id="acct-1", source=None)
    job_spec = spec()
    (stored,) = store.create_many([job_spec], "bulk")
    for key in (batch_key("b"), batch_info_key("b")):
        redis_client.expire(key, 10)

    retried(store, stored.job_id, job_spec)

    for key in (batch_key("b"), batch_info_key("b")):
        assert TTL - 5 < redis_client.ttl(key) <= TTL, key


def test_a_batch_is_kept_for_good_when_jobs_are(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, succeeded_ttl=0, lease_seconds=60)
    Batches(store).open("b", at=time.time(), account_id="acct-1", source=None)
    store.create_many([spec()], "bulk")

    assert redis_client.ttl(batch_key("b")) == -1
    assert redis_client.ttl(batch_info_key("b")) == -1


# Cancelling


def test_cancel_ends_jobs_nobody_is_attempting_and_says_why_it_left_the_others(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_spec = spec()
    queued, waiting, running, done = (s.job_id for s in store.create_many([job_spec] * 4, "bulk"))
    retried(store, waiting, job_spec)
    claimed(store, running)
    succeeded(store, done, job_spec)

    answers = store.cancel_many([queued, waiting, running, done, "nope"])

    assert answers == [
        Cancelled(queued, CancelCode.OK),
        Cancelled(waiting, CancelCode.OK),
        Cancelled(running, CancelCode.IN_FLIGHT),
        Cancelled(done, CancelCode.FINAL, "succeeded"),
        Cancelled("nope", CancelCode.MISSING),
    ]
    for job_id in (queued, waiting):
        record = store.get(job_id)
        assert record is not None and record.state is JobState.CANCELLED
        assert record.finished_at is not None and record.next_attempt_at is None
        assert redis_client.zscore(DUE_INDEX, job_id) is None
    running_record = store.get(running)
    assert running_record is not None and running_record.state is JobState.RUNNING


def test_a_cancelled_job_is_never_claimed_and_cancelling_it_again_says_so(
    store: JobStore,
) -> None:
    job_id = store.create(spec(), "bulk").job_id
    store.cancel_many([job_id])

    assert store.claim(job_id) == NotClaimed(ClaimCode.FINAL, "cancelled")
    assert store.cancel_many([job_id]) == [Cancelled(job_id, CancelCode.FINAL, "cancelled")]


def test_a_cancelled_jobs_idempotency_key_is_released_so_the_row_is_queued_anew(
    store: JobStore, redis_client: redis.Redis
) -> None:
    first = store.create(spec(idempotency_key="k", ref="r"), "bulk")
    store.cancel_many([first.job_id])

    again = store.create(spec(idempotency_key="k", ref="r"), "bulk")

    assert again.is_new and again.job_id != first.job_id
    assert redis_client.hget(*idempotency_entry("acct-1", "k")[:2]) == again.job_id


def test_a_cancelled_job_expires_and_keeps_its_batch_alive_and_its_ref_lives_as_long(
    store: JobStore, batches: Batches, redis_client: redis.Redis
) -> None:
    batches.open("b", at=time.time(), account_id="acct-1", source=None)
    job_id = store.create(spec(ref="r"), "bulk").job_id
    redis_client.expire(batch_key("b"), 10)

    store.cancel_many([job_id])

    for key in (job_key(job_id), batch_key("b"), batch_info_key("b")):
        assert TTL - 5 < redis_client.ttl(key) <= TTL, key
    assert redis_client.hget(*ref_entry("acct-1", "r")[:2]) == job_id  # swept once it is gone


def test_an_outcome_for_a_job_cancelled_meanwhile_is_not_recorded(store: JobStore) -> None:
    """An outcome is recorded only for the holder of a running job's lease, so nothing a
    stray delivery reports can undo a cancel."""
    job_spec = spec()
    job_id = store.create(job_spec, "bulk").job_id
    store.cancel_many([job_id])
    stale = Claim(job_id=job_id, token="old", spec_json="{}", attempts=0, uncertain_since=None)

    assert store.succeed(stale, job_spec, TicketIds(id="t")) is Recorded.LOST_LEASE
    record = store.get(job_id)
    assert record is not None and record.state is JobState.CANCELLED and record.ticket is None


def test_cancelling_nothing_asks_nothing(store: JobStore) -> None:
    assert store.cancel_many([]) == []


def test_a_cancelled_job_whose_last_attempt_may_have_made_its_ticket_keeps_its_key(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """Its ticket may exist (a timeout after sending): the same row imported again must
    find this job, not queue a second ticket."""
    job_spec = spec(idempotency_key="k")
    job_id = store.create(job_spec, "bulk").job_id
    error = JobError(kind=ErrorKind.AMBIGUOUS, message="read timeout")
    uncertain = retrying(
        claimed(store, job_id),
        job_spec,
        error,
        due_at=time.time() + 60,
        attempts=1,
        uncertain_since=time.time(),
    )
    assert store.apply([uncertain]) == [Recorded.OK]

    assert store.cancel_many([job_id]) == [Cancelled(job_id, CancelCode.OK)]

    again = store.create(job_spec, "bulk")
    assert (again.job_id, again.is_new) == (job_id, False)
    assert redis_client.hget(*idempotency_entry("acct-1", "k")[:2]) == job_id


def test_cancelling_a_batch_leaves_alone_the_jobs_an_earlier_batch_made(
    store: JobStore, batches: Batches
) -> None:
    first = store.create_many([spec("a", idempotency_key="k1")], "bulk")[0].job_id
    again = store.create_many([spec("b", idempotency_key="k1"), spec("b")], "bulk")
    assert again[0].job_id == first and not again[0].is_new
    members = batches.job_ids("b")

    answers = store.cancel_many(members, of_batch="b")

    assert answers == [
        Cancelled(first, CancelCode.OTHER_BATCH, "a"),
        Cancelled(again[1].job_id, CancelCode.OK),
    ]
    record = store.get(first)
    assert record is not None and record.state is JobState.QUEUED
