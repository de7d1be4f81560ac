"""Jobs in Redis: every key name, the Lua scripts and the one registry that runs them,
the job store, the dead letters and the limiter's state. No other code knows the schema."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from worker.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """The process's one Redis client (its pool is shared by every thread and part)."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        # Ride out a Redis restart (AOF reload included) instead of failing the delivery.
        retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), retries=20),
    )
