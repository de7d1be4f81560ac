"""The fleet's numbers, read from Redis for people: what the dashboard, ``/v1/stats``,
``ticketq stats`` and the web service's ``/metrics`` show.

The types here are the one shape of those numbers; times are aware datetimes (ISO 8601
in JSON). ``Stats.snapshot`` reads them in a bounded number of round trips, whatever the
number of jobs: counters kept by the scripts that move jobs, not scans.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import redis
from pydantic import BaseModel

from worker.settings import Settings
from worker.store.jobs import record_fields, record_values
from worker.store.keys import (
    COUNTS,
    DUE_INDEX,
    JOB_PREFIX,
    MINUTE_PREFIX,
    QUEUES,
    WORKERS,
    queued_key,
)
from worker.store.limits import KeyState, key_states
from worker.store.workers import Beat, alive

LANES = tuple(QUEUES)  # interactive, bulk
LIVE = ("queued", "running", "retrying")  # counted as they are now
FINISHED = ("succeeded", "failed", "cancelled")  # counted per minute as they finish
HOUR = 60  # minutes of throughput kept in a snapshot
RECOUNT_FIELDS = ("state", "lane", "held_back", "updated_at", "created_at")  # what recount reads


class Minute(BaseModel):
    """One minute of the last hour: what finished in it, and the requests sent."""

    at: datetime  # the minute's start
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    attempts: int = 0  # requests sent to StackOne (answered or not)


class Due(BaseModel):
    """The due index, by why a job waits in it."""

    retrying: int  # waiting for a retry's due time
    held_back: int  # bulk jobs the rate limit handed back unsent, waiting for their turn
    overdue: int  # due already, not yet handed to a worker


class LimitUse(BaseModel):
    """The key's rate limit (``TICKETQ_RATE_LIMIT``) against the requests sent."""

    per_minute: float  # the limit, in requests per minute
    last_minute: int  # requests sent in the last 60 s
    use: float  # last_minute / per_minute (may pass 1.0 briefly)


class KeyStatus(BaseModel):
    """One API key the workers use, by its salted fingerprint (never the key)."""

    fingerprint: str
    refused: bool  # StackOne refused it (401/403) and no request has succeeded since
    refusal: str | None = None  # KeyHealth.refusal(): status and StackOne's message
    refused_since: datetime | None = None
    outage: bool = False  # most requests fail (5xx, connection errors): workers hold
    paused_until: datetime | None = None  # the latest of its pauses (429, refusal, outage)


class WorkerStatus(BaseModel):
    """A worker process that said it was alive within the last ``WORKER_TIMEOUT`` s."""

    name: str  # Celery's node name, e.g. celery@host
    pid: int
    concurrency: int
    started_at: datetime
    seen_at: datetime
    key_fingerprint: str


class Snapshot(BaseModel):
    """Every number the dashboard shows, read at ``at``."""

    at: datetime
    # lane -> state -> jobs. queued, running, retrying: jobs in that state now;
    # succeeded, cancelled: finished in the last hour; failed: the dead letters kept.
    jobs: dict[str, dict[str, int]]
    waiting: dict[str, int]  # lane -> queue depth in jobs (queued, not messages)
    oldest_waiting_seconds: float | None  # age of the oldest queued job; None: none waits
    due: Due
    throughput: list[Minute]  # the last 60 minutes, oldest first
    limit: LimitUse
    keys: list[KeyStatus]
    workers: list[WorkerStatus]

    def public(self) -> dict[str, Any]:
        """The JSON of ``ticketq stats --json`` and ``GET /v1/stats``."""
        return self.model_dump(mode="json")


