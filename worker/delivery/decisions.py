"""What becomes of one job in a delivery: pure functions of the job, what just happened and
the moment, with no I/O, no clock and no shared state.

The runner (``worker/delivery/runner.py``) asks at each moment of a delivery: after
claiming a job, after reconciling an uncertain one, when the limits did not admit it, and
when StackOne answered. Each answer is a ``Decision``: the job as it now stands, what to do
with it (a ``Transition`` to record, or ``Again``: send it in this delivery after a short
wait) and the effects beyond the job for the runner to perform (pause a scope, mark the key
refused, failing or accepted). Every rule of the README's answer table lives here once, so a batch
of one and a batch of fifty take the same decisions, and the table is tested without Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.contract import AttemptEntry, ErrorKind, JobError, JobSpec
from worker.delivery.reconcile import Found
from worker.delivery.retry import RetryPolicy, parse_retry_after
from worker.limits.keyhealth import KeyRefusal
from worker.limits.rate import LATE, Admission, Reason
from worker.settings import Settings
from worker.stackone.answers import Answer, Failure, TicketCreated
from worker.store.jobs import Claim, Lane, Transition, failed, retrying, succeeded

# StackOne documents Retry-After on every 429; if one ever comes without, wait this long.
DEFAULT_429_PAUSE = 10.0
# Ticket ids named in the error of a job only a person can reconcile.
MAYBE_SHOWN = 10
IN_LINE = "waiting for its turn under the rate limit (in its lane's fair line)"
LINED = JobError(kind=ErrorKind.RETRYABLE, message=IN_LINE)  # a job the limit put in its line


@dataclass(frozen=True)
class Job:
    """One claimed job during its delivery; decisions return a changed copy, never mutate."""

    claim: Claim
    spec: JobSpec
    uncertain_since: float | None  # an attempt since then may have created the ticket
    settled: bool = False  # reconciliation found no ticket: no longer uncertain once sent
    attempts: int = 0  # requests in this delivery that count against the job
    sent_at: float = 0.0  # when its latest request went out (Unix seconds)
    probe: bool = False  # its request finds out whether the key works again (refused, outage)
    failing_since: float | None = None  # its first failed attempt: the retry budget runs since
    # Held back only by its account's cap: a slot of the account freed ends its wait.
    awaits_slot: bool = False
    # Its answered requests in this delivery, for the record's history with its next outcome.
    tried: tuple[AttemptEntry, ...] = ()
    # The limiter gave it a moment: at it, only its account's slot is asked for, if it is
    # no later than this (Unix seconds; 0: no moment reserved).
    reserved_until: float = 0.0

    @property
    def total_attempts(self) -> int:
        return self.claim.attempts + self.attempts

    def sent(self, at: float, probe: bool) -> Job:
        """The job once its request went out at ``at``: one more attempt, counted until an
        answer says it was not the job's fault."""
        return replace(
            self,
            attempts=self.attempts + 1,
            sent_at=at,
            probe=probe,
            reserved_until=0.0,
            awaits_slot=False,
        )

    def reserved(self, now: float) -> bool:
        """Its reserved moment is still good: the rate need not be asked again."""
        return now <= self.reserved_until

    def answered(self, entry: AttemptEntry) -> Job:
        """The job with its latest request's answer in its history."""
        return replace(self, tried=(*self.tried, entry))


@dataclass(frozen=True)
class Moment:
    """When a decision is taken: the clock and the delivery's state, read by the runner."""

    now: float  # Unix seconds
    spent: float  # seconds this delivery has run so far
    stopping: bool  # the worker is shutting down: no more waiting in it


@dataclass(frozen=True)
class Again:
    """Send this job in this delivery, ``delay`` seconds from now."""

    delay: float


@dataclass(frozen=True)
class PauseKey:
    """Every worker stops sending with the API key for ``seconds`` (StackOne's 429)."""

    seconds: float


@dataclass(frozen=True)
class PauseAccount:
    """Every worker stops sending for this linked account (its provider's 429)."""

    account_id: str
    seconds: float


@dataclass(frozen=True)
class KeyRefused:
    """StackOne refused the API key (401/403) at ``at`` (Unix seconds)."""

    status: int | None
    message: str
    at: float


@dataclass(frozen=True)
class KeyAccepted:
    """A request with the key went through; ``probe``: it was the one testing the key (after
    a refusal or during an outage)."""

    probe: bool


