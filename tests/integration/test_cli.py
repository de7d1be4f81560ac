"""The ``ticketq`` command as a user runs it, against the running stack."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from ops.cli.console import utc_time
from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack
from producers.client import JobHandle, Producer
from tests.integration.support import ticketq

pytestmark = pytest.mark.integration


def test_submit_prints_a_job_id_that_status_and_find_report(
    stack: LocalStack, producer: Producer, title: str, tmp_path: Path
) -> None:
    body = tmp_path / "ticket.json"
    body.write_text(json.dumps({"title": title, "priority": {"value": "high"}}))

    submitted = ticketq(stack, "submit", "--account-id", "acct-cli", "--ref", title, str(body))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    JobHandle(job_id=job_id, is_new=True, store=producer.store).wait(timeout=30)

    shown = json.loads(ticketq(stack, "status", job_id, "--json").stdout)
    found = json.loads(
        ticketq(stack, "find", "--account-id", "acct-cli", "--ref", title, "--json").stdout
    )
    assert shown == found
    assert shown["job_id"] == job_id and shown["state"] == "succeeded"
    assert {"job_id", "state", "account_id", "ref", "attempts", "ticket", "error"} <= set(shown)
    assert shown["ticket"]["id"] and shown["ticket"]["remote_id"]
    record = producer.get(job_id)
    assert record is not None  # times as ISO 8601 in UTC, as the web API answers them
    assert datetime.fromisoformat(shown["finished_at"]).timestamp() == pytest.approx(
        record.finished_at, abs=1e-6
    )
    assert shown["created_at"].endswith("Z") and shown["next_attempt_at"] is None


def test_status_shows_its_times_in_utc_as_people_read_them_and_json_as_iso_8601(
    stack: LocalStack, producer: Producer, title: str
) -> None:
    record = producer.submit("acct-cli", {"title": title}).wait(timeout=30)

    lines = ticketq(stack, "status", record.job_id).stdout.splitlines()
    shown = json.loads(ticketq(stack, "status", record.job_id, "--json").stdout)

    times = {line.split()[0]: line.split(None, 1)[1] for line in lines if "_at " in line}
    assert set(times) == {"created_at", "updated_at", "finished_at"}
    assert times["finished_at"] == utc_time(record.finished_at)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", times["created_at"])
    assert str(int(record.created_at)) not in "\n".join(lines)
    assert shown["created_at"] == record.public()["created_at"]  # ISO 8601, as the API


def test_submit_reads_standard_input(stack: LocalStack, title: str) -> None:
    submitted = ticketq(
        stack, "submit", "--account-id", "acct-cli", "-", stdin=json.dumps({"title": title})
    )
    assert submitted.returncode == 0, submitted.stderr
    assert len(submitted.stdout.strip()) == 26  # a job id


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('{"title": "x", "priority": {"value": "urgent"}}', "ticket.priority.value"),
        ('{"titel": "x"}', "ticket.titel: unknown field"),
        ('{"title": "x",\n "tags": [1, }', "line 2"),
    ],
)
def test_bad_input_exits_non_zero_naming_the_field_without_a_traceback(
    stack: LocalStack, body: str, named: str
) -> None:
    result = ticketq(stack, "submit", "--account-id", "acct-cli", "-", stdin=body)

    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_status_of_an_unknown_job_says_so(stack: LocalStack) -> None:
    result = ticketq(stack, "status", "0" * 32)

    assert result.returncode == 1
    assert "no job" in result.stderr


def test_status_shows_the_request_the_stand_in_refused_with_its_status_and_message(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    fake_api.script(title, {"status": 422, "message": "Project is archived\x1b[2J"})
    record = producer.submit("acct-cli", {"title": title}).wait(timeout=30)
    assert record.state == "failed"

    shown = json.loads(ticketq(stack, "status", record.job_id, "--json").stdout)
    lines = ticketq(stack, "status", record.job_id).stdout.splitlines()

    (attempt,) = shown["attempt_log"]
    assert (attempt["status"], attempt["outcome"], attempt["kind"]) == (422, "failed", "terminal")
    assert attempt["error"].startswith("Project is archived")
    assert attempt["at"].endswith("Z") and attempt["latency_ms"] > 0
    sent = datetime.fromisoformat(attempt["at"]).timestamp()
    assert record.created_at <= sent <= record.updated_at
    (line,) = [line for line in lines if line.startswith("attempt_log")]
    assert " 422 " in line and "failed  terminal: Project is archived\\x1b[2J" in line
