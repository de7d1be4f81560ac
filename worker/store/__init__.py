"""Jobs in Redis: every key name, the Lua scripts and the one registry that runs them,
the job store, the dead letters and the limiter's state. No other code knows the schema."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from worker.settings import Settings

# A person waits for a command: when Redis cannot be reached, say so after one more try.
IMPATIENT_CONNECT_TIMEOUT = 2.0


def connect(settings: Settings, *, ride_out_restarts: bool = True) -> redis.Redis:
    """The process's one Redis client (its pool is shared by every thread and part).

    Workers and producers ride out a Redis restart (AOF reload included, about half a
    minute) instead of failing; a command a person waits for gives up within seconds."""
    if ride_out_restarts:
        retry = Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), retries=20)
        connect_timeout = None
    else:
        retry, connect_timeout = Retry(NoBackoff(), retries=1), IMPATIENT_CONNECT_TIMEOUT
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        retry=retry,
        socket_connect_timeout=connect_timeout,
    )
