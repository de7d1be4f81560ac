"""What one delivery of a job does: claim it, send it, and record what came of it.

Kept apart from Celery so that the decisions (retry now, hand back to the queue, fail,
succeed) are plain code, and the task stays a thin adapter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from worker.contract import ErrorKind, JobError, JobSpec, TicketCreate
from worker.jobstore import Claim, JobStore, Refused, spec_from_claim
from worker.retry import RetryPolicy
from worker.settings import Settings
from worker.stackone import Created, Failed, Outcome
from worker.validation import describe_validation_error

log = logging.getLogger("ticketq.worker")


class TicketApi(Protocol):
    """What the runner needs of StackOne: one create call that never raises."""

    def create_ticket(self, account_id: str, ticket: TicketCreate) -> Outcome: ...


@dataclass(frozen=True)
class Requeue:
    """Send the job back to the queue to be attempted again after ``delay`` seconds."""

    delay: float


class JobRunner:
    def __init__(
        self, settings: Settings, store: JobStore, client: TicketApi, policy: RetryPolicy
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._policy = policy

    def run(self, job_id: str) -> Requeue | None:
        claim = self._store.claim(job_id)
        if isinstance(claim, Refused):
            # A redelivery of a finished job, or one still leased by another worker: sending
            # it again could make a second ticket, so this delivery does nothing.
            log.info("job %s not attempted: %s %s", job_id, claim.reason, claim.detail)
            return None
        try:
            spec = spec_from_claim(claim)
        except ValidationError as exc:
            error = JobError(kind=ErrorKind.INVALID, message=describe_validation_error(exc))
            self._store.fail(claim, None, error)
            log.warning("job %s failed: %s", job_id, error.message)
            return None
        if claim.attempts >= self._settings.max_attempts:
            # Redelivered after its last attempt was cut off (worker killed mid-request):
            # that attempt may have created the ticket, so a person must decide.
            error = JobError(
                kind=ErrorKind.UNCERTAIN,
                message=f"all {claim.attempts} attempts used; the outcome of the last one is "
                "unknown (its worker stopped during it)",
            )
            self._report(claim, self._store.fail(claim, spec, error), "parked as uncertain")
            return None
        return self._attempt(claim, spec)

    def _attempt(self, claim: Claim, spec: JobSpec) -> Requeue | None:
        def send() -> Outcome:
            self._store.count_attempt(claim)
            return self._client.create_ticket(spec.account_id, spec.ticket)

        result = self._policy.run(send, attempts_before=claim.attempts)
        outcome = result.outcome
        if isinstance(outcome, Created):
            self._report(claim, self._store.succeed(claim, spec, outcome.ticket), "succeeded")
            return None
        return self._after_failure(claim, spec, outcome, result.attempts, result.next_delay)

    def _after_failure(
        self,
        claim: Claim,
        spec: JobSpec,
        failure: Failed,
        attempts: int,
        next_delay: float | None,
    ) -> Requeue | None:
        error = failure.to_error()
        attempts_left = attempts < self._settings.max_attempts
        if failure.kind is ErrorKind.BAD_CREDENTIALS and attempts_left:
            # The key is wrong, not the job: keep the job and try it much later.
            log.error("StackOne refused the API key (%s): %s", failure.status, failure.message)
            return self._requeue(claim, spec, error, self._settings.backoff_max)
        if failure.kind is ErrorKind.AMBIGUOUS and self._settings.on_ambiguous == "park":
            parked = error.model_copy(update={"kind": ErrorKind.UNCERTAIN})
            self._report(claim, self._store.fail(claim, spec, parked), "parked as uncertain")
            return None
        if next_delay is not None:
            return self._requeue(claim, spec, error, next_delay)
        if self._policy.is_retryable(failure) or failure.kind is ErrorKind.BAD_CREDENTIALS:
            error = error.model_copy(
                update={
                    "kind": ErrorKind.EXHAUSTED,
                    "message": f"gave up after {attempts} attempts; last error: {error.message}",
                }
            )
        self._report(claim, self._store.fail(claim, spec, error), f"failed: {error.message}")
        return None

    def _requeue(
        self, claim: Claim, spec: JobSpec, error: JobError, delay: float
    ) -> Requeue | None:
        result = self._store.retry_later(claim, spec, error, delay)
        self._report(claim, result, f"retrying in {delay:.1f}s")
        return Requeue(delay=delay) if result == "ok" else None

    @staticmethod
    def _report(claim: Claim, result: str, what: str) -> None:
        if result == "ok":
            log.info("job %s %s", claim.job_id, what)
        else:
            # Our lease ran out and another delivery took over; its outcome stands.
            log.warning("job %s outcome '%s' not recorded: %s", claim.job_id, what, result)
