"""Job records in Redis: the result store callers read, and the lease that keeps one attempt
in flight per job.

Celery's own result backend forgets after a day and reads unknown ids as PENDING, so the
record is ours. One hash per job holds its state and outcome; small string keys index it by
(account, ref) and (account, idempotency key); a sorted set lists failed jobs. Every state
change is one Lua script, so a worker whose lease expired (and whose job another worker
re-claimed) can never overwrite the newer attempt's outcome.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar, cast

import redis

from worker.contract import (
    ATTEMPTS_KEPT,
    AttemptEntry,
    ErrorKind,
    JobError,
    JobRecord,
    JobSpec,
    JobState,
    TicketIds,
    load_json,
)
from worker.settings import Settings
from worker.store import connect
from worker.store.keys import (
    BODY_FIRST_PARTS,
    COMPACT_FIELDS,
    DUE_INDEX,
    FAILED_INDEX,
    INDEX_BUCKETS,
    INDEX_KINDS,
    INDEX_SWEEP,
    JOB_PREFIX,
    QUEUES,
    SPEC_FIELDS,
    WAKE_TTL_MS,
    IndexEntry,
    batch_info_key,
    batch_key,
    freed_key,
    idempotency_entry,
    index_bucket,
    inflight_key,
    job_key,
    ref_entry,
    ticket_entry,
    wake_key,
)
from worker.store.scripts import (
    CANCEL,
    CLAIM,
    CREATE,
    DUE,
    PURGE,
    RENEW,
    REPLAY,
    SENT,
    SWEEP,
    TRANSITION,
    UNCREATE,
    Call,
    CancelCode,
    ClaimCode,
    DeadLetterCode,
    Recorded,
    RenewCode,
    run,
    run_each,
    run_one,
)

__all__ = [
    "CancelCode",
    "Cancelled",
    "Claim",
    "ClaimCode",
    "DeadLetterCode",
    "Due",
    "FailedJob",
    "JobStore",
    "Kept",
    "Lane",
    "NewJob",
    "NotClaimed",
    "Recorded",
    "Stored",
    "Transition",
    "failed",
    "record_fields",
    "record_values",
    "retrying",
    "spec_from_claim",
    "stamp",
    "succeeded",
]

Lane = Literal["interactive", "bulk"]
CREATE_CHUNK = 500  # jobs per create.lua call
SWEEP_BUCKETS = 32  # index buckets a scheduler's tick sweeps (sweep.lua)
FAILED_FIELDS = ("account_id", "error")  # what a dead-letter listing filters on
T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    job_id: str
    is_new: bool  # False when the idempotency key named an existing job


class NewJob(NamedTuple):
    """A validated job as ``create.lua`` takes it: its body (the ticket as JSON) and the
    spec's other fields, which its record keeps as fields of their own (and its index keys
    are named by), so the body does not hold them twice. A bulk import serializes each job
    once, while validating, and keeps it in this form (a temp file holds them) until it is
    stored; a tuple, because it is pickled and read back 200,000 times an import (a
    dataclass takes four times longer)."""

    account_id: str
    body_json: str
    ref: str | None = None
    idempotency_key: str | None = None
    batch_id: str | None = None

    @classmethod
    def of(cls, spec: JobSpec) -> NewJob:
        return cls(
            spec.account_id,
            spec.ticket.model_dump_json(exclude_unset=True),
            spec.ref,
            spec.idempotency_key,
            spec.batch_id,
        )


@dataclass(frozen=True)
class Claim:
    """One delivery's exclusive right to attempt a job, until the lease runs out."""

    job_id: str
    token: str
    spec_json: str  # as stored: a compact record's ticket alone (in "ticket"), ``apart`` the rest
    attempts: int
    uncertain_since: float | None  # an earlier attempt since then may have made the ticket
    reconcile_first: bool = False  # replayed by a person: look for the ticket whatever the policy
    lane: Lane = "interactive"
    failing_since: float | None = None  # its first failed attempt: the retry budget runs since
    # The spec's fields its record keeps on their own (account_id, ref, idempotency_key,
    # batch_id: those it has), for ``spec_from_claim`` to put back in the spec.
    apart: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NotClaimed:
    """Why a delivery may not attempt a job: gone, done, in flight elsewhere, or not due."""

    code: ClaimCode
    detail: str = ""


