"""The worker process: its Celery app with the one task, what every delivery of the process
shares, and the start and stop hooks.

A message carries only job ids; the ticket bodies live in the job records, so the API key
and the payload never travel through the broker together and a message stays tiny. The
task is a thin adapter from a message to the runner. A process has one Redis client (one
connection pool: the runner, the limiter, key health and the scheduler share it), one
event loop and one HTTP client. Building the app reads nothing and connects nowhere; the
runner is built on the first message, in the process that runs it. Once the worker is
ready, a process given ``TICKETQ_METRICS_PORT`` serves its metrics; with
``TICKETQ_LOG_FORMAT=json`` every line it logs, Celery's included, is a JSON object.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from celery import Celery
from celery.exceptions import Reject
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_ready,
    worker_shutting_down,
)

from worker.delivery.decisions import Decisions
from worker.delivery.logs import use_json
from worker.delivery.loop import EventLoop
from worker.delivery.metrics import WorkerMetrics
from worker.delivery.retry import RetryPolicy
from worker.delivery.runner import JobRunner
from worker.limits.keyhealth import KeyHealth, fingerprint
from worker.limits.outage import KeyOutage
from worker.limits.rate import Limiter
from worker.queue.app import TASK_NAME, create_app
from worker.queue.scheduler import Scheduler
from worker.settings import Settings
from worker.stackone.client import StackOneClient
from worker.store.jobs import JobStore
from worker.store.keys import ApiKeyNames
from worker.store.limits import LimitStore
from worker.store.workers import Heartbeat, WorkerInfo

log = logging.getLogger("ticketq.worker")


class WorkerProcess:
    """What the deliveries of one worker process share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()  # set on shutdown: no more waiting in the worker
        self.store = JobStore.from_settings(settings)
        self.metrics = WorkerMetrics()
        self._runner: JobRunner | None = None
        self._runner_lock = threading.Lock()
        self._heartbeat: Heartbeat | None = None

    def runner(self) -> JobRunner:
        """Built once, by the first delivery; its threads share it."""
        with self._runner_lock:
            if self._runner is None:
                self._runner = self._build_runner()
            return self._runner

    def _build_runner(self) -> JobRunner:
        settings = self.settings
        api = StackOneClient(settings)
        assert settings.stackone_api_key is not None  # StackOneClient checked it
        key = fingerprint(self.store.redis, settings.stackone_api_key)
        key_state = LimitStore(self.store.redis, ApiKeyNames.of(key))
        limiter = Limiter.of(key_state, settings)
        health = KeyHealth(key_state, key, settings.auth_pause)
        outage = KeyOutage(key_state, key, settings)
        decisions = Decisions(settings, RetryPolicy(settings))
        return JobRunner(
            settings,
            self.store,
            api,
            EventLoop(),
            limiter,
            decisions,
            health,
            outage,
            self.stopping,
            self.metrics,
        )

    def run_jobs(self, job_ids: object) -> None:
        """One message: its job ids, taken from claim to recorded outcome."""
        if isinstance(job_ids, str):
            job_ids = [job_ids]
        if not isinstance(job_ids, list) or not all(isinstance(i, str) for i in job_ids):
            # Not ours to fail: there is no record to write to. Drop it, loudly.
            log.error("dropped a message whose job ids are not strings: %r", job_ids)
            return
        try:
            self.runner().run(job_ids)
        except redis.RedisError as exc:
            # Redis stayed away longer than the store's retries: never ack the message away;
            # it goes back to the queue (or, if even that fails, kombu restores it after the
            # visibility timeout). Jobs already claimed come back when their leases end.
            log.warning("Redis unavailable (%s); message returned to the queue", exc)
            raise Reject(exc, requeue=True) from exc

    def start_scheduler(self, app: Celery, name: str, concurrency: int) -> None:
        """The scheduler thread, which also says this worker is alive (its heartbeat); and
        the process's metrics, if asked."""
        settings = self.settings
        key = settings.stackone_api_key  # ticketq worker refuses to start without one
        key_fingerprint = fingerprint(self.store.redis, key) if key is not None else ""
        me = WorkerInfo(
            name=name,
            pid=os.getpid(),
            concurrency=concurrency,
            started_at=time.time(),
            key_fingerprint=key_fingerprint,
        )
        self._heartbeat = Heartbeat(self.store.redis, me, settings.scheduler_interval)
        lines = None
        if key_fingerprint:
            names = ApiKeyNames.of(key_fingerprint)
            lines = Limiter.of(LimitStore(self.store.redis, names), settings).release
        Scheduler(
            app,
            self.store,
            settings.scheduler_interval,
            settings.bulk_batch,
            self.stopping,
            self._heartbeat,
            release=lines,
        ).start()
        if settings.metrics_port is not None:
            self.metrics.serve(settings.metrics_host, settings.metrics_port)

    def stop(self) -> None:
        """Shutting down: deliveries start no more in-process waits, and the worker says
        it is gone (a worker that dies instead is gone once its heartbeat is old)."""
        self.stopping.set()
        if self._heartbeat is not None:
            try:
                self._heartbeat.stop()
            except redis.RedisError as exc:
                log.warning("could not remove this worker's heartbeat: %s", exc)


def worker_app(settings: Settings) -> Celery:
    """The app ``ticketq worker`` runs: the producers' app plus the task and the hooks."""
    process = WorkerProcess(settings)
    app = create_app(settings)

    def run_jobs(job_ids: object) -> None:
        process.run_jobs(job_ids)

    def start_scheduler(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:  # Celery's signals are process-wide
            name = str(getattr(sender, "hostname", "") or "celery")
            concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
            process.start_scheduler(app, name, int(concurrency or settings.worker_concurrency))

    app.task(name=TASK_NAME, shared=False)(run_jobs)
    after_setup_logger.connect(_quiet_per_task_lines, weak=False)
    if settings.log_format == "json":
        after_setup_logger.connect(_json_lines, weak=False)
        after_setup_task_logger.connect(_json_lines, weak=False)
    worker_ready.connect(start_scheduler, weak=False)
    # Deliveries in flight finish their current round; none starts an in-process wait.
    worker_shutting_down.connect(lambda **_: process.stop(), weak=False)
    return app


def _json_lines(logger: logging.Logger, **_: Any) -> None:
    # The handlers Celery just set up (the root's, then its task logger's) write JSON.
    use_json(logger)


def _quiet_per_task_lines(**_: Any) -> None:
    # Celery logs two INFO lines per message; at thousands of tickets a second that is a
    # good part of the worker's CPU. Failures and retries still log at WARNING and above.
    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)
