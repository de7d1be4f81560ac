"""The scheduler: every worker process looks, once a ``scheduler_interval``, for jobs whose
time has come and sends them back to the queue.

That covers retries whose wait is over, jobs whose worker died (their lease ran out) and
jobs whose message a producer never confirmed sending. Taking due jobs is one Lua script,
so with many workers each due job is handed to exactly one of them; there is no leader to
elect and nothing else to run (Sidekiq's scheduled set works the same way).
"""

from __future__ import annotations

import logging
import threading

import redis
from celery import Celery

from worker.queue.dispatch import dispatch
from worker.store.jobs import JobStore

log = logging.getLogger("ticketq.scheduler")
BATCH = 500


class Scheduler(threading.Thread):
    def __init__(
        self,
        app: Celery,
        store: JobStore,
        interval: float,
        bulk_batch: int,
        stopping: threading.Event,
    ) -> None:
        super().__init__(name="ticketq-scheduler", daemon=True)
        self._app = app
        self._store = store
        self._interval = interval
        self._bulk_batch = bulk_batch
        self._stopping = stopping

    def run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                while self.tick() == BATCH and not self._stopping.is_set():
                    pass
            except (redis.RedisError, OSError) as exc:
                # Redis restarting: the due index is still there when it comes back.
                log.warning("scheduler: %s; trying again", exc)

    def tick(self) -> int:
        due = self._store.take_due(BATCH)
        if due:
            dispatch(self._app, self._store, due, self._bulk_batch)
            log.info("scheduler sent %d due jobs to the queue", len(due))
        return len(due)
