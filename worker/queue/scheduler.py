"""The scheduler: every worker process looks, once a ``scheduler_interval``, for jobs whose
time has come and sends them back to the queue.

That covers the jobs the rate limit's fair lines let out (the API key's limiter releases
them: ``release.lua``, at most as many as the key's schedule has moments for), retries
whose wait is over, jobs whose worker died (their lease ran out) and
jobs whose message a producer never confirmed sending. Taking due jobs is one Lua script,
so with many workers each due job is handed to exactly one of them; there is no leader to
elect and nothing else to run (Sidekiq's scheduled set works the same way).

The same thread writes the worker's heartbeat (worker/store/workers.py) as often, so the
fleet's numbers show the workers alive: a worker whose scheduler stopped is not alive.
And once an interval it sweeps a few index buckets (``JobStore.sweep_indexes``): the entries
naming jobs that expired go, so the indexes live as long as the jobs they name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from celery import Celery

from worker.queue.dispatch import dispatch
from worker.store.jobs import JobStore
from worker.store.workers import Heartbeat

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
        heartbeat: Heartbeat | None = None,
        *,
        release: Callable[[int, float], int] | None = None,
    ) -> None:
        super().__init__(name="ticketq-scheduler", daemon=True)
        self._app = app
        self._store = store
        self._interval = interval
        self._bulk_batch = bulk_batch
        self._stopping = stopping
        self._heartbeat = heartbeat
        self._release = release  # lets jobs out of the rate limit's lines: they become due
        self._last_beat = -float("inf")  # time.monotonic() of the last heartbeat

    def run(self) -> None:
        self._beat()
        while not self._stopping.wait(self._interval):
            try:
                self._beat()
                while self.tick() == BATCH and not self._stopping.is_set():
                    self._beat()
                self._store.sweep_indexes()
            except (redis.RedisError, OSError) as exc:
                # Redis restarting: the due index is still there when it comes back.
                log.warning("scheduler: %s; trying again", exc)

    def _beat(self) -> None:
        """The worker's heartbeat, once an interval (also while a backlog of due jobs keeps
        the scheduler busy)."""
        if self._heartbeat is None or time.monotonic() - self._last_beat < self._interval:
            return
        self._last_beat = time.monotonic()
        try:
            self._heartbeat.beat(time.time())
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeat: %s; trying again", exc)

    def tick(self) -> int:
        if self._release is not None:
            self._release(BATCH, time.time())
        due = self._store.take_due(BATCH)
        if due:
            dispatch(self._app, self._store, due, self._bulk_batch)
            log.info("scheduler sent %d due jobs to the queue", len(due))
        return len(due)
