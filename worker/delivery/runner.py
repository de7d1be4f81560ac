"""One delivery: a batch of job ids (one for interactive jobs, many for bulk), taken from
claim to recorded outcome with as few round trips as the batch allows.

The runner does the I/O and the decisions (``worker/delivery/decisions.py``) say what it
means: claim the batch and decide each job (reconciling an uncertain one first if asked),
then turn by turn: admit the jobs whose time has come through the shared limiter (one
pipeline) and send the admitted ones on the worker's event loop without waiting for their
answers, so a job whose moment comes while earlier answers are out goes at its moment;
decide each answer as it comes, perform the effects the decisions name (pauses, the key's
health, an outage) and record the outcomes (one pipeline for those that came together).
A job its account's cap holds back follows a slot the process holds and goes the moment
that slot's request is answered (``worker/delivery/slots.py``). Jobs told to wait briefly
go round again; the rest are handed back to wait in the due index, so a worker slot never
sleeps for long. Only the runner reads the clock: it times each request, and every
answered one is a line of the log and a count in the process's metrics
(``worker/delivery/attempt.py``, ``worker/delivery/metrics.py``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, assert_never

from pydantic import ValidationError

from worker.contract import ErrorKind, JobError, JobState, TicketCreate
from worker.delivery.attempt import Attempt
from worker.delivery.decisions import (
    LINED,
    Again,
    Decision,
    Decisions,
    Effect,
    Job,
    KeyAccepted,
    KeyFailing,
    KeyRefused,
    Moment,
    PauseAccount,
    PauseKey,
    Reconcile,
)
from worker.delivery.loop import EventLoop
from worker.delivery.matching import Marker
from worker.delivery.metrics import ReconcileResult, WorkerMetrics
from worker.delivery.reconcile import Candidates, Found, Lookup, TicketLister, find_candidates
from worker.delivery.slots import Answered, Follower, Inbox, SlotPool, Unsent
from worker.limits.keyhealth import KeyHealth, KeyRefusal
from worker.limits.outage import KeyOutage
from worker.limits.rate import LATE, Admission, Limiter, Reason, Request, Standing
from worker.settings import LEASE_SLACK, Settings
from worker.stackone.answers import Answer, Failure
from worker.store.jobs import (
    Claim,
    ClaimCode,
    JobStore,
    NotClaimed,
    Recorded,
    Transition,
    failed,
    spec_from_claim,
)
from worker.text import printable
from worker.validation import describe_validation_error

log = logging.getLogger("ticketq.worker")  # outside text goes in through ``printable``
# What the log says when reconciliation settles an uncertain job (operators and the chaos
# tests look for these).
ADOPTED = "adopted existing ticket"
RESENT = "no ticket found since the uncertain attempt; sending again"
CANCELLED = "cancelled as asked while it was in flight, once handed back unsent"
CUT_SHORT = "the listing of tickets since the uncertain attempt was read only in part"

Waiting = list[tuple[Job, float]]  # jobs to send in this delivery, seconds from now
# How much each request's latency moves the process's estimate of StackOne's.
LATENCY_WEIGHT = 0.1
# While its answers are out, how often a delivery with jobs waiting for a slot of their
# account looks for one that another delivery freed (seconds).
SLOT_LOOK = 0.05
# Jobs whose moments fall this close after the first of them go in the same round, at the
# last one's moment: one round (an admission call, a send, a record) per group rather than
# per job. None goes early; the first goes at most this late, inside ``LATE`` (past it, a
# moment lapses and its job asks again) with 0.1 s to spare for a late wake-up, and within
# the margin the rate keeps for lateness (``SAFETY_MARGIN``: about 0.9 s). At 1,000/min a
# group is about 7 jobs: 0.4 s took 12% less worker CPU a ticket than 0.25 s.
GROUP = 0.4


class TicketApi(TicketLister, Protocol):
    """What the runner needs of StackOne: create (never raises) and list, for reconciling."""

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer: ...


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        api: TicketApi,
        loop: EventLoop,
        limiter: Limiter,
        decisions: Decisions,
        key_health: KeyHealth,
        outage: KeyOutage,
        stopping: threading.Event,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._api = api
        self._loop = loop
        self._limiter = limiter
        self._decisions = decisions
        self._key_health = key_health
        self._outage = outage
        self._stopping = stopping  # set on shutdown: no more waiting in the worker
        self.metrics = metrics or WorkerMetrics()
        self._marker = Marker.of(settings.mark_tickets)
        self._began = 0.0
        self._latency = 0.0  # StackOne's, a moving average of what this process saw
        self._slots = SlotPool(self._timed, stopping)
        # One admission round at a time in the process, each counting the slots it took
        # here before the next reads them: a job the cap holds back then follows a slot
        # an earlier round admitted, rather than waiting for a slot to come free.
        self._admitting = threading.Lock()
        self._lines = limiter.line_up(LINED.model_dump_json())

    def run(self, job_ids: Sequence[str]) -> None:
        """Claim the jobs, then turn by turn: send the jobs whose time has come while the
        answers of earlier ones are still out, and decide and record each answer as it
        comes, until every job has its outcome or is handed back."""
        started = time.monotonic()
        self._began = time.time()  # every request of this delivery went out after this
        inbox = Inbox()
        waiting = self._claimed(job_ids, started)
        while waiting or inbox.out:
            delay = _next_group(waiting) if waiting else math.inf
            if delay > 0 and inbox.out:
                waiting = self._answered(inbox, waiting, delay, started)
                continue
            if delay > 0:
                waiting, delay = self._pause(delay, waiting)
            ready = [job for job, wait in waiting if wait <= delay]
            later = [(job, wait - delay) for job, wait in waiting if wait > delay]
            waiting = later + self._round(ready, started, inbox)

    def _pause(self, delay: float, waiting: Waiting) -> tuple[Waiting, float]:
        """Wait ``delay`` seconds, until the first job is due; returns the jobs and the
        seconds waited. Jobs held back only by their account's cap wait for its slots
        instead (a semaphore's waiters, not a poll): once some came free, all of the
        account's are due at once (those beyond the slots follow them on the slots,
        ``Reason.FOLLOWS``), and the rest have waited that much less."""
        wanted = _slot_waiters(waiting)
        if not wanted:
            time.sleep(delay)
            return waiting, delay
        began = time.monotonic()
        freed = self._limiter.wait_for_slots(wanted, delay)
        if freed is None:
            return waiting, delay
        return _woken(waiting, {freed[0]}, 0.0), min(time.monotonic() - began, delay)

    def _moment(self, spent: float) -> Moment:
        """Now, for a decision of a delivery that has run ``spent`` seconds (a round's
        decisions all count the time spent before the round)."""
        return Moment(now=time.time(), spent=spent, stopping=self._stopping.is_set())

    def _claimed(self, job_ids: Sequence[str], started: float) -> Waiting:
        """Claim the batch and decide each claimed job; returns those to send."""
        outcomes: list[Transition] = []
        ready: Waiting = []
        lookups: list[Reconcile] = []
        for claim in self._store.claim_many(job_ids, self._lines):
            job = self._job(claim, outcomes)
            if job is None:
                continue
            decision = self._decisions.after_claiming(job, self._moment(time.monotonic() - started))
            if isinstance(decision, Reconcile):
                lookups.append(decision)
            else:
                self._follow(decision, outcomes, ready)
        for decision in self._reconciled(lookups, started):
            self._follow(decision, outcomes, ready)
        self._record(outcomes, ready, started)
        return ready

    def _job(self, claim: Claim | NotClaimed, outcomes: list[Transition]) -> Job | None:
        """The claimed job, or None (not claimed, or its stored spec no longer valid)."""
        if isinstance(claim, NotClaimed) and claim.code is ClaimCode.LINED:
            self.metrics.waited(Reason.LINE, int(claim.detail) / 1e6)
            return None
        if isinstance(claim, NotClaimed):
            # A redelivery of a finished job, one still leased by another worker, or an
            # early stray message: sending now could make a second ticket, so do nothing.
            log.debug("job not attempted: %s %s", claim.code, printable(claim.detail))
            return None
        try:
            spec = spec_from_claim(claim)
        except ValidationError as exc:
            error = JobError(kind=ErrorKind.INVALID, message=describe_validation_error(exc))
            outcomes.append(failed(claim, None, error, 0))
            return None
        return Job(claim, spec, claim.uncertain_since, failing_since=claim.failing_since)

    def _reconciled(self, asked: list[Reconcile], started: float) -> list[Decision]:
        """Look among StackOne's tickets for the ones earlier attempts may have made (one
        listing per account) and decide each job; an adoption is recorded at once, so
        that the ticket is this job's before any other job looks."""
        if not asked:
            return []
        lookups = [Lookup(ask.job.claim.job_id, ask.job.spec, ask.since) for ask in asked]
        pages = self._settings.reconcile_pages
        found = self._loop.run(
            find_candidates(self._api, self._store, lookups, pages, self._marker)
        )
        decisions = []
        for ask in asked:
            decision = self._settled(ask.job, found[ask.job.claim.job_id], started)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _settled(self, job: Job, found: Found, started: float) -> Decision | None:
        """The job's decision after reconciling; None once an adoption is recorded. A
        ticket another job took first is struck off and the next candidate tried."""
        job_id = printable(job.claim.job_id)
        while True:
            decision = self._decisions.after_reconciling(
                job, found, self._moment(time.monotonic() - started)
            )
            adoption = decision.step
            if not isinstance(found, Candidates) or not isinstance(adoption, Transition):
                break
            if adoption.ticket is None:
                break
            result = self._store.apply([_with_history(adoption, decision.job)])[0]
            if result is not Recorded.TAKEN:
                if result is Recorded.OK:
                    log.info("job %s: %s %s", job_id, ADOPTED, printable(adoption.ticket.id))
                    self.metrics.reconciled(ReconcileResult.ADOPTED)
                else:
                    _not_recorded(adoption, result)
                return None
            found = found.without(adoption.ticket.id)
        if isinstance(found, Candidates):
            if not found.complete:
                log.warning("job %s: %s", job_id, CUT_SHORT)
            if isinstance(decision.step, Again):
                log.info("job %s: %s", job_id, RESENT)
        self.metrics.reconciled(_reconcile_result(found, decision))
        return decision

    def _round(self, jobs: list[Job], started: float, inbox: Inbox) -> Waiting:
        """Admit these jobs and send those admitted (their answers come to ``inbox``);
        returns those to try again."""
        spent = time.monotonic() - started
        if spent > LEASE_SLACK:
            # Renewed before they are sent: a job that waited its turn behind other jobs'
            # slow answers may have outlived its lease, and another delivery sends it now.
            jobs = self._renewed(jobs)
        with self._admitting:
            admissions = self._admissions(jobs, spent)
            pairs = zip(jobs, admissions, strict=True)
            self._slots.hold([job for job, admission in pairs if admission.admitted])
        refusal = self._refusal(admissions)
        moment = self._moment(spent)
        again: Waiting = []
        following: list[Follower] = []  # each on a slot of its account, once one is free
        outcomes: list[Transition] = []
        admitted: list[tuple[Job, bool]] = []  # with whether it is the key's probe
        for job, admission in zip(jobs, admissions, strict=True):
            if admission.admitted:
                admitted.append((job, admission.reason is Reason.PROBE))
                continue
            self.metrics.waited(admission.reason, admission.wait)
            decision = self._decisions.not_admitted(job, admission, refusal, moment)
            if admission.reason is Reason.FOLLOWS and isinstance(decision.step, Again):
                due = moment.now + decision.step.delay
                following.append(Follower(due, decision.job, inbox))
            else:
                self._follow(decision, outcomes, again)
        self._record(outcomes, again, started)
        if admitted or following:
            at = time.time()
            first = [job.sent(at, probe) for job, probe in admitted]
            inbox.out += len(first) + len(following)
            self._loop.submit(self._slots.launch(first, following, inbox))
        return again

    def _answered(self, inbox: Inbox, waiting: Waiting, delay: float, started: float) -> Waiting:
        """Wait at most ``delay`` seconds for answers; decide and record those that came
        (an outcome passes its slot to the job that went on it after, if one did). Once a
        slot of an account comes free, this delivery's jobs waiting for one ask at once;
        they also take one that another delivery's answer freed: the wait for answers is
        cut into ``SLOT_LOOK`` waits for such a slot. Followers that did not go are due
        again at their moments. Returns the jobs to send, each with the seconds until it
        is due."""
        began = time.monotonic()
        outcomes: list[Transition] = []
        again: Waiting = []
        freed: set[str] = set()
        wanted = _slot_waiters(waiting)
        arrived = inbox.take(0.0 if wanted else delay)
        if wanted and not arrived:
            slots = self._limiter.wait_for_slots(wanted, min(delay, SLOT_LOOK))
            freed |= {slots[0]} if slots else set()
            arrived = inbox.take(0.0)
        for item in arrived:
            match item:
                case Unsent(job, wait):
                    again.append((job, wait))
                case Answered(job, answer, latency, successor):
                    moment = self._moment(time.monotonic() - started)
                    decision = self._decisions.answered(job, answer, moment)
                    attempt = Attempt.of(job, answer, decision, latency, moment.now)
                    self._attempted(attempt)
                    decision = replace(decision, job=decision.job.answered(attempt.entry()))
                    if successor is None:
                        freed.add(job.spec.account_id)
                    elif isinstance(decision.step, Transition):
                        passed = replace(decision.step, successor=successor)
                        decision = replace(decision, step=passed)
                    self._follow(decision, outcomes, again)
        self._record(outcomes, again, started)
        return _woken(waiting, freed, time.monotonic() - began) + again

    def _admissions(self, jobs: list[Job], spent: float) -> list[Admission]:
        """Each job's admission, in one round (``Limiter.admit_many``): a job whose
        reserved moment has come asks only for its account's slot; one whose moment lapsed
        keeps its place past the line."""
        moment = self._moment(spent)
        return self._limiter.admit_many(
            [
                Request(
                    job.spec.account_id,
                    job.claim.lane,
                    job.claim.token,
                    job.claim.job_id,
                    _standing(job, moment.now),
                    self._slots.held(job.spec.account_id),
                )
                for job in jobs
            ],
            holds=self._decisions.holds(moment),
            follow=self._followers_per_slot(),
        )

    def _followers_per_slot(self) -> int:
        """How many jobs may follow each slot: as many as go one after another on it
        within ``LATE`` of their moment, at StackOne's latency as last seen."""
        return int(LATE / self._latency) if self._latency > 0 else 1

    def _attempted(self, attempt: Attempt) -> None:
        """The attempt's log line (the message renders itself only if written) and counts."""
        log.log(attempt.level, attempt)
        self.metrics.attempted(attempt)

    def _refusal(self, admissions: list[Admission]) -> KeyRefusal | None:
        """StackOne's last word on the key, if the key held any job back."""
        if not any(admission.reason is Reason.KEY_REFUSED for admission in admissions):
            return None
        self._key_health.noticed()
        return self._key_health.refusal()

    async def _timed(self, job: Job) -> tuple[Answer, float]:
        began = time.perf_counter()
        answer = await self._api.create_ticket(job.spec.account_id, self._body(job))
        latency = time.perf_counter() - began
        known = self._latency or latency
        self._latency = known + LATENCY_WEIGHT * (latency - known)
        return answer, latency

    def _body(self, job: Job) -> TicketCreate:
        """What is sent: the job's ticket, with its marker if tickets are marked."""
        if self._marker is None:
            return job.spec.ticket
        return self._marker.apply(job.spec.ticket, job.claim.job_id)

    def _follow(self, decision: Decision, outcomes: list[Transition], again: Waiting) -> None:
        """Perform the decision's effects, then keep the job to record or to send again."""
        for effect in decision.effects:
            self._perform(effect)
        if isinstance(decision.step, Again):
            again.append((decision.job, decision.step.delay))
        else:
            outcomes.append(_with_history(decision.step, decision.job))

    def _perform(self, effect: Effect) -> None:
        match effect:
            case PauseKey(seconds):
                self._limiter.pause_key(seconds)
            case PauseAccount(account_id, seconds):
                self._limiter.pause_account(account_id, seconds)
            case KeyRefused(status, message, at):
                self._key_health.refused(status, message, at)
            case KeyAccepted(probe):
                self._key_health.accepted(probe=probe)
                self._outage.works(probe)
            case KeyFailing(probe, message):
                self._outage.failed(probe, message)
            case _:
                assert_never(effect)

    def _renewed(self, jobs: list[Job]) -> list[Job]:
        """The jobs whose leases this delivery still holds, each renewed for one more
        request and wait (one round trip); a job another delivery took over is dropped
        unsent."""
        lost = self._store.renew([job.claim for job in jobs])
        for job_id in lost:
            log.warning("job %s: lease lost to another delivery", printable(job_id))
        return [job for job in jobs if job.claim.job_id not in lost]

    def _record(self, outcomes: list[Transition], again: Waiting, started: float) -> None:
        """Record the outcomes (one pipeline). A created ticket that another job adopted
        first (identical content: it took this one for its own) leaves this job looking
        for its interchangeable twin, as if its answer had been lost."""
        while outcomes:
            taken, cancelling = [], []
            for change, result in zip(outcomes, self._store.apply(outcomes), strict=True):
                if result is Recorded.OK:
                    _recorded(change)
                elif result is Recorded.TAKEN:
                    taken.append(self._looking_again(change))
                elif result is Recorded.CANCEL_ASKED:
                    cancelling.append(change.claim.job_id)
                else:
                    _not_recorded(change, result)
            self._cancel(cancelling)
            outcomes = []
            for decision in self._reconciled(taken, started):
                self._follow(decision, outcomes, again)

    def _cancel(self, job_ids: list[str]) -> None:
        """Jobs a person cancelled while they were in flight, now handed back unsent."""
        if not job_ids:
            return
        for done in self._store.cancel_many(job_ids):
            log.info("job %s: %s (%s)", printable(done.job_id), CANCELLED, done.code)

    def _looking_again(self, change: Transition) -> Reconcile:
        """A job whose created ticket is taken, to reconcile. The twin it looks for is the
        ticket of the job that took its own, whose attempt may have begun up to the
        settle time before this delivery did."""
        assert change.spec is not None  # a succeeded outcome always has its job's spec
        log.warning(
            "job %s: its ticket %s was adopted by another job; looking for its own",
            printable(change.claim.job_id),
            printable(change.ticket.id if change.ticket else ""),
        )
        job = Job(
            change.claim,
            change.spec,
            uncertain_since=self._began,
            attempts=change.attempts,
            failing_since=change.claim.failing_since,
            tried=change.tried,
        )
        return Reconcile(job, self._began - self._settings.reconcile_settle)


