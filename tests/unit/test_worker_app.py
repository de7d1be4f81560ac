"""The worker's app: built without side effects, its task registered, its scheduler started
once per worker that becomes ready (Celery's signals reach every app of the process)."""

from __future__ import annotations

import threading
import time

from celery import Celery
from celery.signals import worker_ready, worker_shutting_down

from ops.redis_server import RedisServer
from worker.delivery.task import worker_app
from worker.queue.app import TASK_NAME
from worker.settings import Settings


class Consumer:
    """What Celery sends ``worker_ready`` from: the consumer of one worker's app."""

    def __init__(self, app: Celery) -> None:
        self.app = app


def schedulers() -> int:
    return sum(thread.name == "ticketq-scheduler" for thread in threading.enumerate())


def test_the_worker_app_registers_the_task_under_its_name(redis_server: RedisServer) -> None:
    app = worker_app(Settings(redis_url=redis_server.url))

    assert TASK_NAME in app.tasks


def test_each_worker_app_starts_one_scheduler_when_its_own_worker_is_ready(
    redis_server: RedisServer,
) -> None:
    settings = Settings(redis_url=redis_server.url, scheduler_interval=0.05)
    first, second = worker_app(settings), worker_app(settings)
    before = schedulers()
    try:
        worker_ready.send(sender=Consumer(first))
        assert schedulers() == before + 1
        worker_ready.send(sender=Consumer(second))
        assert schedulers() == before + 2
    finally:
        worker_shutting_down.send(sender="test")
    deadline = time.monotonic() + 5
    while schedulers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert schedulers() == before
