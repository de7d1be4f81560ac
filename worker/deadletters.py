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

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from celery import Celery

from worker.contract import ErrorKind, JobRecord
from worker.dispatch import dispatch
from worker.jobstore import Due, JobStore, stamp
from worker.keys import (
    DUE_INDEX,
    FAILED_INDEX,
    batch_key,
    idempotency_key,
    job_key,
    lua_script,
    ref_key,
)

PAGE = 500  # failed index entries read per round trip while filtering


@dataclass(frozen=True)
class Selection:
    """Which failed jobs a listing or an ``--all`` means; None matches everything."""

    account_id: str | None = None
    reason: ErrorKind | None = None
    failed_before: float | None = None  # Unix seconds

    def admits(self, account_id: str, error_json: str | None) -> bool:
        if self.account_id is not None and account_id != self.account_id:
            return False
        return self.reason is None or _kind(error_json) == self.reason


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
    """What a replay or purge did, job by job, for the summary line."""

    done: list[str]
    skipped: list[Skipped]


@dataclass(frozen=True)
class Requeued:
    """Jobs now queued and in the outbox, to be sent by the caller (or else the scheduler)."""

    due: list[Due]
    skipped: list[Skipped]


class DeadLetters:
    def __init__(self, store: JobStore, *, requeue_after: float) -> None:
        self._store = store
        self._redis = store.redis
        self._requeue_after = requeue_after
        self._replay = self._redis.register_script(lua_script("replay.lua"))
        self._purge = self._redis.register_script(lua_script("purge.lua"))

    def recent(self, selection: Selection | None = None, limit: int = 50) -> list[JobRecord]:
        """Failed jobs matching the selection, most recently failed first."""
        records: list[JobRecord] = []
        for job_id in self._matching(selection or Selection()):
            record = self._store.get(job_id)
            if record is not None:
                records.append(record)
            if len(records) >= limit:
                break
        return records

    def matching(self, selection: Selection) -> list[str]:
        """Every failed job id the selection admits, most recently failed first."""
        return list(self._matching(selection))

    def requeue(self, job_ids: Iterable[str]) -> Requeued:
        """Failed jobs back to ``queued`` and into the outbox; the caller sends them."""
        due: list[Due] = []
        skipped: list[Skipped] = []
        for job_id in job_ids:
            now = time.time()
            answer = self._replay(
                keys=[job_key(job_id), FAILED_INDEX, DUE_INDEX],
                args=[stamp(now), stamp(now + self._requeue_after), job_id],
            )
            if answer[0] == "ok":
                due.append(Due(job_id=job_id, lane=answer[1]))
            else:
                skipped.append(_refusal(job_id, answer))
        return Requeued(due, skipped)

    def replay(self, app: Celery, job_ids: Iterable[str], bulk_batch: int) -> Report:
        """Requeue, then send. If sending fails, the jobs wait in the outbox for the scheduler."""
        requeued = self.requeue(job_ids)
        if requeued.due:
            dispatch(app, self._store, requeued.due, bulk_batch)
        return Report(done=[due.job_id for due in requeued.due], skipped=requeued.skipped)

    def purge(self, job_ids: Iterable[str]) -> Report:
        """Delete failed jobs, and the ref and idempotency keys that still name them."""
        done: list[str] = []
        skipped: list[Skipped] = []
        for job_id in job_ids:
            answer = self._purge(keys=self._purge_keys(job_id), args=[job_id])
            if answer[0] == "ok":
                done.append(job_id)
            else:
                skipped.append(_refusal(job_id, answer))
        return Report(done, skipped)

    def _purge_keys(self, job_id: str) -> list[str]:
        """The job's index keys, read first; the fields they come from never change."""
        account, ref, idem, batch = cast(
            list[str | None],
            self._redis.hmget(job_key(job_id), "account_id", "ref", "idempotency_key", "batch_id"),
        )
        keys = [job_key(job_id), FAILED_INDEX, DUE_INDEX]
        if account is None:
            return [*keys, "", "", ""]
        return [
            *keys,
            ref_key(account, ref) if ref else "",
            idempotency_key(account, idem) if idem else "",
            batch_key(batch) if batch else "",
        ]

    def _matching(self, selection: Selection) -> Iterator[str]:
        """Walk the failed index newest first, a page at a time, filtering in one round trip
        per page; a job failing or leaving meanwhile may be missed or seen twice."""
        newest = "+inf" if selection.failed_before is None else stamp(selection.failed_before)
        start = 0
        while True:
            ids = cast(
                list[str],
                self._redis.zrevrangebyscore(FAILED_INDEX, newest, "-inf", start=start, num=PAGE),
            )
            if not ids:
                return
            yield from self._admitted(selection, ids)
            start += len(ids)

    def _admitted(self, selection: Selection, ids: Sequence[str]) -> Iterator[str]:
        if selection.account_id is None and selection.reason is None:
            yield from ids
            return
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(job_key(job_id), "account_id", "error")
        rows = cast(list[list[str | None]], pipe.execute())
        for job_id, (account, error) in zip(ids, rows, strict=True):
            if account is not None and selection.admits(account, error):
                yield job_id


def _kind(error_json: str | None) -> str | None:
    if not error_json:
        return None
    try:
        error: Any = json.loads(error_json)
    except ValueError:
        return None
    kind = error.get("kind") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


_REFUSALS = {"missing": "not found", "not_failed": "not failed", "has_ticket": "has a ticket"}


def _refusal(job_id: str, answer: list[str]) -> Skipped:
    """A script's refusal ({code, detail?}), as the reason a person reads."""
    detail = answer[1] if len(answer) > 1 else ""
    return Skipped(job_id, _REFUSALS.get(answer[0], answer[0]), detail)