def _slot_waiters(waiting: Waiting) -> Counter[str]:
    """How many jobs wait for a slot of each account."""
    return Counter(job.spec.account_id for job, _ in waiting if job.awaits_slot)


def _woken(waiting: Waiting, freed: set[str], waited: float) -> Waiting:
    """The jobs after ``waited`` seconds in which slots of the ``freed`` accounts came
    free: each of those accounts' jobs waiting for a slot is due at once (those beyond the
    slots follow them, ``Reason.FOLLOWS``)."""
    return [
        (job, 0.0 if job.awaits_slot and job.spec.account_id in freed else wait - waited)
        for job, wait in waiting
    ]


def _standing(job: Job, now: float) -> Standing:
    """Where the job stands towards its lane's line as it asks to go."""
    if job.reserved(now):
        return Standing.MOMENT
    return Standing.PASSED if job.reserved_until else Standing.FRESH


def _next_group(waiting: Waiting) -> float:
    """How long to sleep before the next round: until the first wait, or, if that is a
    reserved moment, until the last moment within ``GROUP`` of it (every job due already,
    whose wait is 0 or past, goes at once; other waits, such as a retry's, keep their own
    time)."""
    first_job, first = min(waiting, key=lambda entry: entry[1])
    if first <= 0:
        return 0.0
    if not first_job.reserved_until:
        return first
    return max(wait for job, wait in waiting if job.reserved_until and wait <= first + GROUP)


def _with_history(outcome: Transition, job: Job) -> Transition:
    """The job's outcome, carrying its requests of this delivery (in-delivery retries'
    too) to its record's history, in the same script call."""
    return replace(outcome, tried=job.tried)


def _reconcile_result(found: Found, decision: Decision) -> ReconcileResult:
    """What reconciling came to, when it did not adopt a ticket."""
    step = decision.step
    if isinstance(found, Failure):
        return ReconcileResult.UNREADABLE
    if isinstance(step, Again):
        return ReconcileResult.RESENT
    if step.state is JobState.FAILED:
        return ReconcileResult.TO_PERSON
    return ReconcileResult.WAITING


def _recorded(change: Transition) -> None:
    job_id = printable(change.claim.job_id)
    log.debug("job %s %s", job_id, change.state)
    if change.state == "failed" and change.error is not None:
        log.info("job %s failed: %s", job_id, printable(change.error.message))


def _not_recorded(change: Transition, result: Recorded) -> None:
    """Our lease ran out and another delivery took over; its outcome stands."""
    log.warning(
        "job %s: outcome %s not recorded: %s",
        printable(change.claim.job_id),
        change.state,
        result,
    )