class Stats:
    """Reads the fleet's numbers: two round trips whatever the number of jobs (the counters,
    buckets and heartbeats in one transaction, then the state of the keys the live workers
    use), never a scan of job records."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._redis = client
        self._rate = settings.parsed_rate_limit

    def snapshot(self, now: float) -> Snapshot:
        """The numbers at ``now`` (Unix seconds)."""
        minutes = [int(now // 60) - HOUR + 1 + i for i in range(HOUR)]
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(COUNTS)
            for lane in LANES:
                pipe.zrange(queued_key(lane), 0, 0, withscores=True)
            pipe.zcount(DUE_INDEX, "-inf", now)
            for minute in minutes:
                pipe.hgetall(f"{MINUTE_PREFIX}{minute}")
            pipe.hgetall(WORKERS)
            found = pipe.execute()
        counts = _ints(found[0])
        firsts = cast(list[list[tuple[str, float]]], found[1 : 1 + len(LANES)])
        overdue = int(found[1 + len(LANES)])
        buckets = [_ints(raw) for raw in found[2 + len(LANES) : -1]]
        workers = alive(found[-1], now)
        fingerprints = sorted({beat.worker.key_fingerprint for beat in workers})
        keys = key_states(self._redis, fingerprints) if fingerprints else []
        by_minute = dict(zip(minutes, buckets, strict=True))
        throughput = [_minute(minute, bucket) for minute, bucket in by_minute.items()]
        return Snapshot(
            at=_time(now),
            jobs=_jobs(counts, buckets),
            waiting={lane: counts.get(f"{lane}:queued", 0) for lane in LANES},
            oldest_waiting_seconds=_oldest(firsts, now),
            due=_due(counts, overdue),
            throughput=throughput,
            limit=self._limit(_sent_since(now - 60, now, by_minute)),
            keys=[_key_status(state, now) for state in keys],
            workers=[_worker_status(beat) for beat in workers],
        )

    def _limit(self, last_minute: int) -> LimitUse:
        per_minute = self._rate.requests * 60 / self._rate.per_seconds
        return LimitUse(
            per_minute=per_minute, last_minute=last_minute, use=last_minute / per_minute
        )


def recount(client: redis.Redis, page: int = 1000) -> dict[str, int]:
    """Rebuild the counters and the queued sets from the job records; the counts found.

    The repair path, not the way numbers are read: it scans every record, a page a round
    trip. For a Redis that held jobs before the counters existed (an upgrade), or counters
    someone changed by hand; run it with the workers stopped, or a job that moves during
    the scan may be counted in its old state."""
    counts: Counter[str] = Counter()
    queued: dict[str, dict[str, float]] = {}
    for keys in _pages(cast(Iterator[str], client.scan_iter(f"{JOB_PREFIX}*", count=page)), page):
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, *record_fields(RECOUNT_FIELDS))
            rows = cast(list[list[str | None]], pipe.execute())
        found = [record_values(RECOUNT_FIELDS, row) for row in rows]
        for key, (state, lane, held, updated, created) in zip(keys, found, strict=True):
            lane = lane or "interactive"
            if state in (*LIVE, "failed"):
                counts[f"{lane}:{state}"] += 1
            if state == "retrying" and held:
                counts[f"{lane}:held_back"] += 1
            if state == "queued":  # updated_at: when it became queued (or was sent again);
                # a job never moved since it was created has none: created_at
                since = float(updated or created or 0)
                queued.setdefault(lane, {})[key.removeprefix(JOB_PREFIX)] = since
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(COUNTS, *(queued_key(lane) for lane in {*LANES, *queued}))
        if counts:
            pipe.hset(COUNTS, items=[item for pair in counts.items() for item in pair])
        for lane, members in queued.items():
            pipe.zadd(queued_key(lane), members)
        pipe.execute()
    return dict(counts)


def _pages(keys: Iterator[str], size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for key in keys:
        page.append(key)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def _time(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, UTC)


def _ints(raw: Mapping[str, str]) -> dict[str, int]:
    return {field: int(value) for field, value in raw.items()}


def _jobs(
    counts: Mapping[str, int], buckets: Sequence[Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """lane -> state -> jobs: live states and dead letters from the counters; succeeded and
    cancelled summed over the hour's minutes."""
    jobs = {}
    for lane in LANES:
        row = {state: counts.get(f"{lane}:{state}", 0) for state in (*LIVE, "failed")}
        for state in ("succeeded", "cancelled"):
            row[state] = sum(bucket.get(f"{lane}:{state}", 0) for bucket in buckets)
        jobs[lane] = {state: row[state] for state in (*LIVE, *FINISHED)}
    return jobs


def _oldest(firsts: Sequence[Sequence[tuple[str, float]]], now: float) -> float | None:
    """Age of the oldest queued job, from each lane's first queued entry."""
    since = [score for first in firsts for _, score in first]
    return max(now - min(since), 0.0) if since else None


def _due(counts: Mapping[str, int], overdue: int) -> Due:
    held = sum(counts.get(f"{lane}:held_back", 0) for lane in LANES)
    retrying = sum(counts.get(f"{lane}:retrying", 0) for lane in LANES)
    return Due(retrying=retrying - held, held_back=held, overdue=overdue)


def _minute(minute: int, bucket: Mapping[str, int]) -> Minute:
    finished = {
        state: sum(bucket.get(f"{lane}:{state}", 0) for lane in LANES) for state in FINISHED
    }
    return Minute(at=_time(minute * 60), attempts=_sent(bucket), **finished)


def _sent(bucket: Mapping[str, int]) -> int:
    """Requests sent in a minute: the sum of its seconds."""
    return sum(count for field, count in bucket.items() if field.startswith("sent:"))


def _sent_since(start: float, end: float, buckets: Mapping[int, Mapping[str, int]]) -> int:
    """Requests sent in the whole seconds after ``start`` up to ``end``'s."""
    total = 0
    for second in range(int(start) + 1, int(end) + 1):
        total += buckets.get(second // 60, {}).get(f"sent:{second % 60}", 0)
    return total


def _key_status(state: KeyState, now: float) -> KeyStatus:
    refusal = state.refusal
    said = None
    if refusal is not None:
        said = f"{refusal.status}: {refusal.message}" if refusal.status else refusal.message
    paused = state.paused_until if state.paused_until and state.paused_until > now else None
    return KeyStatus(
        fingerprint=state.fingerprint,
        refused=refusal is not None,
        refusal=said,
        refused_since=_time(refusal.since) if refusal is not None else None,
        outage=state.outage,
        paused_until=_time(paused) if paused is not None else None,
    )


def _worker_status(beat: Beat) -> WorkerStatus:
    worker = beat.worker
    return WorkerStatus(
        name=worker.name,
        pid=worker.pid,
        concurrency=worker.concurrency,
        started_at=_time(worker.started_at),
        seen_at=_time(beat.seen_at),
        key_fingerprint=worker.key_fingerprint,
    )