@dataclass(frozen=True)
class LineUp:
    """An API key's fair lines, for claim.lua to line fresh jobs up in before claiming
    them (``LimitStore.line_up`` builds it)."""

    keys: tuple[str, str, str, str]  # the interactive line, the bulk line, shares, turns
    pace_us: float  # a job's estimated turn in the lines
    error: str  # a lined job's error, JSON
    weights: tuple[tuple[str, float], ...]  # accounts weighed otherwise than ``default``
    default: float

    @property
    def args(self) -> list[str | int | float]:
        pairs = (item for pair in self.weights for item in pair)
        return [self.pace_us, self.error, self.default, *pairs]


@dataclass(frozen=True)
class Due:
    job_id: str
    lane: Lane


@dataclass(frozen=True)
class FailedJob:
    """What a dead-letter listing filters on: whose job it is and why it failed."""

    job_id: str
    account_id: str
    kind: ErrorKind | None  # None: no error recorded, or one this version cannot read


@dataclass(frozen=True)
class Cancelled:
    """What a cancel did to one job: ``code`` OK, or why not (and the final state it found)."""

    job_id: str
    code: CancelCode
    detail: str = ""


@dataclass(frozen=True)
class Kept:
    """A replay or purge left the job as it was: why, and what it found (a state, a ticket)."""

    code: DeadLetterCode
    detail: str = ""


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
        keep_body: bool = False,
        account_cap: int = 0,
    ) -> None:
        self.redis = client
        self._account_cap = account_cap  # a slot an outcome frees is counted for its waiters
        self._succeeded_ttl = succeeded_ttl
        self._keep_body = keep_body
        self._lease_seconds = lease_seconds
        self._requeue_after = requeue_after
        self._max_lost_attempts = max_lost_attempts

    @property
    def succeeded_ttl(self) -> int:
        """Seconds a finished job's record is kept (0: for good); batches live as long."""
        return self._succeeded_ttl

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        ride_out_restarts: bool = True,
        client: redis.Redis | None = None,
    ) -> JobStore:
        """The store ``settings`` describe, on ``client`` if given (a process's own)."""
        return cls(
            client or connect(settings, ride_out_restarts=ride_out_restarts),
            succeeded_ttl=settings.succeeded_ttl,
            lease_seconds=settings.lease_seconds,
            requeue_after=settings.requeue_after,
            max_lost_attempts=settings.max_lost_attempts,
            keep_body=settings.keep_body,
            account_cap=settings.account_concurrency,
        )

    def create(self, spec: JobSpec, lane: Lane) -> Stored:
        """Store a new queued job, or return the job an idempotency key already names."""
        return self.create_many([spec], lane)[0]

    def create_many(
        self,
        specs: Sequence[JobSpec | NewJob],
        lane: Lane,
        positions: Sequence[int] | None = None,
    ) -> list[Stored]:
        """Store many jobs in one round trip: all of them, or none.

        Jobs sharing a batch go to the script together, up to ``CREATE_CHUNK`` a call, so an
        import sends few arguments per job and Redis is never held for long by one call. If
        a call fails (Redis at maxmemory, say), the jobs the other calls stored are taken
        back before its error is raised: a caller who retries makes no duplicates, and no
        worker creates a ticket for a batch reported as failed. ``positions``: each job's
        row in its batch's input (default: its index here), the batch's order for export."""
        jobs = [spec if isinstance(spec, NewJob) else NewJob.of(spec) for spec in specs]
        now = time.time()
        header = [stamp(now + self._requeue_after), stamp(now), lane]
        where = list(positions) if positions is not None else list(range(len(jobs)))
        chunks = _chunks(range(len(jobs)), lambda p: jobs[p].batch_id)
        calls = [
            Call(CREATE, *self._create_call([(jobs[p], where[p]) for p in chunk], header))
            for chunk in chunks
        ]
        answers = run_each(self.redis, calls)
        failure = next((answer for answer in answers if isinstance(answer, Exception)), None)
        by_position = {
            position: job
            for chunk, answer in zip(chunks, answers, strict=True)
            if not isinstance(answer, Exception)
            for position, job in zip(chunk, answer, strict=True)
        }
        if failure is not None:
            self._take_back([(jobs[p], job) for p, job in by_position.items()], failure)
            raise failure
        return [_stored(by_position[p]) for p in range(len(jobs))]

    def _create_call(
        self, rows: Sequence[tuple[NewJob, int]], header: list[str]
    ) -> tuple[list[str], list[str]]:
        """Keys and arguments of one create.lua call; the jobs share one batch."""
        batch_id = rows[0][0].batch_id
        keys = [DUE_INDEX, batch_key(batch_id) if batch_id else ""]
        args = [*header, batch_id or "", str(self._succeeded_ttl)]
        for new, position in rows:
            job_id = new_job_id()
            job_keys, fields = _job_keys(job_id, new)
            keys += job_keys
            ref, idem = new.ref or "", new.idempotency_key or ""
            args += (job_id, new.account_id, new.body_json, ref, idem, str(position), *fields)
        return keys, args

    def _take_back(self, answered: list[tuple[NewJob, list[Any]]], failure: Exception) -> None:
        """Delete the jobs a failed create_many stored, newest first, so a ref given twice
        names again what it named before the batch, and take the known jobs' rows out of
        the batch; if that fails too, ``failure`` says so."""
        undo = [(s, job) for s, job in reversed(answered) if _stored(job).is_new or _joined(job)]
        calls = [
            Call(UNCREATE, *_uncreate_call(chunk))
            for chunk in _chunks(undo, lambda pair: pair[0].batch_id)
        ]
        try:
            run(self.redis, calls)
        except redis.RedisError as exc:
            new = sum(_stored(job).is_new for _, job in undo)
            failure.add_note(f"{new} jobs of this batch may remain stored: {exc}")

    def confirm_sent(self, job_ids: list[str]) -> None:
        """Their messages are on the queue: the scheduler looks again only if nobody has
        claimed them ``requeue_after`` from now (a message can be lost on its way)."""
        if job_ids:
            look_again = stamp(time.time() + self._requeue_after)
            run_one(self.redis, SENT, [DUE_INDEX], [JOB_PREFIX, look_again, *job_ids])

    def take_due(self, limit: int = 500) -> list[Due]:
        """Jobs to (re)send now; each is handed to one caller, who must send and confirm."""
        now = time.time()
        flat = run_one(
            self.redis,
            DUE,
            [DUE_INDEX, *QUEUES.values()],
            [stamp(now), stamp(now + self._requeue_after), limit, JOB_PREFIX],
        )
        return _due(flat)

    def get(self, job_id: str) -> JobRecord | None:
        raw = cast(dict[str, str], self.redis.hgetall(job_key(job_id)))
        return _record(job_id, raw) if raw else None

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        """Each job's record, in one round trip (None: no record, or expired)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
            found = cast(list[dict[str, str]], pipe.execute())
        return [
            _record(job_id, raw) if raw else None
            for job_id, raw in zip(job_ids, found, strict=True)
        ]

    def states(self, job_ids: Sequence[str]) -> list[JobState | None]:
        """The state of each job, in one round trip (None: no record, or expired)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(job_key(job_id), "state")
            return [JobState(state) if state else None for state in pipe.execute()]

    def find(self, account_id: str, ref: str) -> JobRecord | None:
        """The latest job submitted with this ref for this account."""
        job_id = self._named([ref_entry(account_id, ref)])[0]
        return self.get(job_id) if job_id else None

    def _named(self, entries: Sequence[IndexEntry]) -> list[str | None]:
        """The job each index entry names, in one round trip: its bucket's field, else the
        key an earlier version kept it under (it may name a job gone since, until the sweep
        drops it)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.hget(entry.bucket, entry.field)
                pipe.get(entry.old_key)
            found = cast(list[str | None], pipe.execute())
        return [found[i] or found[i + 1] for i in range(0, len(found), 2)]

    def sweep_indexes(self, buckets: int = SWEEP_BUCKETS) -> int:
        """Drop the index entries naming jobs that are gone, in the next ``buckets`` buckets
        (every kind's in turn, where the last sweep of any worker stopped); how many."""
        end = int(self.redis.incrby(INDEX_SWEEP, buckets))
        names = [
            index_bucket(INDEX_KINDS[(n // INDEX_BUCKETS) % len(INDEX_KINDS)], n % INDEX_BUCKETS)
            for n in range(end - buckets, end)
        ]
        return int(run_one(self.redis, SWEEP, names, []))

    def failed_ids(
        self, limit: int = 100, *, before: float | None = None, start: int = 0
    ) -> list[str]:
        """Most recently failed first, from the ``start``-th on; ``before``: failed then or
        earlier (Unix seconds)."""
        newest = "+inf" if before is None else stamp(before)
        ids = self.redis.zrevrangebyscore(FAILED_INDEX, newest, "-inf", start=start, num=limit)
        return [str(job_id) for job_id in cast(list[str], ids)]

    def due_ids(self, start: int = 0, count: int = 100) -> list[str]:
        """Jobs not final, soonest due first, from the ``start``-th on."""
        return cast(list[str], self.redis.zrange(DUE_INDEX, start, start + count - 1))

    def failed_jobs(self, job_ids: Sequence[str]) -> list[FailedJob]:
        """Whose each job is and why it failed, in one round trip; a job gone meanwhile is
        left out."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(job_key(job_id), *record_fields(FAILED_FIELDS))
            rows = cast(list[list[str | None]], pipe.execute())
        found = [record_values(FAILED_FIELDS, row) for row in rows]
        return [
            FailedJob(job_id, account, _error_kind(error))
            for job_id, (account, error) in zip(job_ids, found, strict=True)
            if account is not None
        ]

    def claim(self, job_id: str) -> Claim | NotClaimed:
        return self.claim_many([job_id])[0]

    def claim_many(
        self, job_ids: Sequence[str], lines: LineUp | None = None
    ) -> list[Claim | NotClaimed]:
        """Claim each job for this delivery, in one round trip. With ``lines``, a fresh job
        whose lane's line at the API key holds anyone joins it instead (``ClaimCode.LINED``)."""
        now = time.time()
        lease_until = stamp(now + self._lease_seconds)
        tokens = [secrets.token_hex(8) for _ in job_ids]
        line_keys = list(lines.keys) if lines else ["", "", "", ""]
        line_args = lines.args if lines else []
        answers = run(
            self.redis,
            [
                Call(
                    CLAIM,
                    [job_key(job_id), DUE_INDEX, FAILED_INDEX, *line_keys],
                    [stamp(now), lease_until, token, job_id, self._max_lost_attempts, *line_args],
                )
                for job_id, token in zip(job_ids, tokens, strict=True)
            ],
        )
        return [
            _claim_answer(job_id, token, answer)
            for job_id, token, answer in zip(job_ids, tokens, answers, strict=True)
        ]

    def renew(self, claims: Sequence[Claim]) -> set[str]:
        """Extend the leases of these jobs, in one round trip, before they are sent late or
        again; the ids of those another delivery took over (their leases are not ours)."""
        now = time.time()
        calls = [
            Call(
                RENEW,
                [job_key(claim.job_id), DUE_INDEX],
                [claim.token, stamp(now), stamp(now + self._lease_seconds), claim.job_id],
            )
            for claim in claims
        ]
        answers = run(self.redis, calls) if calls else []
        return {
            claim.job_id
            for claim, answer in zip(claims, answers, strict=True)
            if RenewCode(answer) is RenewCode.LOST_LEASE
        }

    def apply(self, transitions: Sequence[Transition]) -> list[Recorded]:
        """Record outcomes in one round trip; each answer says whether it was recorded."""
        now = stamp(time.time())
        calls = [Call(TRANSITION, *self._transition_call(c, now)) for c in transitions]
        return [Recorded(answer) for answer in run(self.redis, calls)]

    def succeed(
        self, claim: Claim, spec: JobSpec, ticket: TicketIds, attempts: int = 1
    ) -> Recorded:
        return self.apply([succeeded(claim, spec, ticket, attempts)])[0]

    def retry_later(
        self, claim: Claim, spec: JobSpec, error: JobError, *, due_at: float, attempts: int = 1
    ) -> Recorded:
        return self.apply([retrying(claim, spec, error, due_at=due_at, attempts=attempts)])[0]

    def fail(
        self, claim: Claim, spec: JobSpec | None, error: JobError, attempts: int = 1
    ) -> Recorded:
        return self.apply([failed(claim, spec, error, attempts)])[0]

    def owners_of(self, account_id: str, ticket_ids: Sequence[str]) -> list[str | None]:
        """The job that created or adopted each ticket, if ticketq knows one."""
        if not ticket_ids:
            return []
        # An owner whose record expired owns its ticket until the sweep drops its entry:
        # reconciliation never adopts a ticket a job made.
        return self._named([ticket_entry(account_id, ticket_id) for ticket_id in ticket_ids])

    def replay(self, job_id: str, *, reconcile: bool = True) -> Due | Kept:
        """A failed job back to ``queued`` and into the outbox; the caller sends it. One
        whose ticket may exist is reconciled first, unless ``reconcile`` is False (a person
        looked and found none)."""
        now = time.time()
        answer = run_one(
            self.redis,
            REPLAY,
            [job_key(job_id), FAILED_INDEX, DUE_INDEX],
            [stamp(now), stamp(now + self._requeue_after), job_id, "" if reconcile else "1"],
        )
        if DeadLetterCode(answer[0]) is DeadLetterCode.OK:
            return Due(job_id=job_id, lane=answer[1])
        return _kept(answer)

    def purge(self, job_id: str) -> Kept | None:
        """Delete a failed job and the indexes that still name it; None once it is gone."""
        keys, fields = self._purge_keys(job_id)
        answer = run_one(self.redis, PURGE, keys, [job_id, *fields])
        return None if DeadLetterCode(answer[0]) is DeadLetterCode.OK else _kept(answer)

    def cancel_many(
        self, job_ids: Sequence[str], *, of_batch: str | None = None
    ) -> list[Cancelled]:
        """Cancel jobs nobody is attempting (two round trips: their index names, then one
        cancel.lua each); one in flight finishes, a final one stays as it is. ``of_batch``:
        a job another batch made (a row an import run again found known) is left alone."""
        with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(job_key(job_id), *record_fields(SPEC_FIELDS))
            rows = cast(list[list[str | None]], pipe.execute())
        names = {
            job_id: record_values(SPEC_FIELDS, row)
            for job_id, row in zip(job_ids, rows, strict=True)
        }
        others = {
            job_id: fields[3] or ""
            for job_id, fields in names.items()
            if of_batch is not None and fields[0] is not None and fields[3] != of_batch
        }
        mine = [job_id for job_id in job_ids if job_id not in others]
        now = stamp(time.time())
        calls = [
            Call(
                CANCEL,
                *_cancel_call(job_id, names[job_id], [now, job_id, str(self._succeeded_ttl)]),
            )
            for job_id in mine
        ]
        done = {
            job_id: Cancelled(job_id, CancelCode(answer[0]), answer[1] if len(answer) > 1 else "")
            for job_id, answer in zip(mine, run(self.redis, calls), strict=True)
        }
        done |= {
            job_id: Cancelled(job_id, CancelCode.OTHER_BATCH, b) for job_id, b in others.items()
        }
        return [done[job_id] for job_id in job_ids]

    def _purge_keys(self, job_id: str) -> tuple[list[str], list[str]]:
        """purge.lua's keys and its entries' fields: the job's indexes, read first; the
        fields they come from never change."""
        account, ref, idem, batch = record_values(
            SPEC_FIELDS,
            cast(list[str | None], self.redis.hmget(job_key(job_id), *record_fields(SPEC_FIELDS))),
        )
        keys = [job_key(job_id), FAILED_INDEX, DUE_INDEX]
        if account is None:
            return [*keys, "", "", "", "", ""], ["", ""]
        by_ref = _entry(ref_entry, account, ref)
        by_key = _entry(idempotency_entry, account, idem)
        return (
            [
                *keys,
                by_ref.bucket,
                by_key.bucket,
                batch_key(batch) if batch else "",
                by_ref.old_key,
                by_key.old_key,
            ],
            [by_ref.field, by_key.field],
        )

    def _transition_call(self, change: Transition, now: str) -> tuple[list[str], list[str]]:
        spec = change.spec
        account = spec.account_id if spec else ""
        by_ref = _entry(ref_entry, account, spec.ref if spec else None)
        by_key = _entry(idempotency_entry, account, spec.idempotency_key if spec else None)
        owner = _entry(ticket_entry, account, change.ticket.id if spec and change.ticket else None)
        keys = [
            job_key(change.claim.job_id),
            FAILED_INDEX,
            by_ref.bucket,
            by_key.bucket,
            DUE_INDEX,
            owner.bucket,
            inflight_key(account) if spec else "",
            *_batch_keys(spec.batch_id if spec else None),
            *((wake_key(account), freed_key(account)) if spec and self._account_cap else ("", "")),
            by_ref.old_key,
            by_key.old_key,
            owner.old_key,
            job_key(change.successor.job_id) if change.successor else "",
        ]
        fields = dict(change.fields)
        if change.ticket is not None:
            fields.update(ticket_id=change.ticket.id, remote_id=change.ticket.remote_id or "")
        if change.error is not None:
            fields["error"] = change.error.model_dump_json()
        if change.uncertain_since is not None:
            fields["uncertain_since"] = stamp(change.uncertain_since)
        tried = "\n".join(entry.line() for entry in change.tried)
        if change.state is JobState.SUCCEEDED and not self._keep_body:
            # The ticket exists: its body is StackOne's to keep now, and most of the record's
            # bytes (kept for TICKETQ_SUCCEEDED_TTL); correlation needs the ids and the
            # attempts made, not the body nor each request (a long value would also cost the
            # record Redis's compact encoding).
            fields.update(dict.fromkeys(BODY_FIRST_PARTS, ""), attempt_log="")
            tried = ""
        args = [
            change.claim.token,
            change.state,
            now,
            str(self._succeeded_ttl),
            change.claim.job_id,
            stamp(change.due_at) if change.due_at is not None else "",
            str(change.attempts),
            "1" if change.held_back else "",
            tried,
            str(ATTEMPTS_KEPT),
            str(self._account_cap),
            str(WAKE_TTL_MS),
            by_ref.field,
            by_key.field,
            owner.field,
            change.successor.token if change.successor else "",
            str(int(self._lease_seconds * 1000)),
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
    held_back: bool = False  # retrying: the rate limit handed it back unsent (the stats count it)
    # The job's requests in this delivery, oldest first, for its record's attempt_log: the
    # runner carries them with the job (in-delivery retries too) until this is recorded.
    tried: tuple[AttemptEntry, ...] = ()
    # The job whose request went out on this job's account slot once this one's was
    # answered: recording this outcome passes the slot to it instead of freeing it.
    successor: Claim | None = None


def succeeded(claim: Claim, spec: JobSpec, ticket: TicketIds, attempts: int) -> Transition:
    """The job's ticket exists: it is no longer uncertain, nor to be reconciled."""
    done = {"error": "", "uncertain_since": ""}
    return Transition(claim, spec, JobState.SUCCEEDED, attempts, ticket=ticket, fields=done)


def retrying(
    claim: Claim,
    spec: JobSpec,
    error: JobError,
    *,
    due_at: float,
    attempts: int,
    uncertain_since: float | None = None,
    settled: bool = False,
    failing_since: float | None = None,
    held_back: bool = False,
) -> Transition:
    """Try again at ``due_at`` (Unix seconds). ``uncertain_since``: an attempt since then may
    have made the ticket; ``settled``: reconciliation found none, so the job is no longer
    uncertain; ``failing_since``: its first failed attempt, kept for its retry budget;
    ``held_back``: it was not sent, the rate limit gives it a later turn."""
    fields = {"uncertain_since": "", "reconcile_first": ""} if settled else {}
    if failing_since is not None:
        fields["failing_since"] = stamp(failing_since)
    return Transition(
        claim,
        spec,
        JobState.RETRYING,
        attempts,
        error=error,
        due_at=due_at,
        uncertain_since=uncertain_since,
        fields=fields,
        held_back=held_back,
    )


def failed(claim: Claim, spec: JobSpec | None, error: JobError, attempts: int) -> Transition:
    return Transition(claim, spec, JobState.FAILED, attempts, error=error)


def _chunks(items: Iterable[T], batch_of: Callable[[T], str | None]) -> list[list[T]]:
    """Items grouped by batch (in the order each batch first appears), ``CREATE_CHUNK`` a
    group: one create.lua or uncreate.lua call each."""
    groups: dict[str | None, list[T]] = {}
    for item in items:
        groups.setdefault(batch_of(item), []).append(item)
    return [
        group[start : start + CREATE_CHUNK]
        for group in groups.values()
        for start in range(0, len(group), CREATE_CHUNK)
    ]


def _uncreate_call(created: Sequence[tuple[NewJob, list[Any]]]) -> tuple[list[str], list[str]]:
    """Keys and arguments of one uncreate.lua call: the jobs share one batch, newest first."""
    batch_id = created[0][0].batch_id
    keys = [DUE_INDEX, batch_key(batch_id) if batch_id else ""]
    args: list[str] = []
    for new, answer in created:
        if _stored(answer).is_new:
            job_id, previous_ref = _created(answer)
            job_keys, fields = _job_keys(job_id, new)
            keys += job_keys
            args += (job_id, previous_ref, "1", *fields)
        else:  # a known job this call put in the batch: it only leaves the batch
            keys += [job_key(answer[0]), "", "", "", ""]
            args += (answer[0], "", "0", "", "")
    return keys, args


def _cancel_call(
    job_id: str, index_fields: list[str | None], args: list[str]
) -> tuple[list[str], list[str]]:
    """cancel.lua's keys (the job, the due index, its idempotency and ref entries' buckets,
    its batch, the entries' old keys) and ``args`` with the entries' fields; from the job's
    ``SPEC_FIELDS``."""
    account, ref, idem, batch = index_fields
    if account is None:
        return [job_key(job_id), DUE_INDEX, "", "", "", "", "", ""], [*args, "", ""]
    by_key = _entry(idempotency_entry, account, idem)
    by_ref = _entry(ref_entry, account, ref)
    keys = [job_key(job_id), DUE_INDEX, by_key.bucket, by_ref.bucket, *_batch_keys(batch)]
    return [*keys, by_key.old_key, by_ref.old_key], [*args, by_key.field, by_ref.field]


NO_ENTRY = IndexEntry("", "", "")


def _entry(
    kind: Callable[[str, str], IndexEntry], account_id: str, value: str | None
) -> IndexEntry:
    """The entry ``kind`` names for ``value``, or empty names when there is no value."""
    return kind(account_id, value) if value else NO_ENTRY


def _batch_keys(batch_id: str | None) -> list[str]:
    """A batch's members and its record, or two empty names for a job of no batch."""
    return [batch_key(batch_id), batch_info_key(batch_id)] if batch_id else ["", ""]


def _job_keys(job_id: str, new: NewJob) -> tuple[list[str], list[str]]:
    """A job's own keys, as create.lua and uncreate.lua take them (its hash, its idempotency
    entry's bucket and old key, its ref entry's bucket and old key: "" if none), and the
    two entries' fields."""
    by_key = _entry(idempotency_entry, new.account_id, new.idempotency_key)
    by_ref = _entry(ref_entry, new.account_id, new.ref)
    keys = [job_key(job_id), by_key.bucket, by_key.old_key, by_ref.bucket, by_ref.old_key]
    return keys, [by_key.field, by_ref.field]


# The scripts' answers, decoded: no code outside these reads a script's answer by position.


def _stored(answer: list[Any]) -> Stored:
    """create.lua: {job_id, 1, ...} when created, {existing_job_id, 0} when the key named one."""
    return Stored(job_id=answer[0], is_new=bool(int(answer[1])))


def _joined(answer: list[Any]) -> bool:
    """create.lua, for a row whose key named a known job: {existing_job_id, 0, 1 if this row
    put the job in the batch, 0 if it was there already (from an earlier row)}."""
    return not _stored(answer).is_new and len(answer) > 2 and bool(int(answer[2]))


def _created(answer: list[Any]) -> tuple[str, str]:
    """create.lua, for a job it created: {job_id, 1, the job its ref named before or ""}."""
    return answer[0], answer[2]


def _due(flat: list[str]) -> list[Due]:
    """due.lua: {job_id, lane, job_id, lane, ...}."""
    return [Due(job_id=flat[i], lane=cast(Lane, flat[i + 1])) for i in range(0, len(flat), 2)]


def _claim_answer(job_id: str, token: str, answer: list[str]) -> Claim | NotClaimed:
    """claim.lua: {CLAIM_OK, spec, attempts, uncertain_since, reconcile_first, lane,
    failing_since, account_id, ref, idempotency_key, batch_id}, or {code, detail?}."""
    code = ClaimCode(answer[0])
    if code is not ClaimCode.OK:
        return NotClaimed(code, _detail(answer))
    return Claim(
        job_id=job_id,
        token=token,
        spec_json=answer[1],
        attempts=int(answer[2]),
        uncertain_since=float(answer[3]) if answer[3] else None,
        reconcile_first=answer[4] == "1",
        lane=cast(Lane, answer[5]),
        failing_since=float(answer[6]) if answer[6] else None,
        apart=tuple(
            (name, value) for name, value in zip(SPEC_FIELDS, answer[7:11], strict=True) if value
        ),
    )


def _kept(answer: list[str]) -> Kept:
    """replay.lua, purge.lua: {code, detail?} when the job was left as it was."""
    return Kept(DeadLetterCode(answer[0]), _detail(answer))


def _detail(answer: list[str]) -> str:
    return answer[1] if len(answer) > 1 else ""


def new_job_id() -> str:
    """128 random bits in 26 characters of lowercase base32 (a-z, 2-7): a job id is in its
    key and in each index entry naming it, so 6 fewer than a UUID's 32 hex digits save about
    25 bytes per job; lowercase letters and digits only, as a ticket's marker tag must
    survive providers that lowercase tags. Ids made before (32 hex digits) stay valid."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def stamp(moment: float) -> str:
    """A time as the store keeps it: Unix seconds to the millisecond (fewer digits, fewer
    bytes in every record)."""
    return f"{moment:.3f}"


def _error(raw: str | None) -> JobError | None:
    """The job's last error, as stored (the one parser of it on the Python side)."""
    return JobError.model_validate_json(raw) if raw else None


def _error_kind(raw: str | None) -> ErrorKind | None:
    """The kind of the job's last error, read as leniently as replay.lua reads it: only the
    kind has to make sense; None if there is none."""
    try:
        kind = json.loads(raw).get("kind") if raw else None
        return ErrorKind(kind) if kind else None
    except (ValueError, AttributeError, TypeError):
        return None


def _attempt_log(raw: str | None) -> list[AttemptEntry]:
    """The job's last requests, as stored: one JSON line each; a line this version cannot
    read (another version's, or damaged) is left out rather than hiding the record."""
    entries = []
    for line in (raw or "").splitlines():
        try:
            entries.append(AttemptEntry.model_validate_json(line))
        except ValueError:
            continue
    return entries


def record_fields(names: Sequence[str]) -> list[str]:
    """The fields to read (HMGET) for ``names`` from a record of either layout: each name,
    then each one's compact name (keys.py COMPACT_FIELDS; the name again if it has none)."""
    return [*names, *(COMPACT_FIELDS.get(name, name) for name in names)]


def record_values(names: Sequence[str], values: Sequence[str | None]) -> list[str | None]:
    """What HMGET answered for ``record_fields(names)``: one value per name, under its full
    name or else its compact one."""
    return [
        values[i] if values[i] is not None else values[len(names) + i] for i in range(len(names))
    ]


# A compact name -> the full one (keys.py COMPACT_FIELDS).
FULL_NAMES = {short: name for name, short in COMPACT_FIELDS.items()}


def _record(job_id: str, raw: dict[str, str]) -> JobRecord:
    """Build the public view, from a record of either layout; the stored spec (the ticket
    body) stays out of it."""
    raw = {FULL_NAMES.get(name, name): value for name, value in raw.items()}
    ticket = (
        TicketIds(id=raw["ticket_id"], remote_id=raw.get("remote_id") or None)
        if raw.get("ticket_id")
        else None
    )
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
        error=_error(raw.get("error")),
        attempt_log=_attempt_log(raw.get("attempt_log")),
        created_at=float(raw["created_at"]),
        # a job not moved since created has no updated_at yet; a succeeded one keeps its
        # finished_at only
        updated_at=float(raw.get("updated_at") or raw.get("finished_at") or raw["created_at"]),
        **optional,
    )


def spec_from_claim(claim: Claim) -> JobSpec:
    """Re-validate what was stored: a record written by another version may not fit. Read
    as the producer's mapping was validated (``load_json``, then the same model), so the
    worker accepts whatever the door did: pydantic's own JSON reader stops at another depth.
    The fields the record keeps on their own go back in (a spec stored before it kept them
    so holds them already)."""
    stored = load_json(claim.spec_json)
    if isinstance(stored, dict):
        for name, value in claim.apart:
            stored.setdefault(name, value)
    return JobSpec.model_validate(stored)
