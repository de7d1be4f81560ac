"""Limits shared by every worker process on every host: one rate per API key, a cap on
requests in flight per linked account, and the pauses a 429 asks for.

Celery's ``rate_limit`` is per worker, so it cannot keep a fleet under StackOne's limit;
this is one Lua script (``admit.lua``, GCRA) run in the Redis every worker already uses,
timed by Redis's own clock so hosts need not agree on theirs.

Two lanes share the rate. Interactive requests may run a few intervals ahead of the
schedule; bulk ones two intervals less, so a ticket from a backend service goes out at
once even while a bulk import keeps the limit saturated. Bulk requests that would wait
longer than their delivery may hold its thread get a turn in the key's bulk line, one
interval apart, and come back for it; so a saturated import costs one handback per job,
not one every second. The rate is kept a margin below the configured limit so that,
bursts included, no 60-second window ever holds more requests than the limit. Time is
Redis's, in microseconds, so that high rates (the limit "out of the way") still admit a
whole pipelined batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import redis

from worker.jobstore import Lane
from worker.keys import PREFIX, inflight_key, lua_script, segment
from worker.settings import RateLimit

INTERACTIVE_BURST = 5  # requests an interactive caller may take ahead of the schedule
SAFETY_MARGIN = 0.01  # of the limit, so burst and clock jitter never reach it
MIN_BURST_US = 100_000  # at high rates, a batch pipelined in one go is not refused in part
NO_LINE = 2**53  # a bulk hold this long (microseconds) never sends anyone to the line


def interval_us(limit: RateLimit) -> float:
    """Microseconds between two requests at the rate actually used (margin applied)."""
    usable = limit.requests * (1 - SAFETY_MARGIN) - INTERACTIVE_BURST
    return limit.per_seconds * 1_000_000 / max(usable, 1.0)


def burst_us(limit: RateLimit, lane: Lane) -> float:
    """How far ahead of the schedule a lane may go. Interactive: ``INTERACTIVE_BURST``
    requests (or 100 ms, whichever is longer); bulk: two intervals less, so that an
    interactive ticket always finds room even while bulk keeps the rate saturated."""
    interval = interval_us(limit)
    interactive = max((INTERACTIVE_BURST - 1) * interval, MIN_BURST_US)
    return interactive if lane == "interactive" else max(interactive - 2 * interval, 0.0)


class Reason(IntEnum):
    ADMITTED = 0
    RATE = 1
    KEY_PAUSED = 2
    ACCOUNT_PAUSED = 3
    ACCOUNT_BUSY = 4
    KEY_REFUSED = 5
    PROBE = 6  # admitted, as the one request that finds out whether a refused key works


@dataclass(frozen=True)
class Admission:
    reason: Reason
    wait: float  # seconds until asking again makes sense; 0 when admitted

    @property
    def admitted(self) -> bool:
        return self.reason in (Reason.ADMITTED, Reason.PROBE)


class Limiter:
    def __init__(
        self,
        client: redis.Redis,
        key_fingerprint: str,
        limit: RateLimit,
        account_cap: int,
        holder_lease: float,
        probe_interval: float = 30.0,
    ) -> None:
        self._redis = client
        self._schedule_key = f"{PREFIX}:rl:{key_fingerprint}"
        self._pause_key = f"{PREFIX}:rl:pause:{key_fingerprint}"
        self._refused_key = f"{PREFIX}:auth:pause:{key_fingerprint}"
        self._refusal_key = refusal_key(key_fingerprint)
        self._probe_key = f"{PREFIX}:auth:probe:{key_fingerprint}"
        self._line_key = f"{PREFIX}:rl:line:{key_fingerprint}"
        self._probe_ms = int(probe_interval * 1000)
        self._limit = limit
        self._account_cap = account_cap
        self._holder_lease_ms = int(holder_lease * 1000)
        self._admit = client.register_script(lua_script("admit.lua"))
        self._pause = client.register_script(lua_script("pause.lua"))

    def admit(self, account_id: str, lane: Lane, holder: str) -> Admission:
        """Ask to send one request now; ``holder`` names it in the account's in-flight set
        until the outcome is recorded (the job store's transition releases it)."""
        return self.admit_many([(account_id, lane, holder)])[0]

    def admit_many(
        self, requests: Sequence[tuple[str, Lane, str]], bulk_hold: float | None = None
    ) -> list[Admission]:
        """Ask for a round of requests, in order, in one script run (``admit.lua``): once
        the key's rate or a pause of the key refuses one, the rest wait unasked, each one
        interval after the one before. A bulk request the rate holds back longer than
        ``bulk_hold`` seconds (if given) is told to wait for its turn in the bulk line."""
        if not requests:
            return []
        keys = [
            self._schedule_key,
            self._pause_key,
            self._refused_key,
            self._refusal_key,
            self._probe_key,
            self._line_key,
        ]
        args: list[str | int | float] = [
            interval_us(self._limit),
            self._account_cap,
            self._holder_lease_ms,
            self._probe_ms,
            NO_LINE if bulk_hold is None else int(bulk_hold * 1_000_000),
        ]
        for account_id, lane, holder in requests:
            keys += [inflight_key(account_id), _account_pause_key(account_id)]
            args += [burst_us(self._limit, lane), holder, "1" if lane == "bulk" else "0"]
        flat = self._admit(keys=keys, args=args)
        return [
            Admission(Reason(int(flat[i + 1])), int(flat[i]) / 1e6) for i in range(0, len(flat), 2)
        ]

    def pause_key(self, seconds: float) -> None:
        """StackOne said 429 for the key: no worker sends with it for ``seconds``."""
        self._pause(keys=[self._pause_key], args=[int(seconds * 1000)])

    def pause_account(self, account_id: str, seconds: float) -> None:
        """The provider behind one linked account said 429: only that account waits."""
        self._pause(keys=[_account_pause_key(account_id)], args=[int(seconds * 1000)])

    def pause_refused_key(self, seconds: float) -> bool:
        """StackOne refused the key (401/403): nobody sends with it for ``seconds``. True
        if this started the pause (so it is announced once, not once per job)."""
        return bool(
            self._redis.set(
                self._refused_key,
                _ms_from_now(self._redis, seconds),
                px=int(seconds * 1000),
                nx=True,
            )
        )

    def refused_until(self) -> float | None:
        """When the pause after a 401/403 ends (Unix seconds), if one is on."""
        until = self._redis.get(self._refused_key)
        return int(str(until)) / 1000 if until is not None else None


def refusal_key(key_fingerprint: str) -> str:
    """StackOne's last refusal of the key, kept until a request succeeds with it again."""
    return f"{PREFIX}:auth:refused:{key_fingerprint}"


def _ms_from_now(client: redis.Redis, seconds: float) -> int:
    now_s, now_us = client.time()
    return int(now_s) * 1000 + int(now_us) // 1000 + int(seconds * 1000)


def _account_pause_key(account_id: str) -> str:
    return f"{PREFIX}:rl:pause:account:{segment(account_id)}"
