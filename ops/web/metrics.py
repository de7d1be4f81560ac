"""The fleet's numbers for Prometheus: ``GET /metrics`` on the web service.

Each scrape reads one ``Stats.snapshot`` from Redis (a bounded number of round trips) and
shows it as gauges through a collector of that snapshot: jobs by lane and state, jobs
waiting, due jobs by why, the oldest waiting job's age, the key's health, the rate
limit's use and the workers alive. A worker's own counters (attempts, latency, retries)
are on its ``TICKETQ_METRICS_PORT`` (``worker/delivery/metrics.py``). Readable with a
web token of any scope or ``TICKETQ_METRICS_TOKEN``; 401 otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ops.web.auth import TokenBook
from ops.web.errors import ApiError
from worker.store.stats import Snapshot, Stats

__all__ = ["SnapshotCollector", "router"]

router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="A web token, or TICKETQ_METRICS_TOKEN.")


class SnapshotCollector(Collector):
    """One snapshot's numbers as Prometheus gauges."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        jobs = GaugeMetricFamily(
            "ticketq_jobs",
            "Jobs by lane and state: queued, running, retrying now; succeeded, cancelled in "
            "the last hour; failed: the dead letters kept.",
            labels=["lane", "state"],
        )
        for lane, states in snap.jobs.items():
            for state, count in states.items():
                jobs.add_metric([lane, state], count)
        yield jobs
        waiting = GaugeMetricFamily(
            "ticketq_waiting_jobs",
            "Jobs queued for a worker (jobs, not messages).",
            labels=["lane"],
        )
        for lane, count in snap.waiting.items():
            waiting.add_metric([lane], count)
        yield waiting
        yield GaugeMetricFamily(
            "ticketq_oldest_waiting_seconds",
            "Age of the oldest queued job; 0 when none waits.",
            value=snap.oldest_waiting_seconds or 0.0,
        )
        due = GaugeMetricFamily(
            "ticketq_due_jobs",
            "Jobs in the due index, by why: retrying (a retry's due time), held_back (bulk "
            "jobs the rate handed back), overdue (due, not yet handed to a worker).",
            labels=["reason"],
        )
        for reason, count in snap.due.model_dump().items():
            due.add_metric([reason], count)
        yield due
        yield from _keys(snap)
        yield from _limit(snap)
        yield GaugeMetricFamily(
            "ticketq_workers_alive",
            "Worker processes that said they were alive lately.",
            value=len(snap.workers),
        )


def _keys(snap: Snapshot) -> Iterator[Metric]:
    """Each API key's health, by its salted fingerprint (never the key)."""
    refused = GaugeMetricFamily(
        "ticketq_key_refused",
        "1 while StackOne refuses the API key (401/403) and no request has succeeded since.",
        labels=["fingerprint"],
    )
    outage = GaugeMetricFamily(
        "ticketq_key_outage",
        "1 while most requests with the key fail (5xx, connection errors) and workers hold.",
        labels=["fingerprint"],
    )
    paused = GaugeMetricFamily(
        "ticketq_key_paused_seconds",
        "Seconds until the key's latest pause (429, refusal, outage) ends; 0: none.",
        labels=["fingerprint"],
    )
    for key in snap.keys:
        refused.add_metric([key.fingerprint], float(key.refused))
        outage.add_metric([key.fingerprint], float(key.outage))
        left = (key.paused_until - snap.at).total_seconds() if key.paused_until else 0.0
        paused.add_metric([key.fingerprint], max(left, 0.0))
    yield from (refused, outage, paused)


def _limit(snap: Snapshot) -> Iterator[Metric]:
    limit = snap.limit
    yield GaugeMetricFamily(
        "ticketq_rate_limit_per_minute",
        "The key's rate limit (TICKETQ_RATE_LIMIT), in requests per minute.",
        value=limit.per_minute,
    )
    yield GaugeMetricFamily(
        "ticketq_requests_last_minute",
        "Requests sent to StackOne in the last 60 seconds.",
        value=limit.last_minute,
    )
    yield GaugeMetricFamily(
        "ticketq_rate_limit_use",
        "Requests in the last minute over the limit (may pass 1 briefly).",
        value=limit.use,
    )


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


@router.get("/metrics", include_in_schema=False)
def metrics(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Response:
    book: TokenBook = request.app.state.tokens
    if not book.reads_metrics(credentials.credentials if credentials else None):
        raise ApiError(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
    stats = Stats(request.app.state.redis, request.app.state.settings)
    return Response(exposition(stats.snapshot(time.time())), media_type=CONTENT_TYPE_LATEST)
