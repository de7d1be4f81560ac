"""The worker's line per attempt (its fields, its level, its text) and the JSON log format,
from real decisions of real answers, without Redis or a clock."""

from __future__ import annotations

import json
import logging
import sys

from tests.unit.test_decisions import CALM, NOW, TICKET, rules
from worker.contract import ErrorKind, JobSpec
from worker.delivery.attempt import Attempt, Outcome, RetryReason, retry_reason
from worker.delivery.decisions import Job
from worker.delivery.logs import JsonFormatter
from worker.stackone.answers import Failure, TicketCreated, kind_for_status
from worker.store.jobs import Claim

SPEC = JobSpec.model_validate(
    {
        "account_id": "acct-7",
        "ref": "order\n42",
        "batch_id": "b-1",
        "ticket": {"title": "Checkout is down"},
    }
)


def sent(attempts_before: int = 0) -> Job:
    claim = Claim("job-1", "token", SPEC.model_dump_json(), attempts_before, None)
    return Job(claim, SPEC, None).sent(NOW - 1.0, probe=False)


def status(code: int, message: str = "") -> Failure:
    return Failure(kind_for_status(code), message or f"HTTP {code}", code)


def attempt(answer: TicketCreated | Failure, attempts_before: int = 0) -> Attempt:
    job = sent(attempts_before)
    return Attempt.of(job, answer, rules().answered(job, answer, CALM), 0.0234, NOW)


def record(message: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("ticketq.worker", level, __file__, 1, message, None, None)


def test_a_created_ticket_is_an_info_line_naming_job_account_ref_batch_status_latency() -> None:
    line = attempt(TicketCreated(TICKET), attempts_before=2)

    assert line.level == logging.INFO
    assert line.log_fields() == {
        "job": "job-1",
        "account": "acct-7",
        "ref": "order\\n42",  # outside text made printable: no forged second line
        "batch": "b-1",
        "attempt": 3,
        "status": 201,
        "latency_ms": 23.4,
        "outcome": "succeeded",
        "next_delay_s": None,
        "kind": None,
        "error": None,
    }
    assert str(line) == (
        "attempt job=job-1 account=acct-7 ref=order\\n42 batch=b-1 attempt=3 status=201 "
        "latency_ms=23.4 outcome=succeeded next_delay_s=- kind=- error=-"
    )


def test_a_422_is_a_warning_with_its_status_and_stackones_message_and_the_job_failed() -> None:
    line = attempt(status(422, "title: required\x1b[2J"))

    assert line.level == logging.WARNING
    fields = line.log_fields()
    assert fields["status"] == 422 and fields["outcome"] == "failed"
    assert fields["account"] == "acct-7" and fields["ref"] == "order\\n42"
    assert fields["kind"] == "terminal" and fields["error"] == "title: required\\x1b[2J"
    assert "\x1b" not in str(line) and str(line).endswith("error=title: required\\x1b[2J")


def test_an_in_worker_retry_logs_a_warning_with_the_delay_before_it_is_sent_again() -> None:
    line = attempt(status(503))

    assert line.outcome is Outcome.AGAIN and line.level == logging.WARNING
    assert line.log_fields()["next_delay_s"] == 1.0  # the backoff ceiling after attempt 1
    assert line.log_fields()["status"] == 503


def test_a_retry_handed_back_logs_the_delay_until_it_is_due() -> None:
    line = attempt(status(429, "slow down"), attempts_before=1)

    assert line.outcome is Outcome.RETRYING
    assert line.next_delay == 10.0  # a 429 without Retry-After pauses 10 s


def test_no_http_answer_logs_no_status() -> None:
    line = attempt(Failure(ErrorKind.RETRYABLE, "could not connect"))

    assert line.log_fields()["status"] is None and "status=- " in str(line)


def test_each_retryable_failure_has_its_reason() -> None:
    assert retry_reason(status(429)) is RetryReason.THROTTLED
    assert retry_reason(status(401)) is RetryReason.KEY_REFUSED
    assert retry_reason(status(408)) is RetryReason.AMBIGUOUS
    assert retry_reason(status(502)) is RetryReason.SERVER_ERROR
    assert retry_reason(Failure(ErrorKind.RETRYABLE, "reset")) is RetryReason.NETWORK


def test_a_json_line_has_time_level_logger_message_and_the_attempts_fields_as_keys() -> None:
    line = attempt(status(503))

    entry = json.loads(JsonFormatter().format(record(line, logging.WARNING)))

    assert entry["level"] == "WARNING" and entry["logger"] == "ticketq.worker"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert entry["message"] == str(line)
    assert {key: entry[key] for key in line.log_fields()} == line.log_fields()


def test_a_json_line_is_one_line_of_ascii_whatever_the_text_and_keeps_a_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failing = record("line\nbreak \u202e bidi \x85 next", logging.ERROR)
        failing.exc_info = sys.exc_info()

    text = JsonFormatter().format(failing)

    assert "\n" not in text and text.isascii()
    entry = json.loads(text)
    assert entry["message"] == "line\nbreak \u202e bidi \x85 next"
    assert "ValueError: boom" in entry["exception"]
    assert set(entry) == {"time", "level", "logger", "message", "exception"}


def test_a_plain_line_with_arguments_is_formatted_into_its_message() -> None:
    plain = logging.LogRecord("celery", logging.INFO, __file__, 1, "%s ready.", ("w0@h",), None)

    assert json.loads(JsonFormatter().format(plain))["message"] == "w0@h ready."
