"""A worker process's own numbers for Prometheus: its attempts, StackOne's latency, its
retries, its waits for the limiter and its reconciliations.

The runner tells them what happened (``attempted``, ``waited``, ``reconciled``); the
decisions never see them. Each process counts in its own registry and, with
``TICKETQ_METRICS_PORT``, serves it (``serve``); the fleet-wide numbers kept in Redis are
the web service's ``/metrics`` (``ops/web/metrics.py``). Every label value is one of a
fixed few (no job, account or ref), and each series exists from the start at 0, so a
rate() sees its first increase.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from itertools import product

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from worker.delivery.attempt import Attempt, Outcome, RetryReason, retry_reason
from worker.limits.rate import Reason

__all__ = ["LATENCY_METRIC", "ReconcileResult", "WorkerMetrics"]

log = logging.getLogger("ticketq.worker")

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none", "other")
# From a fast stand-in to StackOne's 60 s provider timeout.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Reasons admit.lua gives for holding a request back (ADMITTED and PROBE let it go).
WAIT_REASONS = tuple(r for r in Reason if r not in (Reason.ADMITTED, Reason.PROBE))

# Read by the bench too (``ops/bench/scenarios.py``: how long requests took as workers saw them).
LATENCY_METRIC = "ticketq_stackone_latency_seconds"


class ReconcileResult(StrEnum):
    """What looking for an uncertain job's ticket came to."""

    ADOPTED = "adopted"  # its ticket was found and is now the job's
    RESENT = "resent"  # no ticket since the attempt: it is sent again
    WAITING = "waiting"  # none listed yet: StackOne's listing may lag, look again later
    TO_PERSON = "to_person"  # only tickets a person can tell apart: failed ``uncertain``
    UNREADABLE = "unreadable"  # the listing could not be read: look again later


class WorkerMetrics:
    """The counters and histograms of one worker process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        attempts = Counter(
            "ticketq_attempts",
            "Requests to StackOne to create a ticket, by what they made of the job "
            "(succeeded, failed, again: sent again in this delivery, retrying: handed back) "
            "and the answer's status class (none: no HTTP answer).",
            ["outcome", "status_class"],
            registry=registry,
        )
        self._attempts = {
            (outcome, status): attempts.labels(outcome.value, status)
            for outcome, status in product(Outcome, STATUS_CLASSES)
        }
        self._latency = Histogram(
            LATENCY_METRIC,
            "Seconds from sending a create request to its answer (or its failure).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        retries = Counter(
            "ticketq_retries",
            "Failed attempts to be tried again, by why and where they wait: in_delivery "
            "(in the worker, shortly) or due_index (handed back).",
            ["reason", "where"],
            registry=registry,
        )
        self._retries = {
            (reason, outcome): retries.labels(reason.value, where)
            for reason in RetryReason
            for outcome, where in ((Outcome.AGAIN, "in_delivery"), (Outcome.RETRYING, "due_index"))
        }
        waits = Counter(
            "ticketq_limiter_waits",
            "Requests the limiter held back, by why (reserved: given a later moment; line: "
            "joined its lane's fair line; key_paused, account_paused, account_busy, "
            "key_refused, outage).",
            ["reason"],
            registry=registry,
        )
        waited = Counter(
            "ticketq_limiter_wait_seconds",
            "Seconds the limiter asked held-back requests to wait, by why.",
            ["reason"],
            registry=registry,
        )
        self._waits: dict[Reason, tuple[Counter, Counter]] = {
            reason: (waits.labels(_name(reason)), waited.labels(_name(reason)))
            for reason in WAIT_REASONS
        }
        reconciliations = Counter(
            "ticketq_reconciliations",
            "Uncertain jobs looked for among StackOne's tickets, by what was found.",
            ["result"],
            registry=registry,
        )
        self._reconciliations = {
            result: reconciliations.labels(result.value) for result in ReconcileResult
        }

    def attempted(self, attempt: Attempt) -> None:
        status = _status_class(attempt.status)
        self._attempts[attempt.outcome, status].inc()
        self._latency.observe(attempt.latency)
        if attempt.failure is not None and attempt.outcome in (Outcome.AGAIN, Outcome.RETRYING):
            self._retries[retry_reason(attempt.failure), attempt.outcome].inc()

    def waited(self, reason: Reason, seconds: float) -> None:
        """The limiter held a request back for ``seconds``."""
        count, total = self._waits[reason]
        count.inc()
        total.inc(max(seconds, 0.0))

    def reconciled(self, result: ReconcileResult) -> None:
        self._reconciliations[result].inc()

    def serve(self, host: str, port: int) -> bool:
        """Serve the registry on ``host:port`` (a thread); False, said in one line, if it
        cannot be bound: the worker goes on working without its metrics (two workers on
        one host given the same port: the second one's are not served)."""
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning(
                "metrics not served: cannot listen on %s:%d (%s); give each worker process "
                "its own TICKETQ_METRICS_PORT",
                host,
                port,
                exc.strerror or exc,
            )
            return False
        log.info("metrics served on http://%s:%d/metrics", host, port)
        return True


def _name(reason: Reason) -> str:
    return reason.name.lower()


def _status_class(status: int | None) -> str:
    """The label of a status: its class, ``none`` without one, ``other`` out of range."""
    if status is None:
        return "none"
    return f"{status // 100}xx" if 200 <= status < 600 else "other"
