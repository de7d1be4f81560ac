"""Job records in Redis: the result store callers read, and the lease that keeps one attempt
in flight per job.

Celery's own result backend forgets after a day and reads unknown ids as PENDING, so the
record is ours. One hash per job holds its state and outcome; small string keys index it by
(account, ref) and (account, idempotency key); a sorted set lists failed jobs. Every state
change is one Lua script, so a worker whose lease expired (and whose job another worker
re-claimed) can never overwrite the newer attempt's outcome.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from worker.contract import JobError, JobRecord, JobSpec, JobState, TicketIds
from worker.keys import (
    DUE_INDEX,
    FAILED_INDEX,
    JOB_PREFIX,
    QUEUES,
    ScriptCall,
    batch_key,
    idempotency_key,
    inflight_key,
    job_key,
    lua_script,
    ref_key,
    run_scripts,
    ticket_key,
)
from worker.settings import Settings

Lane = Literal["interactive", "bulk"]
CREATE_CHUNK = 500  # jobs per create.lua call


@dataclass(frozen=True)
class Created:
    job_id: str
    is_new: bool  # False when the idempotency key named an existing job


@dataclass(frozen=True)
class Claim:
    """One delivery's exclusive right to attempt a job, until the lease runs out."""

    job_id: str
    token: str
    spec_json: str
    attempts: int
    uncertain_since: float | None  # an earlier attempt since then may have made the ticket
    reconcile_first: bool = False  # replayed by a person: look for the ticket whatever the policy
    lane: Lane = "interactive"


@dataclass(frozen=True)
class Refused:
    """Why a delivery may not attempt a job: gone, done, in flight elsewhere, or not due."""

    reason: Literal["missing", "final", "leased", "not_due"]
    detail: str = ""


class LeaseLost(RuntimeError):
    """Another delivery took the job over; this one must not send anything more."""


@dataclass(frozen=True)
class Due:
    job_id: str
    lane: Lane


