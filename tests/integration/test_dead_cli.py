"""``ticketq dead`` as a person runs it, against real workers and the stand-in API: failed
jobs are listed, replayed without a second ticket, and purged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack, StackConfig
from producers.client import JobHandle, Producer
from tests.chaos.support import tickets_by_title
from tests.integration.support import FAST_RETRIES, ticketq

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parking_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Workers that park an ambiguous outcome as ``uncertain`` instead of reconciling it
    (a replay still reconciles: candidates a person must tell apart are named after 2 s)."""
    run_dir: Path = tmp_path_factory.mktemp("parking-stack")
    settings_env = {
        **FAST_RETRIES,
        "TICKETQ_ON_AMBIGUOUS": "park",
        "TICKETQ_RECONCILE_SETTLE": "2",
    }
    with LocalStack(StackConfig(run_dir=run_dir, settings_env=settings_env)) as running:
        yield running


@pytest.fixture(scope="module")
def parking_api(parking_stack: LocalStack) -> Iterator[FakeApiControl]:
    control = FakeApiControl(parking_stack.fake_api_url)
    yield control
    control.close()


@pytest.fixture
def account(title: str) -> str:
    """An account of this test alone, so its dead letters are the only ones listed."""
    return f"acct-{title.rsplit(' ', 1)[-1]}"


def dead(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    result = ticketq(stack, "dead", *args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert stack.config.api_key not in output
    return result


def listed(stack: LocalStack, account: str, *filters: str) -> list[dict[str, Any]]:
    result = dead(stack, "list", "--account-id", account, "--json", *filters)
    assert result.returncode == 0, result.stderr
    jobs: list[dict[str, Any]] = json.loads(result.stdout)
    return jobs


def failed_job(producer: Producer, account: str, title: str) -> JobHandle:
    handle = producer.submit(account, {"title": title}, ref=title)
    assert handle.wait(timeout=30).state == "failed"
    return handle


def test_a_refused_job_is_listed_then_replayed_into_one_ticket(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str, account: str
) -> None:
    fake_api.script(title, {"status": 422, "message": "Project is archived"})
    handle = failed_job(producer, account, title)

    jobs = listed(stack, account, "--reason", "terminal")
    assert [job["job_id"] for job in jobs] == [handle.job_id]
    assert jobs[0]["error"]["kind"] == "terminal" and jobs[0]["error"]["status"] == 422
    assert "Project is archived" in jobs[0]["error"]["message"]
    assert listed(stack, account, "--reason", "uncertain") == []

    replayed = dead(stack, "replay", handle.job_id)

    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1, skipped 0" in replayed.stdout
    record = handle.wait(timeout=30)
    assert record.state == "succeeded" and record.ticket is not None
    assert fake_api.created(title) == 1
    assert listed(stack, account) == []
    again = dead(stack, "replay", handle.job_id)
    assert again.returncode == 1
    assert f"skipped {handle.job_id}: not failed (succeeded)" in again.stderr


def test_replaying_an_uncertain_job_adopts_the_ticket_that_exists(
    parking_stack: LocalStack, parking_api: FakeApiControl, title: str, account: str
) -> None:
    parking_api.script(title, {"create_then_drop": True})
    handle = failed_job(Producer(parking_stack.settings()), account, title)
    assert [job["error"]["kind"] for job in listed(parking_stack, account)] == ["uncertain"]
    assert parking_api.created(title) == 1

    replayed = dead(parking_stack, "replay", "--all", "--reason", "uncertain")

    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1, skipped 0" in replayed.stdout
    record = handle.wait(timeout=30)
    assert record.state == "succeeded" and record.ticket is not None
    assert parking_api.created(title) == 1
    assert len(parking_api.arrivals(title)) == 1  # adopted, never sent again


def test_an_uncertain_job_a_listing_cannot_tell_apart_is_left_to_a_person_who_may_send_it(
    parking_stack: LocalStack, parking_api: FakeApiControl, title: str, account: str
) -> None:
    parking_api.script(title, {"create_then_drop": True})
    producer = Producer(parking_stack.settings())
    handle = producer.submit(account, {"title": title, "content": [{"plain": "card fails"}]})
    assert handle.wait(timeout=30).state == "failed"
    (ticket_id,) = tickets_by_title(parking_stack, account)[title]
    parking_api.configure(list_style="sparse")  # a provider that lists titles only
    try:
        assert dead(parking_stack, "replay", handle.job_id).returncode == 0
        record = handle.wait(timeout=30)
        assert record.error is not None and record.error.kind == "uncertain"
        assert f"cannot be told: {ticket_id}" in record.error.message
        assert len(parking_api.arrivals(title)) == 1  # never a guess, never a second send

        blanket = dead(parking_stack, "replay", "--send-anyway", "--all")
        assert blanket.returncode == 2 and blanket.stdout == ""
        assert (
            blanket.stderr.strip()
            == "error: --send-anyway takes the JOB_IDs you checked, not --all"
        )
        sent = dead(parking_stack, "replay", "--send-anyway", handle.job_id)
    finally:
        parking_api.configure(list_style="verbatim")

    assert sent.returncode == 0, sent.stderr
    record = handle.wait(timeout=30)
    assert record.state == "succeeded" and record.ticket is not None
    assert record.ticket.id != ticket_id  # the person said the first was not this job's
    assert len(parking_api.arrivals(title)) == 2


def test_purge_forgets_a_failed_job_after_confirmation(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str, account: str
) -> None:
    fake_api.script(title, {"status": 422, "message": "Project is archived"})
    handle = failed_job(producer, account, title)

    unconfirmed = dead(stack, "purge", "--all", "--account-id", account)
    assert unconfirmed.returncode == 1 and "nothing deleted" in unconfirmed.stderr
    assert len(listed(stack, account)) == 1

    purged = dead(stack, "purge", "--all", "--account-id", account, "--yes")

    assert purged.returncode == 0, purged.stderr
    assert "purged 1, skipped 0" in purged.stdout
    assert listed(stack, account) == []
    assert producer.find(account, title) is None
    assert ticketq(stack, "status", handle.job_id).returncode == 1