@dataclass(frozen=True)
class KeyFailing:
    """A request with the key failed with a 5xx or a connection error: towards an outage,
    or, for the probe of one, a longer pause."""

    probe: bool
    message: str


Effect = PauseKey | PauseAccount | KeyRefused | KeyAccepted | KeyFailing


@dataclass(frozen=True)
class Decision:
    """The job as it now stands, what to do with it, and what to do beyond it."""

    job: Job
    step: Transition | Again
    effects: tuple[Effect, ...] = ()


@dataclass(frozen=True)
class Reconcile:
    """Before sending, look for the ticket an attempt since ``since`` may have created, and
    ask ``Decisions.after_reconciling`` with what was found."""

    job: Job
    since: float


class Decisions:
    """The rules (settings and the retry policy) and one decision per moment of a delivery."""

    def __init__(self, settings: Settings, policy: RetryPolicy) -> None:
        self._policy = policy
        self._max_attempts = settings.max_attempts  # 0: no cap, the time budget decides
        self._retry_for = settings.retry_for
        self._inprocess_max_delay = settings.inprocess_max_delay
        self._auth_pause = settings.auth_pause
        self._longest_wait = settings.backoff_max
        self._on_ambiguous = settings.on_ambiguous
        self._settle = settings.reconcile_settle
        # Bulk deliveries wait no longer than this for the rate (their jobs join the line
        # instead), so an interactive ticket never waits long for a thread.
        self._bulk_rate_wait = min(settings.scheduler_interval + 1.0, settings.inprocess_max_delay)

    def holds(self, moment: Moment) -> dict[Lane, float]:
        """Seconds a job of each lane may still wait in this delivery for its moment under
        the rate; one held back longer joins its lane's line (``worker/limits/rate.py``)."""
        if moment.stopping:
            return {"interactive": 0.0, "bulk": 0.0}
        return {
            "interactive": max(self._inprocess_max_delay - moment.spent, 0.0),
            "bulk": max(self._bulk_rate_wait - moment.spent, 0.0),
        }

    def after_claiming(self, job: Job, moment: Moment) -> Decision | Reconcile:
        """A job just claimed: an uncertain one follows the ambiguity policy (a replayed one
        is always reconciled first); any other is sent unless it has used the attempts a
        ``max_attempts`` cap allows. An expired retry budget is only ever found by a failure:
        a job is never given up without a last try."""
        if job.uncertain_since is not None:
            policy = "reconcile" if job.claim.reconcile_first else self._on_ambiguous
            if policy == "park":
                return Decision(job, self._park(job, "an earlier attempt may have made it"))
            if policy == "reconcile":
                return Reconcile(job, job.uncertain_since)
        return self._ready(job)

    def after_reconciling(self, job: Job, found: Found, moment: Moment) -> Decision:
        """What the account's listing holds for an uncertain job: a ticket that is the
        same as the job's (adopt it; the runner tries the next if another job takes it
        first); else, until ``reconcile_settle`` after the attempt, look again later (the
        listing lags); then tickets only a person can tell from the job's fail it
        ``uncertain``, naming them, and no candidate at all sends it again. A listing that
        could not be read leaves the job uncertain, to look again later."""
        if isinstance(found, Failure):
            error = found.to_error().model_copy(
                update={"message": f"reconciling before sending again: {found.message}"}
            )
            asked = parse_retry_after(found.retry_after, moment.now)
            delay = self._policy.delay_for(max(job.claim.attempts, 1), asked)
            return Decision(job, self._wait(job, error, delay, moment))
        if found.same:
            return Decision(job, succeeded(job.claim, job.spec, found.same[0], job.attempts))
        since = job.uncertain_since if job.uncertain_since is not None else moment.now
        waited = moment.now - since
        if waited < self._settle:
            # Its own ticket may not be listed yet: look again before any other step.
            then = "asking a person" if found.maybe else "sending again"
            error = JobError(
                kind=ErrorKind.AMBIGUOUS,
                message="the ticket may exist but StackOne does not list it (yet): looking "
                f"again, then {then} {_duration(self._settle)} after the attempt",
            )
            delay = min(self._settle - waited, max(waited, 1.0))
            return Decision(job, self._wait(job, error, delay, moment))
        if found.maybe:
            return Decision(job, self._park(job, _only_a_person(found.maybe)))
        return self._ready(replace(job, uncertain_since=None, settled=True))

    def not_admitted(
        self, job: Job, admission: Admission, refusal: KeyRefusal | None, moment: Moment
    ) -> Decision:
        """The limits said wait: in this delivery if the wait is short, else hand back.
        ``refusal`` is StackOne's last word on the key, when it is the key that waits.
        A job held back only by its account's cap waits in its delivery for a slot of the
        account, as long as the delivery may wait: the runner sends it as soon as one comes
        free (the cap's own wait, at most a second, is then only how long a job handed back
        waits)."""
        job = replace(job, awaits_slot=admission.reason is Reason.ACCOUNT_BUSY)
        if admission.reason is Reason.KEY_REFUSED:
            said = f" ({refusal.status}: {refusal.message})" if refusal else ""
            error = JobError(
                kind=ErrorKind.BAD_CREDENTIALS,
                status=refusal.status if refusal else None,
                message=f"waiting: StackOne refused the API key{said}; one request will try "
                "it again when the pause ends",
            )
            delay = admission.wait + self._policy.delay_for(1, None)
            return Decision(job, self._wait(job, error, delay, moment))
        if admission.reason is Reason.OUTAGE:
            return self._held(job, admission, moment)
        if admission.reason is Reason.LINE:
            return Decision(job, self._wait(job, LINED, admission.wait, moment, held_back=True))
        reason = admission.reason.name.lower().replace("_", " ")
        message = f"waiting for the rate limit ({reason}, {admission.wait:.1f}s)"
        error = JobError(kind=ErrorKind.RETRYABLE, message=message)
        if admission.reason in (Reason.RESERVED, Reason.FOLLOWS):
            # Its moment is set (a follower's: its slot's request answered, if later).
            if moment.stopping:
                return Decision(job, self._wait(job, error, admission.wait, moment, held_back=True))
            until = moment.now + admission.wait + LATE
            if admission.reason is Reason.FOLLOWS and job.reserved(moment.now):
                until = job.reserved_until  # its moment came already: no later than it was
            return Decision(replace(job, reserved_until=until), Again(admission.wait))
        if self._waits_in_process(admission.wait, moment):
            if job.awaits_slot:
                return Decision(job, Again(self._inprocess_max_delay - moment.spent))
            return Decision(job, Again(admission.wait))
        return Decision(job, self._wait(job, error, admission.wait, moment))

    def answered(self, job: Job, answer: Answer, moment: Moment) -> Decision:
        """StackOne answered (or the network failed) the request ``job`` sent: what now."""
        if isinstance(answer, TicketCreated):
            done = succeeded(job.claim, job.spec, answer.ticket, job.attempts)
            return Decision(job, done, (KeyAccepted(job.probe),))
        if answer.status == 429:
            return self._throttled(job, answer, moment)
        if answer.kind is ErrorKind.BAD_CREDENTIALS:
            return self._refused(job, answer, moment)
        error = answer.to_error()
        if answer.kind in (ErrorKind.TERMINAL, ErrorKind.INVALID):
            return Decision(job, failed(job.claim, job.spec, error, job.attempts))
        effects: tuple[Effect, ...] = ()
        if answer.kind is ErrorKind.RETRYABLE:
            effects = (KeyFailing(job.probe, error.message),)
        if answer.kind is ErrorKind.AMBIGUOUS:
            job = replace(job, uncertain_since=job.sent_at, settled=False)
            if self._on_ambiguous == "park":
                return Decision(job, self._park(job, error.message))
        if job.failing_since is None:
            job = replace(job, failing_since=job.sent_at)
        if self._used_up(job) or self._out_of_time(job, moment):
            return Decision(job, self._give_up(job, error, moment), effects)
        asked = parse_retry_after(answer.retry_after, moment.now)
        delay = self._policy.delay_for(job.total_attempts, asked)
        if self._policy.is_retryable(answer) and self._waits_in_process(delay, moment):
            return Decision(job, Again(delay), effects)
        return Decision(job, self._wait(job, error, delay, moment), effects)

    def _throttled(self, job: Job, answer: Failure, moment: Moment) -> Decision:
        """A 429 is not the job's failure: StackOne asked everyone to wait. Only the linked
        account waits when its provider is the one limiting (``provider_errors``). No pause
        outlasts ``backoff_max``: a Retry-After of years must not stop the key for years."""
        job = replace(job, attempts=job.attempts - 1)
        asked = parse_retry_after(answer.retry_after, moment.now)
        pause = min(asked if asked is not None else DEFAULT_429_PAUSE, self._longest_wait)
        scope: Effect = (
            PauseAccount(job.spec.account_id, pause) if answer.provider_errors else PauseKey(pause)
        )
        return Decision(job, self._wait(job, answer.to_error(), pause, moment), (scope,))

    def _refused(self, job: Job, answer: Failure, moment: Moment) -> Decision:
        """A refused key is the key's failure, not the job's: the job waits out the pause."""
        job = replace(job, attempts=job.attempts - 1)
        refused = KeyRefused(answer.status, answer.message, moment.now)
        waiting = self._wait(job, answer.to_error(), self._auth_pause, moment)
        return Decision(job, waiting, (refused,))

    def _held(self, job: Job, admission: Admission, moment: Moment) -> Decision:
        """StackOne is failing for the key: the job waits for the probe's answer without
        spending an attempt (a short wait in this delivery, a longer one as ``retrying``,
        spread by a backoff draw so the held jobs do not all come back at once)."""
        if self._waits_in_process(admission.wait, moment):
            return Decision(job, Again(admission.wait))
        error = JobError(
            kind=ErrorKind.RETRYABLE,
            message=f"waiting: StackOne is failing for every request with the API key "
            f"(outage); one request at a time tests it, next in {admission.wait:.1f}s",
        )
        delay = admission.wait + self._policy.delay_for(1, None)
        return Decision(job, self._wait(job, error, delay, moment))

    def _ready(self, job: Job) -> Decision:
        """Send the job now, unless it has used every attempt a cap allows."""
        if self._used_up(job):
            return Decision(job, self._give_up(job, None, None))
        return Decision(job, Again(0.0))

    def _used_up(self, job: Job) -> bool:
        """The optional cap on attempts (``max_attempts``, 0: none) is reached."""
        return 0 < self._max_attempts <= job.total_attempts

    def _out_of_time(self, job: Job, moment: Moment) -> bool:
        """The job's first failed attempt is older than the retry budget (``retry_for``)."""
        return job.failing_since is not None and moment.now - job.failing_since >= self._retry_for

    def _give_up(self, job: Job, last: JobError | None, moment: Moment | None) -> Transition:
        tried = f"{job.total_attempts} attempts"
        if moment is not None and job.failing_since is not None:
            tried += f" over {_duration(moment.now - job.failing_since)}"
        if job.uncertain_since is not None or last is None:
            why = last.message if last else "the worker was lost during the last attempt"
            return self._park(job, f"gave up after {tried}; {why}")
        error = last.model_copy(
            update={
                "kind": ErrorKind.EXHAUSTED,
                "message": f"gave up after {tried}; last error: {last.message}",
            }
        )
        return failed(job.claim, job.spec, error, job.attempts)

    def _park(self, job: Job, why: str) -> Transition:
        """Leave the decision to a person: the ticket may or may not exist."""
        error = JobError(kind=ErrorKind.UNCERTAIN, message=f"the ticket may exist: {why}")
        return failed(job.claim, job.spec, error, job.attempts)

    def _wait(
        self, job: Job, error: JobError, delay: float, moment: Moment, *, held_back: bool = False
    ) -> Transition:
        """Hand the job back, due ``delay`` seconds after the moment; ``held_back``: unsent,
        for its turn under the rate limit (the fleet's numbers count those apart)."""
        return retrying(
            job.claim,
            job.spec,
            error,
            due_at=moment.now + max(delay, 0.0),
            attempts=job.attempts,
            uncertain_since=job.uncertain_since,
            settled=job.settled and job.uncertain_since is None,
            failing_since=job.failing_since,
            held_back=held_back,
        )

    def _waits_in_process(self, delay: float, moment: Moment) -> bool:
        """A delivery waits in its worker slot for at most ``inprocess_max_delay`` in all,
        and not at all once the worker is stopping."""
        return not moment.stopping and moment.spent + delay <= self._inprocess_max_delay


def _only_a_person(ticket_ids: tuple[str, ...]) -> str:
    """Why a job with title-only candidates is left to a person, naming them."""
    shown = ", ".join(ticket_ids[:MAYBE_SHOWN])
    more = f" and {len(ticket_ids) - MAYBE_SHOWN} more" if len(ticket_ids) > MAYBE_SHOWN else ""
    return (
        f"StackOne lists {len(ticket_ids)} ticket(s) with the job's title but none of the "
        f"other fields it set, so which (if any) is the job's cannot be told: {shown}{more}"
    )


def _duration(seconds: float) -> str:
    """``95s``, ``12 min``, ``24.0 h``: how long a job kept retrying, for its last error."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
