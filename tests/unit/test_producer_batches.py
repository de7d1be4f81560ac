"""The producer's batches against a real (private) Redis, with no worker: what
``submit_many(..., skip_invalid=True)`` leaves out and queues, a batch reopened by id, and
waiting for a batch whose jobs were cancelled."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ops.redis_server import RedisServer
from producers import BatchNotFound, InvalidJob, JobState, Producer, Rejected, Settings
from worker.store.batches import Batches
from worker.store.keys import QUEUES

ACCOUNT = "acct-1"


@pytest.fixture
def producer(redis_server: RedisServer) -> Iterator[Producer]:
    with Producer(Settings(redis_url=redis_server.url)) as made:
        yield made


def tickets(*titles: str) -> list[dict[str, Any]]:
    return [{"title": title} for title in titles]


def test_skip_invalid_leaves_out_the_bad_tickets_by_index_and_reason_and_queues_the_rest(
    producer: Producer,
) -> None:
    given: list[dict[str, Any]] = [
        {"title": "a"},
        {"title": "b", "priority": {"value": "urgent"}},
        {"title": "c"},
        {"titel": "d"},
    ]

    batch = producer.submit_many(ACCOUNT, given, skip_invalid=True)

    assert [r.index for r in batch.rejects] == [1, 3]
    assert batch.rejects[0].reason.startswith("ticket.priority.value: Input should be")
    assert batch.rejects[1] == Rejected(3, "ticket.titel: unknown field")
    assert len(batch.job_ids) == 2
    assert batch.progress() == {JobState.QUEUED: 2}
    records = [producer.get(job_id) for job_id in batch.job_ids]
    assert [r.batch_id for r in records if r] == [batch.batch_id] * 2
    assert producer.store.redis.llen(QUEUES["bulk"]) > 0  # their message went out
    positions = [p for page in Batches(producer.store).pages(batch.batch_id) for p, _ in page]
    assert positions == [0, 2]  # each at its index in the input


def test_the_batch_record_counts_rows_accepted_known_and_rejected(producer: Producer) -> None:
    keys = ["k-0", "k-1", "k-2"]
    producer.submit_many(ACCOUNT, tickets("a", "b", "c"), idempotency_keys=keys)

    again = producer.submit_many(
        ACCOUNT, [*tickets("a", "b"), {"titel": "c"}], idempotency_keys=keys, skip_invalid=True
    )

    info = Batches(producer.store).info(again.batch_id)
    assert info is not None
    assert (info.account_id, info.source) == (ACCOUNT, None)
    assert (info.rows, info.accepted, info.already_known, info.rejected) == (3, 0, 2, 1)


def test_without_skip_invalid_one_bad_ticket_queues_nothing(producer: Producer) -> None:
    with pytest.raises(InvalidJob, match=r"tickets\[1\]: ticket.titel: unknown field"):
        producer.submit_many(ACCOUNT, [{"title": "a"}, {"titel": "b"}])

    assert list(producer.store.redis.scan_iter("ticketq:job:*")) == []
    assert Batches(producer.store).recent() == []


def test_a_batch_whose_every_ticket_is_invalid_is_recorded_with_no_jobs(
    producer: Producer,
) -> None:
    batch = producer.submit_many(ACCOUNT, [{"titel": "a"}], skip_invalid=True)

    assert batch.job_ids == [] and len(batch.rejects) == 1
    assert producer.batch(batch.batch_id).job_ids == []
    assert batch.wait(timeout=1) == {}


def test_a_batch_is_reopened_by_its_id_with_its_jobs_in_input_order(producer: Producer) -> None:
    batch = producer.submit_many(ACCOUNT, tickets("a", "b", "c"))

    reopened = producer.batch(batch.batch_id)

    assert (reopened.batch_id, reopened.job_ids) == (batch.batch_id, batch.job_ids)
    assert reopened.progress() == {JobState.QUEUED: 3}


def test_reopening_a_batch_nobody_made_raises_batch_not_found(producer: Producer) -> None:
    with pytest.raises(BatchNotFound):
        producer.batch("no-such-batch")


def test_waiting_for_a_batch_ends_once_its_jobs_are_cancelled(producer: Producer) -> None:
    batch = producer.submit_many(ACCOUNT, tickets("a", "b"))
    producer.store.cancel_many(batch.job_ids)

    assert batch.wait(timeout=2) == {JobState.CANCELLED: 2}
