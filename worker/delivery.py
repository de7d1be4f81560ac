"""What becomes of one job in a delivery, decided without any I/O.

The runner asks these questions for every job of a batch, after every admission and every
answer from StackOne; the answers are either a ``Transition`` to record or ``Again``: try
once more in this delivery, after a short wait. Keeping them pure keeps them in one place
and testable: a batch of one and a batch of fifty take exactly the same decisions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from worker.contract import ErrorKind, JobError, JobSpec
from worker.jobstore import Claim, Transition, failed, retrying, succeeded
from worker.keyhealth import Refusal
from worker.ratelimit import Admission, Reason
from worker.retry import RetryPolicy
from worker.settings import Settings
from worker.stackone import Created, Outcome

# StackOne documents Retry-After on every 429; if one ever comes without, wait this long.
DEFAULT_429_PAUSE = 10.0


@dataclass
class Job:
    """One claimed job during its delivery."""

    claim: Claim
    spec: JobSpec
    uncertain_since: float | None  # an attempt since then may have created the ticket
    settled: bool = False  # reconciliation found no ticket: no longer uncertain once sent
    attempts: int = 0  # requests in this delivery that count against the job
    sent_at: float = 0.0
    probe: bool = False  # its request finds out whether a refused key works again

    @property
    def total_attempts(self) -> int:
        return self.claim.attempts + self.attempts


@dataclass(frozen=True)
class Again:
    """Try this job once more in this delivery, ``delay`` seconds from now."""

    delay: float


Decision = Transition | Again


class Decisions:
    def __init__(self, settings: Settings, policy: RetryPolicy, stopping: threading.Event) -> None:
        self._settings = settings
        self._policy = policy
        self._stopping = stopping  # set on shutdown: no more waiting in the worker
        # A bulk job waiting for its turn in the rate's bulk line is due again this long
        # before the turn (the scheduler looks once a scheduler_interval), and waits the
        # rest in its delivery; bulk deliveries wait no longer than that for the rate, so
        # an interactive ticket never waits long for a thread.
        self._bulk_rate_wait = min(settings.scheduler_interval + 1.0, settings.inprocess_max_delay)
        self._come_back_lead = min(settings.scheduler_interval + 0.5, 0.75 * self._bulk_rate_wait)

    def bulk_hold(self, spent: float) -> float:
        """Seconds a bulk job of a delivery that has run ``spent`` may still wait in it for
        the rate; a longer wait is a turn in the bulk line (see ``worker/ratelimit.py``)."""
        if self._stopping.is_set():
            return 0.0
        return max(self._bulk_rate_wait - spent, 0.0)

    def before_sending(self, job: Job) -> Transition | None:
        """A job that has used every attempt is not sent again."""
        if job.total_attempts >= self._settings.max_attempts:
            return self.give_up(job, None)
        return None

    def not_admitted(
        self, job: Job, admission: Admission, spent: float, refusal: Refusal | None = None
    ) -> Decision:
        """The limits said wait: in this delivery if the wait is short, else hand back.
        ``refusal`` is StackOne's last word on the key, when it is the key that waits."""
        if admission.reason is Reason.KEY_REFUSED:
            said = f" ({refusal.status}: {refusal.message})" if refusal else ""
            error = JobError(
                kind=ErrorKind.BAD_CREDENTIALS,
                status=refusal.status if refusal else None,
                message=f"waiting: StackOne refused the API key{said}; one request will try "
                "it again when the pause ends",
            )
            return self._wait(job, error, admission.wait + self._policy.delay_for(1, None))
        reason = admission.reason.name.lower().replace("_", " ")
        message = f"waiting for the rate limit ({reason}, {admission.wait:.1f}s)"
        error = JobError(kind=ErrorKind.RETRYABLE, message=message)
        if job.claim.lane == "bulk" and admission.reason is Reason.RATE:
            if admission.wait <= self.bulk_hold(spent):
                return Again(admission.wait)
            # Its turn in the bulk line: back on the queue a little before it comes.
            return self._wait(job, error, max(admission.wait - self._come_back_lead, 0.0))
        if self._waits_in_process(admission.wait, spent):
            return Again(admission.wait)
        return self._wait(job, error, admission.wait)

    def answered(self, job: Job, outcome: Outcome, spent: float) -> Decision:
        """StackOne answered (or the network failed): what now."""
        if isinstance(outcome, Created):
            return succeeded(job.claim, job.spec, outcome.ticket, job.attempts)
        error = outcome.to_error()
        if outcome.status == 429:
            job.attempts -= 1  # not the job's failure: StackOne asked everyone to wait
            pause = outcome.retry_after if outcome.retry_after is not None else DEFAULT_429_PAUSE
            return self._wait(job, error, pause)
        if outcome.kind is ErrorKind.BAD_CREDENTIALS:
            job.attempts -= 1  # the key, not the job
            return self._wait(job, error, self._settings.auth_pause)
        if outcome.kind in (ErrorKind.TERMINAL, ErrorKind.INVALID):
            return failed(job.claim, job.spec, error, job.attempts)
        if outcome.kind is ErrorKind.AMBIGUOUS:
            job.uncertain_since, job.settled = job.sent_at, False
            if self._settings.on_ambiguous == "park":
                return self.park(job, error.message)
        if job.total_attempts >= self._settings.max_attempts:
            return self.give_up(job, error)
        delay = self._policy.delay_for(job.total_attempts, outcome.retry_after)
        if self._policy.is_retryable(outcome) and self._waits_in_process(delay, spent):
            return Again(delay)
        return self._wait(job, error, delay)

    def give_up(self, job: Job, last: JobError | None) -> Transition:
        if job.uncertain_since is not None or last is None:
            why = last.message if last else "the worker was lost during the last attempt"
            return self.park(job, f"all {job.total_attempts} attempts used; {why}")
        error = last.model_copy(
            update={
                "kind": ErrorKind.EXHAUSTED,
                "message": f"gave up after {job.total_attempts} attempts; "
                f"last error: {last.message}",
            }
        )
        return failed(job.claim, job.spec, error, job.attempts)

    def park(self, job: Job, why: str) -> Transition:
        """Leave the decision to a person: the ticket may or may not exist."""
        error = JobError(kind=ErrorKind.UNCERTAIN, message=f"the ticket may exist: {why}")
        return failed(job.claim, job.spec, error, job.attempts)

    def _wait(self, job: Job, error: JobError, delay: float) -> Transition:
        return retrying(
            job.claim,
            job.spec,
            error,
            delay,
            job.attempts,
            uncertain_since=job.uncertain_since,
            settled=job.settled and job.uncertain_since is None,
        )

    def _waits_in_process(self, delay: float, spent: float) -> bool:
        """A delivery waits in its worker slot for at most ``inprocess_max_delay`` in all,
        and not at all once the worker is stopping."""
        return not self._stopping.is_set() and spent + delay <= self._settings.inprocess_max_delay