class JobStore:
    """Reads and atomically transitions job records."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        succeeded_ttl: int,
        lease_seconds: int,
        requeue_after: float = 900.0,
        max_lost_attempts: int = 3,
    ) -> None:
        self.redis = client
        self._succeeded_ttl = succeeded_ttl
        self._lease_seconds = lease_seconds
        self._requeue_after = requeue_after
        self._max_lost_attempts = max_lost_attempts
        self._create = client.register_script(lua_script("create.lua"))
        self._sent = client.register_script(lua_script("sent.lua"))
        self._claim = client.register_script(lua_script("claim.lua"))
        self._renew = client.register_script(lua_script("renew.lua"))
        self._transition = client.register_script(lua_script("transition.lua"))
        self._due = client.register_script(lua_script("due.lua"))

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            health_check_interval=30,
            # Ride out a Redis restart (AOF reload included) instead of failing the delivery.
            retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), retries=20),
        )
        return cls(
            client,
            succeeded_ttl=settings.succeeded_ttl,
            lease_seconds=settings.lease_seconds,
            requeue_after=settings.requeue_after,
            max_lost_attempts=settings.max_lost_attempts,
        )

    def create(self, spec: JobSpec, lane: Lane) -> Created:
        """Store a new queued job, or return the job an idempotency key already names."""
        return self.create_many([spec], lane)[0]

    def create_many(self, specs: Sequence[JobSpec], lane: Lane) -> list[Created]:
        """Store many jobs in one round trip; each is created atomically on its own.

        Jobs sharing a batch go to the script together, up to ``CREATE_CHUNK`` a call, so an
        import sends few arguments per job and Redis is never held for long by one call."""
        now = time.time()
        header = [stamp(now + self._requeue_after), stamp(now), lane]
        groups: dict[str | None, list[int]] = {}  # batch id -> positions in specs
        for position, spec in enumerate(specs):
            groups.setdefault(spec.batch_id, []).append(position)
        calls: list[ScriptCall] = []
        order: list[int] = []
        for batch_id, positions in groups.items():
            for start in range(0, len(positions), CREATE_CHUNK):
                chunk = positions[start : start + CREATE_CHUNK]
                keys, args = _create_call([specs[p] for p in chunk], batch_id)
                calls.append((self._create, keys, [*header, *args]))
                order += chunk
        answers = [answer for call in run_scripts(self.redis, calls) for answer in call]
        by_position = dict(zip(order, answers, strict=True))
        return [
            Created(job_id=by_position[p][0], is_new=bool(int(by_position[p][1])))
            for p in range(len(specs))
        ]

    def confirm_sent(self, job_ids: list[str]) -> None:
        """Their messages are on the queue: the scheduler looks again only if nobody has
        claimed them ``requeue_after`` from now (a message can be lost on its way)."""
        if job_ids:
            look_again = stamp(time.time() + self._requeue_after)
            self._sent(keys=[DUE_INDEX], args=[JOB_PREFIX, look_again, *job_ids])

    def take_due(self, limit: int = 500) -> list[Due]:
        """Jobs to (re)send now; each is handed to one caller, who must send and confirm."""
        now = time.time()
        flat = self._due(
            keys=[DUE_INDEX, *QUEUES.values()],
            args=[stamp(now), stamp(now + self._requeue_after), limit, JOB_PREFIX],
        )
        return [Due(job_id=flat[i], lane=flat[i + 1]) for i in range(0, len(flat), 2)]

    def get(self, job_id: str) -> JobRecord | None:
        raw = cast(dict[str, str], self.redis.hgetall(job_key(job_id)))
        return _record(job_id, raw) if raw else None

    def states(self, job_ids: Sequence[str]) -> list[JobState | None]:
        """The state of each job, in one round trip (None: no record, or expired)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(job_key(job_id), "state")
            return [JobState(state) if state else None for state in pipe.execute()]

    def find(self, account_id: str, ref: str) -> JobRecord | None:
        """The latest job submitted with this ref for this account."""
        job_id = cast(str | None, self.redis.get(ref_key(account_id, ref)))
        return self.get(job_id) if job_id else None

    def failed_ids(self, limit: int = 100) -> list[str]:
        """Most recently failed first."""
        return [str(job_id) for job_id in self.redis.zrevrange(FAILED_INDEX, 0, limit - 1)]

    def claim(self, job_id: str) -> Claim | Refused:
        return self.claim_many([job_id])[0]

    def claim_many(self, job_ids: Sequence[str]) -> list[Claim | Refused]:
        """Claim each job for this delivery, in one round trip."""
        now = time.time()
        lease_until = stamp(now + self._lease_seconds)
        tokens = [secrets.token_hex(8) for _ in job_ids]
        answers = run_scripts(
            self.redis,
            [
                (
                    self._claim,
                    [job_key(job_id), DUE_INDEX, FAILED_INDEX],
                    [stamp(now), lease_until, token, job_id, self._max_lost_attempts],
                )
                for job_id, token in zip(job_ids, tokens, strict=True)
            ],
        )
        return [
            _claim_answer(job_id, token, answer)
            for job_id, token, answer in zip(job_ids, tokens, answers, strict=True)
        ]

    def renew(self, claim: Claim) -> None:
        """Extend the lease before an in-process retry; ``LeaseLost`` if it was taken over."""
        now = time.time()
        renewed = self._renew(
            keys=[job_key(claim.job_id), DUE_INDEX],
            args=[claim.token, stamp(now), stamp(now + self._lease_seconds), claim.job_id],
        )
        if int(renewed) < 0:
            raise LeaseLost(claim.job_id)

    def apply(self, transitions: Sequence[Transition]) -> list[str]:
        """Record outcomes in one round trip; each answer is "ok" or why it was refused
        (lost lease, already final)."""
        now = stamp(time.time())
        calls = [(self._transition, *self._transition_call(c, now)) for c in transitions]
        return [str(answer) for answer in run_scripts(self.redis, calls)]

    def succeed(self, claim: Claim, spec: JobSpec, ticket: TicketIds, attempts: int = 1) -> str:
        return self.apply([succeeded(claim, spec, ticket, attempts)])[0]

    def retry_later(
        self, claim: Claim, spec: JobSpec, error: JobError, delay: float, attempts: int = 1
    ) -> str:
        return self.apply([retrying(claim, spec, error, delay, attempts)])[0]

    def fail(self, claim: Claim, spec: JobSpec | None, error: JobError, attempts: int = 1) -> str:
        return self.apply([failed(claim, spec, error, attempts)])[0]

    def owner_of(self, account_id: str, ticket_id: str) -> str | None:
        """The job that created or adopted this ticket, if ticketq knows one."""
        return cast(str | None, self.redis.get(ticket_key(account_id, ticket_id)))

    def _transition_call(self, change: Transition, now: str) -> tuple[list[str], list[str]]:
        spec = change.spec
        account = spec.account_id if spec else ""
        keys = [
            job_key(change.claim.job_id),
            FAILED_INDEX,
            ref_key(account, spec.ref) if spec and spec.ref else "",
            idempotency_key(account, spec.idempotency_key) if spec and spec.idempotency_key else "",
            DUE_INDEX,
            ticket_key(account, change.ticket.id) if spec and change.ticket else "",
            inflight_key(account) if spec else "",
        ]
        fields = dict(change.fields)
        if change.ticket is not None:
            fields.update(ticket_id=change.ticket.id, remote_id=change.ticket.remote_id or "")
        if change.error is not None:
            fields["error"] = change.error.model_dump_json()
        if change.uncertain_since is not None:
            fields["uncertain_since"] = stamp(change.uncertain_since)
        args = [
            change.claim.token,
            change.state,
            now,
            str(self._succeeded_ttl),
            change.claim.job_id,
            stamp(change.due_at) if change.due_at is not None else "",
            str(change.attempts),
            *(item for pair in fields.items() for item in pair),
        ]
        return keys, args


