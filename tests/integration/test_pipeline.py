"""The pipeline end to end: producer -> Redis -> celery worker process -> StackOne stand-in
over HTTP -> job record. Each test names one promise ticketq makes to its callers."""

from __future__ import annotations

import httpx
import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack
from producers.client import InvalidJob, Producer
from worker.contract import ErrorKind, JobState

pytestmark = pytest.mark.integration
ACCOUNT = "acct-integration"


def test_a_created_ticket_stores_stackones_id_and_remote_id(
    producer: Producer, stack: LocalStack, title: str
) -> None:
    record = producer.submit(ACCOUNT, {"title": title}, ref=title).wait(timeout=30)

    assert record.state == JobState.SUCCEEDED
    assert record.attempts == 1 and record.error is None
    assert record.ticket is not None and record.ticket.remote_id
    stored = httpx.get(
        f"{stack.fake_api_url}/unified/ticketing/tickets/{record.ticket.id}",
        auth=(stack.config.api_key, ""),
        headers={"x-account-id": ACCOUNT, "User-Agent": "tests"},
    ).json()["data"]
    assert (stored["remote_id"], stored["title"]) == (record.ticket.remote_id, title)


def test_a_job_is_found_by_account_and_ref(producer: Producer, title: str) -> None:
    handle = producer.submit(ACCOUNT, {"title": title}, ref=f"ref-{title}")
    handle.wait(timeout=30)

    found = producer.find(ACCOUNT, f"ref-{title}")

    assert found is not None and found.job_id == handle.job_id
    assert producer.find("another-account", f"ref-{title}") is None


@pytest.mark.parametrize("status", [400, 422])
def test_a_rejected_ticket_fails_after_one_request_with_stackones_message(
    producer: Producer, fake_api: FakeApiControl, title: str, status: int
) -> None:
    provider_errors = [{"status": 400, "url": "https://provider.test/issue", "raw": "bad field"}]
    fake_api.script(
        title,
        {"status": status, "message": "Summary is required", "provider_errors": provider_errors},
    )

    record = producer.submit(ACCOUNT, {"title": title}).wait(timeout=30)

    assert record.state == JobState.FAILED
    assert record.attempts == 1
    assert len(fake_api.arrivals(title)) == 1
    assert record.error is not None
    assert (record.error.kind, record.error.status) == (ErrorKind.TERMINAL, status)
    assert "Summary is required" in record.error.message
    assert record.error.provider_errors == provider_errors


def test_a_server_error_then_success_ends_succeeded(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    fake_api.script(title, {"status": 500})

    record = producer.submit(ACCOUNT, {"title": title}).wait(timeout=30)

    assert record.state == JobState.SUCCEEDED
    assert record.attempts == 2
    assert fake_api.created(title) == 1


def test_retry_after_is_honoured_before_trying_again(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    fake_api.script(title, {"status": 429, "retry_after": "2"})

    record = producer.submit(ACCOUNT, {"title": title}).wait(timeout=30)

    assert record.state == JobState.SUCCEEDED
    first, second = fake_api.arrivals(title)
    assert second - first >= 2.0


def test_retries_that_never_succeed_end_failed_with_the_last_error(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    fake_api.script(title, *[{"status": 503, "message": "provider down"}] * 4)

    record = producer.submit(ACCOUNT, {"title": title}).wait(timeout=60)

    assert record.state == JobState.FAILED
    assert record.attempts == 4  # TICKETQ_MAX_ATTEMPTS in this stack
    assert record.error is not None and record.error.kind == ErrorKind.EXHAUSTED
    assert "provider down" in record.error.message
    assert fake_api.created(title) == 0


def test_a_repeated_idempotency_key_returns_the_same_job_and_makes_one_ticket(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    key = f"key-{title}"
    first = producer.submit(ACCOUNT, {"title": title}, idempotency_key=key)
    again_at_once = producer.submit(ACCOUNT, {"title": title}, idempotency_key=key)
    first.wait(timeout=30)
    again_later = producer.submit(ACCOUNT, {"title": title}, idempotency_key=key)

    assert first.is_new and not again_at_once.is_new and not again_later.is_new
    assert {again_at_once.job_id, again_later.job_id} == {first.job_id}
    assert fake_api.created(title) == 1
    assert len(fake_api.arrivals(title)) == 1


def test_an_invalid_ticket_is_refused_at_submit_and_never_reaches_the_api(
    producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    with pytest.raises(InvalidJob, match=r"ticket\.priority\.value"):
        producer.submit(ACCOUNT, {"title": title, "priority": {"value": "urgent"}})

    assert fake_api.arrivals(title) == []


def test_the_api_key_is_never_written_to_redis_or_worker_logs(
    producer: Producer, stack: LocalStack, title: str
) -> None:
    producer.submit(ACCOUNT, {"title": title}).wait(timeout=30)
    key = stack.config.api_key
    client = producer.store.redis

    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        values = (
            client.hvals(name)
            if kind == "hash"
            else [str(v) for v in client.lrange(name, 0, -1)]
            if kind == "list"
            else [client.get(name) or ""]
            if kind == "string"
            else []
        )
        assert not any(key in value for value in values), name
    assert all(key not in worker.log_text() for worker in stack.workers)
