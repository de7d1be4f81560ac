"""Limits shared by every worker process on every host: one rate per API key, a cap on
requests in flight per linked account (a semaphore with waiters: a slot freed wakes one
request waiting for it), the pauses a 429 asks for, and the holds of a refused key
(``keyhealth.py``) and of an outage (``outage.py``), each with its one probe.

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from worker.settings import RateLimit
from worker.store.jobs import Lane
from worker.store.limits import Ask, LimitStore, Round
from worker.store.scripts import Reason

__all__ = [
    "INTERACTIVE_BURST",
    "MIN_BURST_US",
    "SAFETY_MARGIN",
    "Admission",
    "Limiter",
    "Reason",
    "burst_us",
    "interval_us",
]

INTERACTIVE_BURST = 5  # requests an interactive caller may take ahead of the schedule
SAFETY_MARGIN = 0.01  # of the limit, so burst and clock jitter never reach it
MIN_BURST_US = 100_000  # at high rates, a batch pipelined in one go is not refused in part


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
        store: LimitStore,
        limit: RateLimit,
        account_cap: int,
        holder_lease: float,
        probe_interval: float = 30.0,
    ) -> None:
        self._store = store
        self._limit = limit
        self._account_cap = account_cap
        self._holder_lease = holder_lease
        self._probe_interval = probe_interval

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
        limits = Round(
            interval_us=interval_us(self._limit),
            account_cap=self._account_cap,
            holder_lease=self._holder_lease,
            probe_interval=self._probe_interval,
            bulk_hold=bulk_hold,
        )
        asks = [
            Ask(account_id, burst_us(self._limit, lane), holder, bulk=lane == "bulk")
            for account_id, lane, holder in requests
        ]
        return [
            Admission(reason, wait_us / 1e6) for reason, wait_us in self._store.admit(limits, asks)
        ]

    def wait_for_slots(self, wanted: Mapping[str, int], timeout: float) -> tuple[str, int] | None:
        """Wait at most ``timeout`` seconds for requests of these accounts, each at its cap,
        to be answered and recorded: the account with slots free again and how many of them
        are this caller's to ask for (at most as many as it ``wanted``), or None. A freed
        slot wakes one waiter (a semaphore's), not every one."""
        return self._store.wait_for_slots(wanted, timeout)

    def pause_key(self, seconds: float) -> None:
        """StackOne said 429 for the key: no worker sends with it for ``seconds``."""
        self._store.pause_key(seconds)

    def pause_account(self, account_id: str, seconds: float) -> None:
        """The provider behind one linked account said 429: only that account waits."""
        self._store.pause_account(account_id, seconds)
