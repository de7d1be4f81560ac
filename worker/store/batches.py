"""Batches, for the people who import them: what a batch was (when it was opened, for
which account, from which file, how many rows were read, accepted, already known or
rejected), its jobs in the order of the input's rows, and each row's outcome for the
correlation report.

A batch's members are a sorted set scored by each row's position in the input
(``create.lua`` writes them, ``transition.lua`` and ``cancel.lua`` keep them alive): a
row whose idempotency key named a job already (an import run again) is that job's row in
the new batch too, so its export still says which ticket each row became. The batch and
its record expire ``TICKETQ_SUCCEEDED_TTL`` after the last move of any of its jobs;
``ticketq:batches`` lists them by when they were opened, and forgets those gone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from pydantic import BaseModel

from worker.contract import JobState, Timestamp
from worker.store.jobs import JobStore, record_fields, record_values
from worker.store.keys import BATCH_INDEX, batch_info_key, batch_key, job_key

PAGE = 5_000  # members read per round trip
COUNTS = ("rows", "accepted", "already_known", "rejected")
ROW_FIELDS = ("state", "ref", "ticket_id", "remote_id", "error", "attempts")  # a row's outcome
# Every state a batch's job can be in, in the order of a job's life; "missing": its record
# expired or was purged.
STATES = (*(str(state) for state in JobState), "missing")


@dataclass(frozen=True)
class BatchInfo:
    """A batch as it was opened, and its counts so far."""

    batch_id: str
    opened_at: float
    account_id: str | None  # None: its rows name several accounts
    source: str | None  # the file it was imported from, if any
    rows: int = 0  # input rows read, valid or not
    accepted: int = 0  # rows queued as new jobs
    already_known: int = 0  # rows whose idempotency key named a job already
    rejected: int = 0  # rows refused by validation (with --skip-invalid)


@dataclass(frozen=True)
class Progress:
    """Where a batch's jobs stand: how many in each state (``missing``: expired or
    purged), and when the last one finished."""

    counts: Counter[str]
    last_finished_at: float | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def final(self) -> int:
        states = [state for state in JobState if state.is_final]
        return sum(self.counts[state] for state in states) + self.counts["missing"]

    @property
    def done(self) -> bool:
        return self.final == self.total


class BatchStatus(BaseModel):
    """The published shape of a batch (``ticketq batch --json``, ``GET /v1/batches/{id}``)."""

    batch_id: str
    account_id: str | None  # None: its rows name several accounts
    source: str | None  # the file it was imported from, if any
    opened_at: Timestamp
    finished_at: Timestamp | None  # its last job's end, once every job is final
    rows: int  # input rows read, valid or not
    accepted: int  # rows queued as new jobs
    already_known: int  # rows whose idempotency key named a job already
    rejected: int  # rows refused by validation
    total: int  # its jobs
    done: int  # its jobs that are final (or gone)
    final: bool  # every job is
    counts: dict[str, int]  # jobs per state (``STATES``, in that order)
    rate: float | None  # jobs finished per second since it was opened (until the last)


@dataclass(frozen=True)
class Summary:
    """A batch's record and where its jobs stand, read at ``now``: what ``ticketq batch``,
    ``batches`` and the web API show."""

    info: BatchInfo
    progress: Progress
    now: float

    @property
    def finished_at(self) -> float | None:
        """When its last job finished, once every job is final."""
        return self.progress.last_finished_at if self.progress.done else None

    @property
    def rate(self) -> float | None:
        """Jobs finished per second since the batch was opened (until its last finished)."""
        end = self.finished_at or self.now
        elapsed = end - self.info.opened_at
        return self.progress.final / elapsed if elapsed > 0 else None

    def status(self) -> BatchStatus:
        info, progress = self.info, self.progress
        counts = {state: progress.counts[state] for state in STATES}
        counts.update({state: n for state, n in progress.counts.items() if state not in counts})
        return BatchStatus(
            batch_id=info.batch_id,
            account_id=info.account_id,
            source=info.source,
            opened_at=info.opened_at,
            finished_at=self.finished_at,
            rows=info.rows,
            accepted=info.accepted,
            already_known=info.already_known,
            rejected=info.rejected,
            total=progress.total,
            done=progress.final,
            final=progress.done,
            counts=counts,
            rate=self.rate,
        )

    def public(self) -> dict[str, Any]:
        """The stable JSON shape of ``batch --json`` and of each item of ``batches --json``:
        times as ISO 8601 in UTC."""
        return self.status().model_dump(mode="json")


@dataclass(frozen=True)
class JobRow:
    """One input row's outcome, for the correlation report."""

    position: int
    job_id: str
    ref: str | None
    state: str  # a JobState, or "missing" for a record gone
    ticket_id: str | None
    remote_id: str | None
    error_kind: str | None
    error_message: str | None
    attempts: int


