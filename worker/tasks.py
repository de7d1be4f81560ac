"""The Celery task, a thin adapter from a queue message to ``JobRunner``, and the worker's
start and stop hooks (the scheduler thread; no new in-process waits once stopping).

A message carries only job ids; the ticket bodies live in the job records, so the API key
and the payload never travel through the broker together and a message stays tiny.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery.exceptions import Reject
from celery.signals import after_setup_logger, worker_ready, worker_shutting_down

from worker.celery_app import TASK_NAME, app
from worker.delivery import Decisions
from worker.engine import EventLoop
from worker.jobstore import JobStore
from worker.keyhealth import KeyHealth, fingerprint
from worker.ratelimit import Limiter
from worker.retry import RetryPolicy
from worker.runner import JobRunner
from worker.scheduler import Scheduler
from worker.settings import get_settings
from worker.stackone import StackOneClient

log = logging.getLogger("ticketq.worker")
stopping = threading.Event()
_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    """One runner per worker process, shared by its threads; HTTP runs on one event loop."""
    global _runner
    with _runner_lock:
        if _runner is None:
            settings = get_settings()
            store = JobStore.from_settings(settings)
            api = StackOneClient(settings)
            assert settings.stackone_api_key is not None  # StackOneClient checked it
            key = fingerprint(settings.stackone_api_key)
            limiter = Limiter(
                store.redis,
                key,
                settings.parsed_rate_limit,
                account_cap=settings.account_concurrency,
                holder_lease=settings.lease_seconds,
                probe_interval=settings.auth_pause,
            )
            health = KeyHealth(store.redis, key, limiter, settings.auth_pause)
            policy = RetryPolicy(settings)
            decisions = Decisions(settings, policy, stopping)
            _runner = JobRunner(
                settings, store, api, EventLoop(), limiter, decisions, policy, health
            )
        return _runner


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def run_jobs(job_ids: object) -> None:
    if isinstance(job_ids, str):
        job_ids = [job_ids]
    if not isinstance(job_ids, list) or not all(isinstance(i, str) for i in job_ids):
        # Not ours to fail: there is no record to write to. Drop it, loudly.
        log.error("dropped a message whose job ids are not strings: %r", job_ids)
        return
    try:
        runner().run(job_ids)
    except redis.RedisError as exc:
        # Redis stayed away longer than the store's retries: never ack the message away;
        # it goes back to the queue (or, if even that fails, kombu restores it after the
        # visibility timeout). Jobs already claimed come back when their leases end.
        log.warning("Redis unavailable (%s); message returned to the queue", exc)
        raise Reject(exc, requeue=True) from exc


@after_setup_logger.connect  # type: ignore[untyped-decorator]
def _quiet_per_task_lines(**_: Any) -> None:
    # Celery logs two INFO lines per message; at thousands of tickets a second that is a
    # good part of the worker's CPU. Failures and retries still log at WARNING and above.
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_scheduler(**_: Any) -> None:
    settings = get_settings()
    Scheduler(
        app,
        JobStore.from_settings(settings),
        settings.scheduler_interval,
        settings.bulk_batch,
        stopping,
    ).start()


@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _stop_waiting(**_: Any) -> None:
    # Deliveries in flight finish their current round; none starts an in-process wait.
    stopping.set()
