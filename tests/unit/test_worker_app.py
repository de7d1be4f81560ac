"""The worker's app: built without side effects, its task registered, its scheduler started
once per worker that becomes ready (Celery's signals reach every app of the process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import cast

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutting_down

from ops.redis_server import RedisServer
from worker.delivery.task import worker_app
from worker.queue.app import TASK_NAME
from worker.settings import Settings
from worker.store.jobs import SWEEP_BUCKETS
from worker.store.keys import INDEX_SWEEP, WORKERS


class Consumer:
    """What Celery sends ``worker_ready`` from: the consumer of one worker's app."""

    def __init__(self, app: Celery, hostname: str) -> None:
        self.app = app
        self.hostname = hostname


def heartbeats(client: redis.Redis) -> list[str]:
    return cast(list[str], client.hkeys(WORKERS))


def eventually(read: Callable[[], list[str]], want: int = 2) -> list[str]:
    """What ``read`` gives once it has ``want`` items, or after 5 s."""
    deadline = time.monotonic() + 5
    while len(found := read()) < want and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def schedulers() -> int:
    return sum(thread.name == "ticketq-scheduler" for thread in threading.enumerate())


def test_the_worker_app_registers_the_task_under_its_name(redis_server: RedisServer) -> None:
    app = worker_app(Settings(redis_url=redis_server.url))

    assert TASK_NAME in app.tasks


def test_each_worker_app_starts_one_scheduler_when_its_own_worker_is_ready(
    redis_server: RedisServer,
) -> None:
    settings = Settings(
        redis_url=redis_server.url, scheduler_interval=0.05, stackone_api_key="k" * 20
    )
    first, second = worker_app(settings), worker_app(settings)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    before = schedulers()
    try:
        worker_ready.send(sender=Consumer(first, "celery@one"))
        assert schedulers() == before + 1
        worker_ready.send(sender=Consumer(second, "celery@two"))
        assert schedulers() == before + 2
        # Each scheduler says its worker is alive (from its thread, as soon as it runs).
        assert eventually(lambda: sorted(n.split("/")[0] for n in heartbeats(client))) == [
            "celery@one",
            "celery@two",
        ]
    finally:
        worker_shutting_down.send(sender="test")
    deadline = time.monotonic() + 5
    while schedulers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert schedulers() == before
    assert heartbeats(client) == []  # a clean stop removes the heartbeats


def test_a_workers_scheduler_sweeps_the_index_buckets_every_interval(
    redis_server: RedisServer,
) -> None:
    """Index entries of jobs gone are dropped only by this sweep: without it the indexes
    would grow for good."""
    settings = Settings(
        redis_url=redis_server.url, scheduler_interval=0.05, stackone_api_key="k" * 20
    )
    app = worker_app(settings)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    before = schedulers()
    try:
        worker_ready.send(sender=Consumer(app, "celery@sweeper"))
        sweeps = eventually(lambda: ["x"] * (int(client.get(INDEX_SWEEP) or 0) // SWEEP_BUCKETS))
        assert len(sweeps) >= 2
    finally:
        worker_shutting_down.send(sender="test")
    deadline = time.monotonic() + 5
    while schedulers() > before and time.monotonic() < deadline:
        time.sleep(0.05)
