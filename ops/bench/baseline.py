"""The baseline: a Celery task written the way Celery's documentation shows it.

``autoretry_for`` with exponential backoff and jitter, a Redis result backend, one httpx
client shared by the threads of a ``--pool threads --concurrency 50`` worker. No rate
limiter, no job records, no lanes: what a team writes on day one. The benchmark runs it as
a real worker process::

    celery -A ops.bench.baseline worker --pool threads --concurrency 50

configured by the environment the benchmark gives it (``BENCH_BASELINE_REDIS_URL`` for
broker and result backend, ``BENCH_API_URL`` and ``BENCH_API_KEY`` for the stand-in).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import httpx
from celery import Celery

REDIS_URL_ENV = "BENCH_BASELINE_REDIS_URL"
API_URL_ENV = "BENCH_API_URL"
API_KEY_ENV = "BENCH_API_KEY"
TASK_NAME = "bench.baseline.create_ticket"
USER_AGENT = "ticketq-bench-baseline/1.0"

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def http() -> httpx.Client:
    """One client per worker process, shared by its threads (httpx's pool is thread-safe)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                base_url=os.environ[API_URL_ENV],
                auth=(os.environ[API_KEY_ENV], ""),
                headers={"User-Agent": USER_AGENT},
                timeout=httpx.Timeout(75.0, connect=5.0),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
            )
        return _client


app = Celery("bench_baseline")


def configure(redis_url: str | None) -> None:
    """Point the app at a Redis (broker and result backend alike), before it is first used.

    The worker configures itself from ``BENCH_BASELINE_REDIS_URL`` on import; the benchmark
    process calls this once with the Redis it started. Without a URL the app can be
    imported but not used.
    """
    app.conf.update(
        broker_url=redis_url or "memory://",
        result_backend=redis_url,
        broker_connection_retry_on_startup=True,
    )


configure(os.environ.get(REDIS_URL_ENV))


@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name=TASK_NAME,
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def create_ticket(self: Any, account_id: str, ticket: dict[str, Any]) -> dict[str, Any]:
    response = http().post(
        "/unified/ticketing/tickets", json=ticket, headers={"x-account-id": account_id}
    )
    response.raise_for_status()  # 429 and 5xx raise HTTPStatusError: autoretry
    data = response.json()["data"]
    return {"id": data["id"], "remote_id": data["remote_id"], "finished_at": time.time()}