class Batches:
    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._redis = store.redis

    def open(self, batch_id: str, *, at: float, account_id: str | None, source: str | None) -> None:
        """Record a batch before its first job is stored."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                batch_info_key(batch_id),
                mapping={
                    "opened_at": repr(at),
                    "account_id": account_id or "",
                    "source": source or "",
                },
            )
            self._keep(pipe, batch_id)
            pipe.zadd(BATCH_INDEX, {batch_id: at})
            pipe.execute()

    def forget(self, batch_id: str) -> None:
        """Drop the record of a batch that was not stored after all."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(batch_info_key(batch_id))
            pipe.zrem(BATCH_INDEX, batch_id)
            pipe.execute()

    def count(self, batch_id: str, **added: int) -> None:
        """Add to a batch's counts (``rows``, ``accepted``, ``already_known``, ``rejected``)."""
        unknown = set(added) - set(COUNTS)
        if unknown:
            raise ValueError(f"no such batch count: {sorted(unknown)}")
        with self._redis.pipeline(transaction=True) as pipe:
            for name, value in added.items():
                if value:
                    pipe.hincrby(batch_info_key(batch_id), name, value)
            self._keep(pipe, batch_id)
            pipe.execute()

    def info(self, batch_id: str) -> BatchInfo | None:
        raw = cast(dict[str, str], self._redis.hgetall(batch_info_key(batch_id)))
        return _info(batch_id, raw) if raw else None

    def recent(self, limit: int = 20, account_id: str | None = None) -> list[BatchInfo]:
        """The newest batches first (of one account, if given); a batch gone is forgotten."""
        found: list[BatchInfo] = []
        start = 0
        while len(found) < limit:
            ids = cast(list[str], self._redis.zrevrange(BATCH_INDEX, start, start + PAGE - 1))
            if not ids:
                break
            start += len(ids)
            with self._redis.pipeline(transaction=False) as pipe:
                for batch_id in ids:
                    pipe.hgetall(batch_info_key(batch_id))
                infos = cast(list[dict[str, str]], pipe.execute())
            gone = [batch_id for batch_id, raw in zip(ids, infos, strict=True) if not raw]
            if gone:
                self._redis.zrem(BATCH_INDEX, *gone)
                start -= len(gone)
            found += [
                info
                for info in (_info(b, raw) for b, raw in zip(ids, infos, strict=True) if raw)
                if account_id is None or info.account_id == account_id
            ]
        return found[:limit]

    def summary(self, batch_id: str, now: float) -> Summary | None:
        """The batch and where its jobs stand (None: no such batch, or expired)."""
        info = self.info(batch_id)
        return None if info is None else Summary(info, self.progress(batch_id), now)

    def size(self, batch_id: str) -> int:
        return self._redis.zcard(batch_key(batch_id))

    def pages(self, batch_id: str) -> Iterator[list[tuple[int, str]]]:
        """The batch's (position, job id) pairs in input order, a page at a time."""
        start = 0
        while True:
            page = cast(
                list[tuple[str, float]],
                self._redis.zrange(batch_key(batch_id), start, start + PAGE - 1, withscores=True),
            )
            if not page:
                return
            yield [(int(score), job_id) for job_id, score in page]
            start += len(page)

    def members(self, batch_id: str, start: int = 0, count: int = PAGE) -> list[str]:
        """The batch's job ids in input order, from the ``start``-th on."""
        return cast(list[str], self._redis.zrange(batch_key(batch_id), start, start + count - 1))

    def job_ids(self, batch_id: str) -> list[str]:
        return [job_id for page in self.pages(batch_id) for _, job_id in page]

    def progress(self, batch_id: str) -> Progress:
        """How many of the batch's jobs are in each state, read a page at a time."""
        counts: Counter[str] = Counter()
        last: float | None = None
        for page in self.pages(batch_id):
            with self._redis.pipeline(transaction=False) as pipe:
                for _, job_id in page:
                    pipe.hmget(job_key(job_id), "state", "finished_at")
                for state, finished in cast(list[list[str | None]], pipe.execute()):
                    counts[state or "missing"] += 1
                    if finished is not None:
                        last = max(last or 0.0, float(finished))
        return Progress(counts, last)

    def rows(self, page: Sequence[tuple[int, str]]) -> list[JobRow]:
        """Each row's outcome, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for _, job_id in page:
                pipe.hmget(job_key(job_id), *record_fields(ROW_FIELDS))
            found = cast(list[list[str | None]], pipe.execute())
        return [
            _row(position, job_id, record_values(ROW_FIELDS, values))
            for (position, job_id), values in zip(page, found, strict=True)
        ]

    def _keep(self, pipe: redis.client.Pipeline, batch_id: str) -> None:
        """A batch lives ``succeeded_ttl`` past its last change, like its jobs."""
        ttl = self.store.succeeded_ttl
        if ttl > 0:
            pipe.expire(batch_info_key(batch_id), ttl)
            pipe.expire(batch_key(batch_id), ttl)


def _info(batch_id: str, raw: dict[str, str]) -> BatchInfo:
    return BatchInfo(
        batch_id=batch_id,
        opened_at=float(raw.get("opened_at") or 0.0),
        account_id=raw.get("account_id") or None,
        source=raw.get("source") or None,
        **{name: int(raw.get(name) or 0) for name in COUNTS},
    )


def _row(position: int, job_id: str, values: list[str | None]) -> JobRow:
    state, ref, ticket_id, remote_id, error, attempts = values
    kind = message = None
    if error:
        try:
            decoded = json.loads(error)
            kind, message = decoded.get("kind"), decoded.get("message")
        except (ValueError, AttributeError):
            message = error
    return JobRow(
        position=position,
        job_id=job_id,
        ref=ref,
        state=state or "missing",
        ticket_id=ticket_id or None,
        remote_id=remote_id or None,
        error_kind=kind,
        error_message=message,
        attempts=int(attempts or 0),
    )
