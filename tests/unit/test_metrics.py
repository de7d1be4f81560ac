"""The numbers Prometheus reads: the fleet's gauges from a ``Snapshot`` (the web service's
``/metrics``) and a worker process's own registry, and what a worker does when its port is
taken."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.web.metrics import exposition
from worker.delivery.metrics import ReconcileResult, WorkerMetrics
from worker.limits.rate import Reason
from worker.store.stats import Due, KeyStatus, LimitUse, Snapshot, WorkerStatus

AT = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def snapshot(**changes: object) -> Snapshot:
    worker = WorkerStatus(
        name="celery@w1", pid=7, concurrency=32, started_at=AT, seen_at=AT, key_fingerprint="fp1"
    )
    values: dict[str, object] = {
        "at": AT,
        "jobs": {
            "bulk": {"queued": 40, "running": 3, "failed": 2},
            "interactive": {"succeeded": 9},
        },
        "waiting": {"bulk": 40, "interactive": 0},
        "oldest_waiting_seconds": 12.5,
        "due": Due(retrying=4, held_back=30, overdue=1),
        "throughput": [],
        "limit": LimitUse(per_minute=1000, last_minute=250, use=0.25),
        "keys": [
            KeyStatus(
                fingerprint="fp1",
                refused=True,
                refusal="401: invalid key",
                paused_until=AT + timedelta(seconds=20),
            )
        ],
        "workers": [worker, worker.model_copy(update={"pid": 8})],
    }
    return Snapshot.model_validate(values | changes)


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[name, frozenset(labels.items())]


def test_the_fleet_gauges_show_every_number_of_the_snapshot() -> None:
    found = samples(exposition(snapshot()).decode())

    assert value(found, "ticketq_jobs", lane="bulk", state="queued") == 40
    assert value(found, "ticketq_jobs", lane="bulk", state="failed") == 2
    assert value(found, "ticketq_jobs", lane="interactive", state="succeeded") == 9
    assert value(found, "ticketq_waiting_jobs", lane="bulk") == 40
    assert value(found, "ticketq_oldest_waiting_seconds") == 12.5
    assert value(found, "ticketq_due_jobs", reason="held_back") == 30
    assert value(found, "ticketq_due_jobs", reason="overdue") == 1
    assert value(found, "ticketq_key_refused", fingerprint="fp1") == 1
    assert value(found, "ticketq_key_outage", fingerprint="fp1") == 0
    assert value(found, "ticketq_key_paused_seconds", fingerprint="fp1") == 20
    assert value(found, "ticketq_rate_limit_per_minute") == 1000
    assert value(found, "ticketq_requests_last_minute") == 250
    assert value(found, "ticketq_rate_limit_use") == 0.25
    assert value(found, "ticketq_workers_alive") == 2


def test_a_quiet_fleet_shows_no_wait_and_no_pause() -> None:
    key = KeyStatus(fingerprint="fp1", refused=False, paused_until=AT - timedelta(seconds=5))
    found = samples(
        exposition(snapshot(oldest_waiting_seconds=None, keys=[key], workers=[])).decode()
    )

    assert value(found, "ticketq_oldest_waiting_seconds") == 0
    assert value(found, "ticketq_key_paused_seconds", fingerprint="fp1") == 0
    assert value(found, "ticketq_workers_alive") == 0


def test_a_workers_series_exist_at_zero_before_anything_happens() -> None:
    sample = WorkerMetrics().registry.get_sample_value

    assert sample("ticketq_attempts_total", {"outcome": "failed", "status_class": "4xx"}) == 0
    assert sample("ticketq_retries_total", {"reason": "throttled", "where": "due_index"}) == 0
    assert sample("ticketq_limiter_waits_total", {"reason": "line"}) == 0
    assert sample("ticketq_limiter_waits_total", {"reason": "reserved"}) == 0
    assert sample("ticketq_reconciliations_total", {"result": "to_person"}) == 0
    assert sample("ticketq_stackone_latency_seconds_count") == 0


def test_limiter_waits_count_each_wait_and_add_up_its_seconds() -> None:
    metrics = WorkerMetrics()

    metrics.waited(Reason.ACCOUNT_BUSY, 0.5)
    metrics.waited(Reason.ACCOUNT_BUSY, 1.25)
    metrics.reconciled(ReconcileResult.RESENT)

    sample = metrics.registry.get_sample_value
    assert sample("ticketq_limiter_waits_total", {"reason": "account_busy"}) == 2
    assert sample("ticketq_limiter_wait_seconds_total", {"reason": "account_busy"}) == 1.75
    assert sample("ticketq_reconciliations_total", {"result": "resent"}) == 1


def test_a_metrics_port_another_process_holds_is_one_warning_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with caplog.at_level(logging.INFO, logger="ticketq.worker"):
            served = WorkerMetrics().serve("127.0.0.1", port)

    assert served is False
    (line,) = [r for r in caplog.records if r.name == "ticketq.worker"]
    assert line.levelno == logging.WARNING
    assert f"127.0.0.1:{port}" in line.getMessage()
    assert "TICKETQ_METRICS_PORT" in line.getMessage()
