"""The fleet's numbers, read from Redis for people: what the dashboard, ``/v1/stats``,
``ticketq stats`` and the web service's ``/metrics`` show.

The types here are the one shape of those numbers; times are aware datetimes (ISO 8601
in JSON). ``Stats.snapshot`` reads them in a bounded number of round trips, whatever the
number of jobs: counters kept by the scripts that move jobs, not scans.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


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