@dataclass(frozen=True)
class Transition:
    """An outcome to record for a claimed job; built by ``succeeded``, ``retrying``, ``failed``."""

    claim: Claim
    spec: JobSpec | None
    state: JobState
    attempts: int  # requests this delivery made that count against the job
    ticket: TicketIds | None = None
    error: JobError | None = None
    due_at: float | None = None
    uncertain_since: float | None = None
    fields: dict[str, str] = field(default_factory=dict)  # more fields; "" deletes one


def succeeded(claim: Claim, spec: JobSpec, ticket: TicketIds, attempts: int) -> Transition:
    """The job's ticket exists: it is no longer uncertain, nor to be reconciled."""
    done = {"error": "", "uncertain_since": ""}
    return Transition(claim, spec, JobState.SUCCEEDED, attempts, ticket=ticket, fields=done)


def retrying(
    claim: Claim,
    spec: JobSpec,
    error: JobError,
    delay: float,
    attempts: int,
    uncertain_since: float | None = None,
    settled: bool = False,
) -> Transition:
    """Wait ``delay`` seconds. ``uncertain_since``: an attempt since then may have made the
    ticket; ``settled``: reconciliation found none, so the job is no longer uncertain."""
    cleared = {"uncertain_since": "", "reconcile_first": ""} if settled else {}
    return Transition(
        claim,
        spec,
        JobState.RETRYING,
        attempts,
        error=error,
        due_at=time.time() + max(delay, 0.0),
        uncertain_since=uncertain_since,
        fields=cleared,
    )


def failed(claim: Claim, spec: JobSpec | None, error: JobError, attempts: int) -> Transition:
    return Transition(claim, spec, JobState.FAILED, attempts, error=error)


def _claim_answer(job_id: str, token: str, answer: list[str]) -> Claim | Refused:
    if answer[0] == "ok":
        return Claim(
            job_id=job_id,
            token=token,
            spec_json=answer[1],
            attempts=int(answer[2]),
            uncertain_since=float(answer[3]) if answer[3] else None,
            reconcile_first=answer[4] == "1",
            lane=cast(Lane, answer[5]),
        )
    return Refused(reason=cast(Any, answer[0]), detail=answer[1] if len(answer) > 1 else "")


def _create_call(specs: Sequence[JobSpec], batch_id: str | None) -> tuple[list[str], list[str]]:
    """Keys and the per-job arguments of one create.lua call."""
    keys = [DUE_INDEX, batch_key(batch_id) if batch_id else ""]
    args = [batch_id or ""]
    for spec in specs:
        job_id = uuid.uuid4().hex
        account = spec.account_id
        keys += (
            job_key(job_id),
            idempotency_key(account, spec.idempotency_key) if spec.idempotency_key else "",
            ref_key(account, spec.ref) if spec.ref else "",
        )
        spec_json = spec.model_dump_json(exclude_unset=True)
        args += (job_id, account, spec_json, spec.ref or "", spec.idempotency_key or "")
    return keys, args


def stamp(moment: float) -> str:
    return f"{moment:.6f}"


def _record(job_id: str, raw: dict[str, str]) -> JobRecord:
    """Build the public view; the stored spec (the ticket body) stays out of it."""
    ticket = (
        TicketIds(id=raw["ticket_id"], remote_id=raw.get("remote_id") or None)
        if raw.get("ticket_id")
        else None
    )
    error = JobError.model_validate_json(raw["error"]) if raw.get("error") else None
    optional: dict[str, Any] = {
        name: raw[name] for name in ("ref", "idempotency_key", "batch_id") if name in raw
    }
    for name in ("finished_at", "next_attempt_at", "uncertain_since"):
        if name in raw:
            optional[name] = float(raw[name])
    return JobRecord(
        job_id=job_id,
        state=JobState(raw["state"]),
        account_id=raw["account_id"],
        lane=raw.get("lane", "interactive"),
        attempts=int(raw.get("attempts", "0")),
        replays=int(raw.get("replays", "0")),
        ticket=ticket,
        error=error,
        created_at=float(raw["created_at"]),
        updated_at=float(raw["updated_at"]),
        **optional,
    )


def spec_from_claim(claim: Claim) -> JobSpec:
    """Re-validate what was stored: a record written by another version may not fit."""
    return JobSpec.model_validate_json(claim.spec_json)
