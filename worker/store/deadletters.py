"""Dead letters: the failed jobs a person lists, replays or purges.

A failed job is kept (no TTL) with its last error and its place in the failed index, so
that someone can look at it and decide. Replaying re-queues the same job (same id, ref and
idempotency key) through the outbox, exactly as a new job is queued, so a crash between
re-queueing and sending loses nothing. A job whose ticket may exist (parked ``uncertain``,
``poison``, or an earlier ambiguous attempt) is marked to be reconciled before it is sent,
whatever ``TICKETQ_ON_AMBIGUOUS`` says: a replay never duplicates a ticket that exists.
Every change to a job is one Lua script, so two people replaying or purging the same job
at once cannot both act on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis

from worker.contract import ErrorKind, JobRecord
from worker.store.jobs import DeadLetterCode, Due, FailedJob, JobStore, Kept

_Done = TypeVar("_Done", Due, str)  # what acting on one job gives when it is done

PAGE = 500  # failed index entries read per round trip while filtering


@dataclass(frozen=True)
class Selection:
    """Which failed jobs a listing or an ``--all`` means; None matches everything."""

    account_id: str | None = None
    reason: ErrorKind | None = None
    failed_before: float | None = None  # Unix seconds

    def admits(self, job: FailedJob) -> bool:
        if self.account_id is not None and job.account_id != self.account_id:
            return False
        return self.reason is None or job.kind == self.reason


@dataclass(frozen=True)
class Skipped:
    """A job left as it was: ``why`` is "not found", "not failed" or "has a ticket"."""

    job_id: str
    why: str
    detail: str = ""

    @property
    def reason(self) -> str:
        return f"{self.why} ({self.detail})" if self.detail else self.why


@dataclass(frozen=True)
class Report:
    """What a replay or purge did, job by job, for the summary line. ``interrupted``: the
    Redis error that stopped it part way (the jobs after it were not touched); ``unsent``:
    why replayed jobs could not be sent now (they wait in the outbox for the scheduler)."""

    done: list[str]
    skipped: list[Skipped]
    interrupted: redis.RedisError | None = None
    unsent: Exception | None = None


@dataclass(frozen=True)
class Requeued:
    """Jobs now queued and in the outbox, to be sent by the caller (or else the scheduler),
    and the Redis error that stopped the requeueing part way, if one did."""

    due: list[Due]
    skipped: list[Skipped]
    interrupted: redis.RedisError | None = None

    def report(self, unsent: Exception | None = None) -> Report:
        done = [due.job_id for due in self.due]
        return Report(done, self.skipped, self.interrupted, unsent)


class DeadLetters:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def recent(self, selection: Selection | None = None, limit: int = 50) -> list[JobRecord]:
        """Failed jobs matching the selection, most recently failed first."""
        records: list[JobRecord] = []
        for job_id in self._matching(selection or Selection()):
            record = self.store.get(job_id)
            if record is not None:
                records.append(record)
            if len(records) >= limit:
                break
        return records

    def matching(self, selection: Selection) -> list[str]:
        """Every failed job id the selection admits, most recently failed first."""
        return list(self._matching(selection))

    def requeue(self, job_ids: Iterable[str], *, reconcile: bool = True) -> Requeued:
        """Failed jobs back to ``queued`` and into the outbox; the caller sends them (see
        ``JobStore.replay`` for ``reconcile``). A Redis error stops it: what was requeued
        before is returned with the error."""
        due, skipped, interrupted = _one_by_one(
            job_ids, lambda job_id: self.store.replay(job_id, reconcile=reconcile)
        )
        return Requeued(due, skipped, interrupted)

    def purge(self, job_ids: Iterable[str]) -> Report:
        """Delete failed jobs, and the ref and idempotency keys that still name them. A
        Redis error stops it: what was purged before is returned with the error."""
        done, skipped, interrupted = _one_by_one(job_ids, self._purge_one)
        return Report(done, skipped, interrupted=interrupted)

    def _purge_one(self, job_id: str) -> str | Kept:
        return self.store.purge(job_id) or job_id

    def _matching(self, selection: Selection) -> Iterator[str]:
        """Walk the failed index newest first, a page at a time, filtering in one round trip
        per page; a job failing or leaving meanwhile may be missed or seen twice."""
        start = 0
        while True:
            ids = self.store.failed_ids(PAGE, before=selection.failed_before, start=start)
            if not ids:
                return
            yield from self._admitted(selection, ids)
            start += len(ids)

    def _admitted(self, selection: Selection, ids: Sequence[str]) -> Iterator[str]:
        if selection.account_id is None and selection.reason is None:
            yield from ids
            return
        for job in self.store.failed_jobs(ids):
            if selection.admits(job):
                yield job.job_id


def _one_by_one(
    job_ids: Iterable[str], act: Callable[[str], _Done | Kept]
) -> tuple[list[_Done], list[Skipped], redis.RedisError | None]:
    """Act on each job in turn (each is one script, atomic on its own): what was done, what
    the store left as it was and why, and the Redis error that stopped it, if one did."""
    done: list[_Done] = []
    skipped: list[Skipped] = []
    for job_id in job_ids:
        try:
            outcome = act(job_id)
        except redis.RedisError as exc:
            return done, skipped, exc
        if isinstance(outcome, Kept):
            skipped.append(_skipped(job_id, outcome))
        else:
            done.append(outcome)
    return done, skipped, None


WHY = {  # the reason a person reads for each code a replay or purge answers
    DeadLetterCode.MISSING: "not found",
    DeadLetterCode.NOT_FAILED: "not failed",
    DeadLetterCode.HAS_TICKET: "has a ticket",
}


def _skipped(job_id: str, kept: Kept) -> Skipped:
    """Why the store left a job as it was, as the reason a person reads."""
    return Skipped(job_id, WHY[kept.code], kept.detail)
