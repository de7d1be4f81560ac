"""Bulk submission: many tickets in one call, in the bulk lane, followed as a batch."""

from __future__ import annotations

from typing import Any

import pytest

from ops.fakeapi_client import FakeApiControl
from producers.client import InvalidJob, Producer
from worker.contract import JobState

pytestmark = pytest.mark.integration
ACCOUNT = "acct-bulk"


def test_a_batch_creates_one_ticket_per_entry_and_reports_progress(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    titles = [f"{title} #{n}" for n in range(30)]
    refs = [f"{title}-ref-{n}" for n in range(30)]

    batch = producer.submit_many(ACCOUNT, [{"title": t} for t in titles], refs=refs)
    counts = batch.wait(timeout=60)

    assert counts == {JobState.SUCCEEDED: 30}
    assert len(set(batch.job_ids)) == 30
    assert all(fake_api.created(t) == 1 for t in titles)
    record = producer.find(ACCOUNT, refs[7])
    assert record is not None and record.job_id == batch.job_ids[7]
    assert (record.lane, record.batch_id) == ("bulk", batch.batch_id)


def test_a_batch_with_an_invalid_ticket_queues_nothing_and_names_each_bad_entry(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    tickets: list[dict[str, Any]] = [
        {"title": title},
        {"title": title, "priority": {"value": "urgent"}},
        {"titel": 1},
    ]

    with pytest.raises(InvalidJob) as caught:
        producer.submit_many(ACCOUNT, tickets)

    assert "tickets[1]: ticket.priority.value" in str(caught.value)
    assert "tickets[2]: ticket.titel: unknown field" in str(caught.value)
    assert "tickets[0]" not in str(caught.value)
    assert fake_api.arrivals(title) == []


def test_rerunning_an_import_with_the_same_keys_makes_no_second_ticket(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    tickets = [{"title": f"{title} #{n}"} for n in range(5)]
    keys = [f"{title}-key-{n}" for n in range(5)]

    first = producer.submit_many(ACCOUNT, tickets, idempotency_keys=keys)
    first.wait(timeout=30)
    again = producer.submit_many(ACCOUNT, tickets, idempotency_keys=keys)

    assert again.job_ids == first.job_ids
    assert all(fake_api.created(f"{title} #{n}") == 1 for n in range(5))


def test_refs_must_match_the_tickets_one_for_one(producer: Producer) -> None:
    with pytest.raises(InvalidJob, match="refs has 1 items for 2 tickets"):
        producer.submit_many(ACCOUNT, [{"title": "a"}, {"title": "b"}], refs=["only-one"])
