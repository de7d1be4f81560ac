"""The Celery task: a thin adapter from a queue message to ``JobRunner``.

A message carries only the job id; the ticket body lives in the job record, so the API key
and the payload never travel through the broker together and a message stays tiny.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from worker.celery_app import TASK_NAME, app
from worker.jobstore import JobStore
from worker.retry import RetryPolicy
from worker.runner import JobRunner
from worker.settings import get_settings
from worker.stackone import StackOneClient

log = logging.getLogger("ticketq.worker")
_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    """One runner per worker process, shared by its threads (httpx and redis-py pool)."""
    global _runner
    with _runner_lock:
        if _runner is None:
            settings = get_settings()
            store = JobStore.from_url(
                settings.redis_url,
                succeeded_ttl=settings.succeeded_ttl,
                lease_seconds=settings.lease_seconds,
            )
            _runner = JobRunner(settings, store, StackOneClient(settings), RetryPolicy(settings))
        return _runner


@app.task(name=TASK_NAME, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
def create_ticket(self: Any, job_id: object) -> None:
    if not isinstance(job_id, str):
        # Not ours to fail: there is no record to write to. Drop it, loudly.
        log.error("dropped a message whose job id is not a string: %r", job_id)
        return
    decision = runner().run(job_id)
    if decision is not None:
        raise self.retry(countdown=decision.delay)
