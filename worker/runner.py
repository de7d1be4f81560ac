"""One delivery: a batch of job ids (one for interactive jobs, many for bulk), taken from
claim to recorded outcome with as few round trips as the batch allows.

Each round admits every waiting job through the shared limiter (one pipeline), sends the
admitted ones concurrently on the worker's event loop, decides each answer
(``worker/delivery.py``) and records the outcomes (one pipeline). Jobs told to wait briefly
go round again; the rest are handed back to wait in the due index, so a worker slot never
sleeps for long. Rarer paths (an uncertain job to reconcile first, an in-process retry's
lease renewal) cost their own round trips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from pydantic import ValidationError

from worker.contract import ErrorKind, JobError, TicketCreate
from worker.delivery import Again, Decisions, Job
from worker.engine import EventLoop
from worker.jobstore import (
    Claim,
    JobStore,
    LeaseLost,
    Refused,
    Transition,
    failed,
    retrying,
    spec_from_claim,
    succeeded,
)
from worker.keyhealth import KeyHealth
from worker.ratelimit import Limiter, Reason
from worker.reconcile import TicketLister, find_created
from worker.retry import RetryPolicy
from worker.settings import LEASE_SLACK, Settings
from worker.stackone import Created, Failed, Outcome
from worker.validation import describe_validation_error

log = logging.getLogger("ticketq.worker")
# What the log says when reconciliation settles an uncertain job (operators and the chaos
# tests look for these).
ADOPTED = "adopted existing ticket"
RESENT = "no ticket found since the uncertain attempt; sending again"


class TicketApi(TicketLister, Protocol):
    """What the runner needs of StackOne: create (never raises) and list, for reconciling."""

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Outcome: ...


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        api: TicketApi,
        loop: EventLoop,
        limiter: Limiter,
        decisions: Decisions,
        policy: RetryPolicy,
        key_health: KeyHealth,
    ) -> None:
        self._settings = settings
        self._store = store
        self._api = api
        self._loop = loop
        self._limiter = limiter
        self._decisions = decisions
        self._policy = policy
        self._key_health = key_health

    def run(self, job_ids: Sequence[str]) -> None:
        started = time.monotonic()
        outcomes: list[Transition] = []
        jobs = [
            job
            for claim in self._store.claim_many(job_ids)
            if (job := self._prepare(claim, outcomes)) is not None
        ]
        self._record(outcomes)
        waiting: list[tuple[Job, float]] = [(job, 0.0) for job in jobs]
        while waiting:
            delay = min(wait for _, wait in waiting)
            if delay > 0:
                time.sleep(delay)
            ready = [job for job, wait in waiting if wait <= delay]
            later = [(job, wait - delay) for job, wait in waiting if wait > delay]
            waiting = later + self._round(ready, started)

    def _prepare(self, claim: Claim | Refused, outcomes: list[Transition]) -> Job | None:
        """A claimed job ready to send, or None (refused, or already decided)."""
        if isinstance(claim, Refused):
            # A redelivery of a finished job, one still leased by another worker, or an
            # early stray message: sending now could make a second ticket, so do nothing.
            log.debug("job not attempted: %s %s", claim.reason, claim.detail)
            return None
        try:
            spec = spec_from_claim(claim)
        except ValidationError as exc:
            error = JobError(kind=ErrorKind.INVALID, message=describe_validation_error(exc))
            outcomes.append(failed(claim, None, error, 0))
            return None
        job = Job(claim, spec, claim.uncertain_since)
        if job.uncertain_since is not None and not self._settle_uncertainty(job, outcomes):
            return None
        decided = self._decisions.before_sending(job)
        if decided is not None:
            outcomes.append(decided)
            return None
        return job

    def _settle_uncertainty(self, job: Job, outcomes: list[Transition]) -> bool:
        """An earlier attempt may have created the ticket. True if sending again is right."""
        since = job.uncertain_since
        assert since is not None
        policy = "reconcile" if job.claim.reconcile_first else self._settings.on_ambiguous
        if policy == "park":
            outcomes.append(self._decisions.park(job, "an earlier attempt may have made it"))
            return False
        if policy == "retry":
            return True
        found = self._loop.run(
            find_created(
                self._api,
                self._store,
                job.claim.job_id,
                job.spec,
                since,
                self._settings.reconcile_pages,
            )
        )
        if isinstance(found, Failed):
            # Still uncertain, and still to be reconciled first: look again later.
            error = found.to_error().model_copy(
                update={"message": f"reconciling before sending again: {found.message}"}
            )
            delay = self._policy.delay_for(max(job.claim.attempts, 1), found.retry_after)
            outcomes.append(retrying(job.claim, job.spec, error, delay, 0, since))
            return False
        if found is not None:
            log.info("job %s: %s %s", job.claim.job_id, ADOPTED, found.id)
            outcomes.append(succeeded(job.claim, job.spec, found, 0))
            return False
        log.info("job %s: %s", job.claim.job_id, RESENT)
        job.uncertain_since, job.settled = None, True
        return True

    def _round(self, jobs: list[Job], started: float) -> list[tuple[Job, float]]:
        """Admit, send and decide once for these jobs; returns those to try again."""
        spent = time.monotonic() - started
        again: list[tuple[Job, float]] = []
        outcomes: list[Transition] = []
        admissions = self._limiter.admit_many(
            [(job.spec.account_id, job.claim.lane, job.claim.token) for job in jobs],
            bulk_hold=self._decisions.bulk_hold(spent),
        )
        admitted = []
        refusal = None
        if any(admission.reason is Reason.KEY_REFUSED for admission in admissions):
            self._key_health.noticed()
            refusal = self._key_health.refusal()
        for job, admission in zip(jobs, admissions, strict=True):
            if admission.admitted:
                job.probe = admission.reason is Reason.PROBE
                admitted.append(job)
                continue
            decision = self._decisions.not_admitted(job, admission, spent, refusal)
            self._collect(job, decision, outcomes, again)
        answers = self._loop.run(self._send(admitted)) if admitted else []
        for job, outcome in zip(admitted, answers, strict=True):
            self._react(job, outcome)
            decision = self._decisions.answered(job, outcome, spent)
            self._collect(job, decision, outcomes, again)
        self._record(outcomes)
        # A delivery that has run for a while renews the leases of the jobs it keeps, so
        # that a round of slow answers never lets another worker take them over.
        return self._renewed(again) if time.monotonic() - started > LEASE_SLACK else again

    async def _send(self, jobs: list[Job]) -> list[Outcome]:
        async def one(job: Job) -> Outcome:
            job.attempts += 1
            job.sent_at = time.time()
            return await self._api.create_ticket(job.spec.account_id, job.spec.ticket)

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    def _react(self, job: Job, outcome: Outcome) -> None:
        """What an answer means beyond its job: the key works, is refused, or is throttled."""
        if isinstance(outcome, Created):
            self._key_health.accepted(probe=job.probe)
        elif outcome.kind is ErrorKind.BAD_CREDENTIALS:
            self._key_health.refused(outcome.status, outcome.message, time.time())
        elif outcome.status == 429:
            pause = outcome.retry_after if outcome.retry_after is not None else 10.0
            if outcome.provider_errors:  # the provider behind this account is limiting
                self._limiter.pause_account(job.spec.account_id, pause)
            else:
                self._limiter.pause_key(pause)

    @staticmethod
    def _collect(
        job: Job,
        decision: Transition | Again,
        outcomes: list[Transition],
        again: list[tuple[Job, float]],
    ) -> None:
        if isinstance(decision, Again):
            again.append((job, decision.delay))
        else:
            outcomes.append(decision)

    def _renewed(self, again: list[tuple[Job, float]]) -> list[tuple[Job, float]]:
        """Jobs going round again keep their lease, unless another delivery took it."""
        kept = []
        for job, delay in again:
            try:
                self._store.renew(job.claim)
            except LeaseLost:
                log.warning("job %s: lease lost to another delivery", job.claim.job_id)
                continue
            kept.append((job, delay))
        return kept

    def _record(self, outcomes: list[Transition]) -> None:
        if not outcomes:
            return
        for change, result in zip(outcomes, self._store.apply(outcomes), strict=True):
            if result == "ok":
                log.debug("job %s %s", change.claim.job_id, change.state)
                if change.state == "failed" and change.error is not None:
                    log.info("job %s failed: %s", change.claim.job_id, change.error.message)
            else:
                # Our lease ran out and another delivery took over; its outcome stands.
                log.warning(
                    "job %s: outcome %s not recorded: %s", change.claim.job_id, change.state, result
                )
