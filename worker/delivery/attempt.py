"""What one request to StackOne came to, as the worker's log and metrics tell it.

The runner builds an ``Attempt`` for every answered request, from the job as it was sent,
StackOne's answer, the decision taken and the latency it measured; the log line
(``Attempt`` is the message itself, rendered only if the line is written), the metrics
(``worker/delivery/metrics.py``) and the job's record (``entry``, its ``attempt_log``) all
read it. Building one is pure: the runner passes the
clock's readings in. Outside text (ids, refs, StackOne's message) is made printable when
rendered; the client has already scrubbed the API key from every answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from worker.contract import MAX_ATTEMPT_ERROR_CHARS, AttemptEntry, ErrorKind, JobState, Outcome
from worker.delivery.decisions import Again, Decision, Job
from worker.stackone.answers import Answer, Failure
from worker.text import printable

__all__ = ["Attempt", "Outcome", "RetryReason", "retry_reason"]

LogValue = str | int | float | None
# An attempt's fields, in the order the text line shows them (the error last: it has spaces).
FIELDS = (
    "job",
    "account",
    "ref",
    "batch",
    "attempt",
    "status",
    "latency_ms",
    "outcome",
    "next_delay_s",
    "kind",
    "error",
)
_LINE = "attempt " + " ".join(f"{name}={{}}" for name in FIELDS)


class RetryReason(StrEnum):
    """Why a failed attempt is tried again."""

    THROTTLED = "throttled"  # 429
    KEY_REFUSED = "key_refused"  # 401/403: the key, not the job
    AMBIGUOUS = "ambiguous"  # 408, a timeout after sending: the ticket may exist
    NETWORK = "network"  # no HTTP answer at all
    SERVER_ERROR = "server_error"  # 5xx


def retry_reason(answer: Failure) -> RetryReason:
    """The reason a retried failure is counted under (``ticketq_retries_total``)."""
    if answer.status == 429:
        return RetryReason.THROTTLED
    if answer.kind is ErrorKind.BAD_CREDENTIALS:
        return RetryReason.KEY_REFUSED
    if answer.kind is ErrorKind.AMBIGUOUS:
        return RetryReason.AMBIGUOUS
    if answer.status is None:
        return RetryReason.NETWORK
    return RetryReason.SERVER_ERROR


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request's line: whose job, which attempt, what StackOne said, how fast, what now."""

    job: str
    account: str
    ref: str | None
    batch: str | None
    number: int  # the job's attempt this request was, counting earlier deliveries'
    status: int | None  # None: no HTTP answer (a network failure or timeout)
    latency: float  # seconds from sending to the answer (or the failure)
    outcome: Outcome
    next_delay: float | None  # seconds until it is sent again (again, retrying)
    failure: Failure | None  # None: the ticket was created
    sent_at: float  # when the request went out (Unix seconds)

    @classmethod
    def of(
        cls, job: Job, answer: Answer, decision: Decision, latency: float, now: float
    ) -> Attempt:
        """The attempt ``job`` (as sent) made: ``answer`` came back after ``latency``
        seconds and was decided at ``now``."""
        step = decision.step
        if isinstance(step, Again):
            outcome, delay = Outcome.AGAIN, step.delay
        elif step.state is JobState.RETRYING:
            outcome, delay = Outcome.RETRYING, max((step.due_at or now) - now, 0.0)
        else:
            outcome, delay = Outcome(step.state.value), None
        spec = job.spec
        return cls(
            job=job.claim.job_id,
            account=spec.account_id,
            ref=spec.ref,
            batch=spec.batch_id,
            number=job.total_attempts,
            status=answer.status,
            latency=latency,
            outcome=outcome,
            next_delay=delay,
            failure=answer if isinstance(answer, Failure) else None,
            sent_at=job.sent_at,
        )

    def entry(self) -> AttemptEntry:
        """The attempt as the job's record keeps it: StackOne's message cut short (made
        printable where it is shown, as every stored text)."""
        failure = self.failure
        return AttemptEntry(
            at=self.sent_at,
            status=self.status,
            latency_ms=round(self.latency * 1000, 1),
            outcome=self.outcome,
            kind=None if failure is None else failure.kind,
            error=None if failure is None else failure.message[:MAX_ATTEMPT_ERROR_CHARS],
        )

    @property
    def level(self) -> int:
        """INFO for a ticket made; every failure, retried or not, at WARNING."""
        return logging.INFO if self.failure is None else logging.WARNING

    def log_fields(self) -> dict[str, LogValue]:
        """The line's fields, the JSON log's keys (``worker/delivery/logs.py``)."""
        return dict(zip(FIELDS, self._values(), strict=True))

    def __str__(self) -> str:
        """The text line: ``attempt job=... status=503 ... error=...``, ``-`` for none;
        the error, which may hold spaces, last. (Once per ticket: kept cheap.)"""
        return _LINE.format(*["-" if value is None else value for value in self._values()])

    def _values(self) -> tuple[LogValue, ...]:
        """The values of ``FIELDS``, in order, outside text made printable."""
        failure = self.failure
        return (
            printable(self.job),
            printable(self.account),
            None if self.ref is None else printable(self.ref),
            None if self.batch is None else printable(self.batch),
            self.number,
            self.status,
            round(self.latency * 1000, 1),
            self.outcome.value,
            None if self.next_delay is None else round(self.next_delay, 3),
            None if failure is None else failure.kind.value,
            None if failure is None else printable(failure.message),
        )
