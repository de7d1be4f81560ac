"""What one delivery of a job does: claim it, send it, and record what came of it.

Kept apart from Celery so that the decisions (retry now, wait and try later, adopt a ticket
found by reconciliation, fail) are plain code, and the task stays a thin adapter. Every
wait longer than an in-process retry is recorded as ``retrying`` with the moment it is
due; the scheduler sends it back to the queue then, so no worker slot sleeps for long.
"""

from __future__ import annotations

import logging
import time
from typing import Literal, Protocol

from pydantic import ValidationError

from worker.contract import ErrorKind, JobError, JobSpec
from worker.jobstore import Claim, JobStore, LeaseLost, Refused, spec_from_claim
from worker.keyhealth import KeyHealth
from worker.reconcile import TicketLister, find_created
from worker.retry import RetryPolicy
from worker.sender import NotAdmitted, Sender, TicketCreator
from worker.settings import Settings
from worker.stackone import Created, Failed, Outcome
from worker.validation import describe_validation_error

log = logging.getLogger("ticketq.worker")


class TicketApi(TicketCreator, TicketLister, Protocol):
    """What the runner needs of StackOne: create (never raises) and list, for reconciling."""


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        api: TicketApi,
        sender: Sender,
        policy: RetryPolicy,
        key_health: KeyHealth,
    ) -> None:
        self._settings = settings
        self._store = store
        self._api = api
        self._sender = sender
        self._policy = policy
        self._key_health = key_health

    def run(self, job_id: str) -> None:
        claim = self._store.claim(job_id)
        if isinstance(claim, Refused):
            # A redelivery of a finished job, one still leased by another worker, or an
            # early stray message: sending now could make a second ticket, so do nothing.
            log.info("job %s not attempted: %s %s", job_id, claim.reason, claim.detail)
            return
        try:
            spec = spec_from_claim(claim)
        except ValidationError as exc:
            error = JobError(kind=ErrorKind.INVALID, message=describe_validation_error(exc))
            self._report(claim, self._store.fail(claim, None, error), f"failed: {error.message}")
            return
        try:
            self._deliver(claim, spec)
        except LeaseLost:
            log.warning("job %s: lease lost to another delivery; stopped before sending", job_id)

    def _deliver(self, claim: Claim, spec: JobSpec) -> None:
        pause = self._key_health.paused()
        if pause is not None:
            error = JobError(
                kind=ErrorKind.BAD_CREDENTIALS,
                status=pause.status,
                message=f"waiting: StackOne refused the API key ({pause.message})",
            )
            delay = pause.until - time.time() + self._policy.delay_for(1, None)
            self._retry_later(claim, spec, error, delay, claim.uncertain_since)
            return
        uncertain_since, settled = claim.uncertain_since, False
        if uncertain_since is not None:
            verdict = self._settle_uncertainty(claim, spec, uncertain_since)
            if verdict == "handled":
                return
            if verdict == "not_found":
                uncertain_since, settled = None, True
        if claim.attempts >= self._settings.max_attempts:
            self._give_up(claim, spec, claim.attempts, None, uncertain_since)
            return
        self._attempt(claim, spec, uncertain_since, settled)

    def _settle_uncertainty(
        self, claim: Claim, spec: JobSpec, since: float
    ) -> Literal["handled", "not_found", "send_anyway"]:
        """An attempt since ``since`` may have created the ticket: decide before sending."""
        policy = "reconcile" if claim.reconcile_first else self._settings.on_ambiguous
        if policy == "park":
            self._park(claim, spec, "an earlier attempt may have created the ticket")
            return "handled"
        if policy == "retry":
            return "send_anyway"
        found = find_created(
            self._api, self._store, claim.job_id, spec, since, self._settings.reconcile_pages
        )
        if isinstance(found, Failed):
            # Still uncertain (and still to be reconciled first): look again later.
            error = found.to_error().model_copy(
                update={"message": f"reconciling before sending again: {found.message}"}
            )
            delay = self._policy.delay_for(max(claim.attempts, 1), found.retry_after)
            self._retry_later(claim, spec, error, delay, since)
            return "handled"
        if found is not None:
            result = self._store.succeed(claim, spec, found)
            self._report(claim, result, f"succeeded: adopted existing ticket {found.id}")
            return "handled"
        log.info("job %s: no ticket found since the uncertain attempt; sending again", claim.job_id)
        return "not_found"

    def _attempt(
        self, claim: Claim, spec: JobSpec, uncertain_since: float | None, settled: bool
    ) -> None:
        sent_at = time.time()

        def send() -> Outcome:
            nonlocal sent_at, settled
            sent = self._sender.send(claim, spec, settled=settled)
            settled, sent_at = False, sent.started_at
            return sent.outcome

        try:
            result = self._policy.run(send, attempts_before=claim.attempts)
        except NotAdmitted as wait:
            # Not the job's failure: the limits say later. Nothing counts against it.
            error = JobError(
                kind=ErrorKind.RETRYABLE,
                status=wait.status,
                message=f"waiting for the rate limit ({wait})",
            )
            self._retry_later(claim, spec, error, wait.wait, uncertain_since)
            return
        outcome = result.outcome
        if isinstance(outcome, Created):
            self._key_health.accepted()
            self._report(claim, self._store.succeed(claim, spec, outcome.ticket), "succeeded")
            return
        error = outcome.to_error()
        if outcome.kind is ErrorKind.BAD_CREDENTIALS:
            pause = self._key_health.refused(outcome.status, outcome.message)
            # The key, not the job: the attempt does not count against the job.
            self._retry_later(
                claim, spec, error, pause.until - time.time(), uncertain_since, unsent=True
            )
            return
        if outcome.kind is ErrorKind.TERMINAL or outcome.kind is ErrorKind.INVALID:
            self._report(claim, self._store.fail(claim, spec, error), f"failed: {error.message}")
            return
        if outcome.kind is ErrorKind.AMBIGUOUS:
            uncertain_since = sent_at
            if self._settings.on_ambiguous == "park":
                self._park(claim, spec, error.message)
                return
        if result.attempts >= self._settings.max_attempts:
            self._give_up(claim, spec, result.attempts, error, uncertain_since)
            return
        delay = result.next_delay
        if delay is None:  # ambiguous under reconcile: never retried in-process
            delay = self._policy.delay_for(result.attempts, outcome.retry_after)
        self._retry_later(claim, spec, error, delay, uncertain_since)

    def _retry_later(
        self,
        claim: Claim,
        spec: JobSpec,
        error: JobError,
        delay: float,
        uncertain_since: float | None,
        *,
        unsent: bool = False,
    ) -> None:
        result = self._store.retry_later(
            claim, spec, error, max(delay, 0.0), uncertain_since=uncertain_since, unsent=unsent
        )
        self._report(claim, result, f"retrying in {delay:.1f}s: {error.message}")

    def _give_up(
        self,
        claim: Claim,
        spec: JobSpec,
        attempts: int,
        last: JobError | None,
        uncertain_since: float | None,
    ) -> None:
        if uncertain_since is not None or last is None:
            why = last.message if last else "the worker was lost during the last attempt"
            self._park(claim, spec, f"all {attempts} attempts used; {why}")
            return
        error = last.model_copy(
            update={
                "kind": ErrorKind.EXHAUSTED,
                "message": f"gave up after {attempts} attempts; last error: {last.message}",
            }
        )
        self._report(claim, self._store.fail(claim, spec, error), f"failed: {error.message}")

    def _park(self, claim: Claim, spec: JobSpec, why: str) -> None:
        """Leave the decision to a person: the ticket may or may not exist."""
        error = JobError(kind=ErrorKind.UNCERTAIN, message=f"the ticket may exist: {why}")
        self._report(claim, self._store.fail(claim, spec, error), "parked as uncertain")

    @staticmethod
    def _report(claim: Claim, result: str, what: str) -> None:
        if result == "ok":
            log.info("job %s %s", claim.job_id, what)
        else:
            # Our lease ran out and another delivery took over; its outcome stands.
            log.warning("job %s outcome '%s' not recorded: %s", claim.job_id, what, result)
