"""Limits shared by every worker process on every host: one rate per API key, a cap on
requests in flight per linked account, and the pauses a 429 asks for.

Celery's ``rate_limit`` is per worker, so it cannot keep a fleet under StackOne's limit;
this is one Lua script (``admit.lua``, GCRA) run in the Redis every worker already uses,
timed by Redis's own clock so hosts need not agree on theirs.

Two lanes share the rate. Bulk requests get no burst: they are admitted only when the
schedule says so. Interactive ones may run a few intervals ahead of it, so a ticket from a
backend service goes out at once even while a bulk import keeps the limit saturated. The
rate is kept a margin below the configured limit so that bursts included, no 60-second
window ever holds more requests than the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import redis

from worker.jobstore import PREFIX, Lane, lua_script, segment
from worker.settings import RateLimit

INTERACTIVE_BURST = 5  # requests an interactive caller may take ahead of the schedule
SAFETY_MARGIN = 0.01  # of the limit, so burst and clock jitter never reach it


def interval_ms(limit: RateLimit) -> float:
    """Milliseconds between two requests at the rate actually used (margin applied)."""
    usable = limit.requests * (1 - SAFETY_MARGIN) - INTERACTIVE_BURST
    return limit.per_seconds * 1000 / max(usable, 1.0)


class Reason(IntEnum):
    ADMITTED = 0
    RATE = 1
    KEY_PAUSED = 2
    ACCOUNT_PAUSED = 3
    ACCOUNT_BUSY = 4


@dataclass(frozen=True)
class Admission:
    reason: Reason
    wait: float  # seconds until asking again makes sense; 0 when admitted

    @property
    def admitted(self) -> bool:
        return self.reason is Reason.ADMITTED


class Limiter:
    def __init__(
        self,
        client: redis.Redis,
        key_fingerprint: str,
        limit: RateLimit,
        account_cap: int,
        holder_lease: float,
    ) -> None:
        self._redis = client
        self._schedule_key = f"{PREFIX}:rl:{key_fingerprint}"
        self._pause_key = f"{PREFIX}:rl:pause:{key_fingerprint}"
        self._limit = limit
        self._account_cap = account_cap
        self._holder_lease_ms = int(holder_lease * 1000)
        self._admit = client.register_script(lua_script("admit.lua"))
        self._pause = client.register_script(lua_script("pause.lua"))

    def admit(self, account_id: str, lane: Lane, holder: str) -> Admission:
        """Ask to send one request now; ``holder`` names it for the account's cap."""
        interval = interval_ms(self._limit)
        burst = (INTERACTIVE_BURST - 1) * interval if lane == "interactive" else 0
        wait_ms, reason = self._admit(
            keys=[
                self._schedule_key,
                self._pause_key,
                f"{PREFIX}:inflight:{segment(account_id)}",
                _account_pause_key(account_id),
            ],
            args=[interval, burst, self._account_cap, holder, self._holder_lease_ms],
        )
        return Admission(Reason(int(reason)), int(wait_ms) / 1000)

    def release(self, account_id: str, holder: str) -> None:
        """The request is answered: it no longer counts against the account's cap."""
        if self._account_cap > 0:
            self._redis.zrem(f"{PREFIX}:inflight:{segment(account_id)}", holder)

    def pause_key(self, seconds: float) -> None:
        """StackOne said 429 for the key: no worker sends with it for ``seconds``."""
        self._pause(keys=[self._pause_key], args=[int(seconds * 1000)])

    def pause_account(self, account_id: str, seconds: float) -> None:
        """The provider behind one linked account said 429: only that account waits."""
        self._pause(keys=[_account_pause_key(account_id)], args=[int(seconds * 1000)])


def _account_pause_key(account_id: str) -> str:
    return f"{PREFIX}:rl:pause:account:{segment(account_id)}"
