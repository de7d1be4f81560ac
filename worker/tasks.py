"""The Celery task, a thin adapter from a queue message to ``JobRunner``, and the worker's
start and stop hooks (the scheduler thread; no new in-process waits once stopping).

A message carries only the job id; the ticket body lives in the job record, so the API key
and the payload never travel through the broker together and a message stays tiny.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery.exceptions import Reject
from celery.signals import worker_ready, worker_shutting_down

from worker.celery_app import TASK_NAME, app
from worker.jobstore import JobStore
from worker.keyhealth import KeyHealth
from worker.ratelimit import Limiter
from worker.retry import RetryPolicy
from worker.runner import JobRunner
from worker.scheduler import Scheduler
from worker.sender import Sender
from worker.settings import get_settings
from worker.stackone import StackOneClient

log = logging.getLogger("ticketq.worker")
stopping = threading.Event()
_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    """One runner per worker process, shared by its threads (httpx and redis-py pool)."""
    global _runner
    with _runner_lock:
        if _runner is None:
            settings = get_settings()
            store = JobStore.from_settings(settings)
            api = StackOneClient(settings)
            assert settings.stackone_api_key is not None  # StackOneClient checked it
            health = KeyHealth(store.redis, settings.stackone_api_key, settings.auth_pause)
            limiter = Limiter(
                store.redis,
                health.fingerprint,
                settings.parsed_rate_limit,
                account_cap=settings.account_concurrency,
                holder_lease=settings.lease_seconds,
            )
            sender = Sender(api, store, limiter, settings.inprocess_max_delay, stopping)
            policy = RetryPolicy(settings, stopping=stopping)
            _runner = JobRunner(settings, store, api, sender, policy, health)
        return _runner


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def create_ticket(job_id: object) -> None:
    if not isinstance(job_id, str):
        # Not ours to fail: there is no record to write to. Drop it, loudly.
        log.error("dropped a message whose job id is not a string: %r", job_id)
        return
    try:
        runner().run(job_id)
    except redis.RedisError as exc:
        # Redis stayed away longer than the store's retries: never ack the message away;
        # it goes back to the queue (or, if even that fails, kombu restores it after the
        # visibility timeout).
        log.warning("job %s: Redis unavailable (%s); message returned to the queue", job_id, exc)
        raise Reject(exc, requeue=True) from exc


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_scheduler(**_: Any) -> None:
    settings = get_settings()
    Scheduler(app, JobStore.from_settings(settings), settings.scheduler_interval, stopping).start()


@worker_shutting_down.connect  # type: ignore[untyped-decorator]
def _stop_waiting(**_: Any) -> None:
    # Tasks in flight finish their current request; none starts an in-process wait.
    stopping.set()
