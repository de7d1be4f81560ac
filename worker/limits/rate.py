"""Limits shared by every worker process on every host: one rate per API key (and, if set,
per linked account), fair shares of it between accounts, a cap on requests in flight per
linked account (a semaphore with waiters: a slot freed wakes one request waiting for it),
the pauses a 429 asks for, and the holds of a refused key
(``keyhealth.py``) and of an outage (``outage.py``), each with its one probe.

Celery's ``rate_limit`` is per worker, so it cannot keep a fleet under StackOne's limit;
this is one Lua script (``admit.lua``, GCRA) run in the Redis every worker already uses,
timed by Redis's own clock so hosts need not agree on theirs.

Waiting for the limit costs nothing: a request the rate holds back a short while (at most
``reserve_ahead``) is given its moment at once, counted by the schedule then (at its moment
it asks only for its account's slot: no polling for the rate), and one
held back longer joins its lane's line and is handed back. The lines are fair: while
several accounts have requests waiting, each is let out at its weight's share of the rate
(start-time fair queueing in ``admit.lua``; the scheduler releases them, ``release.lua``),
so one account's 50,000-ticket import does not hold another's 60 tickets behind it.

Interactive requests may run further ahead of the schedule than bulk ones (a few intervals
past the moments bulk has reserved), so a ticket from a backend service goes out at once
even while an import keeps the limit saturated (with a window shorter than a minute, once
the moments bulk reserved beyond a tenth of it have come). The rate is kept a margin below
the configured limit so that, that run-ahead included, no window of the limit's length
holds more requests than the limit, with room for the time a request takes to arrive and
for a request sent up to ``LATE`` after its moment. Time is
Redis's, in microseconds, so that high rates (the limit "out of the way") still admit a
whole pipelined batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from worker.settings import RateLimit, Settings
from worker.store.jobs import Lane, LineUp
from worker.store.limits import Ask, LimitStore, Round
from worker.store.scripts import Reason, Standing

__all__ = [
    "INTERACTIVE_BURST",
    "LATE",
    "MIN_BURST_US",
    "SAFETY_MARGIN",
    "Admission",
    "Limiter",
    "Reason",
    "Request",
    "Standing",
    "burst_us",
    "interval_us",
    "reserve_ahead",
]

INTERACTIVE_BURST = 5  # requests an interactive caller may take ahead of the schedule
SAFETY_MARGIN = 0.015  # of the limit: about 0.9 s of lateness between admission and arrival
MIN_BURST_US = 100_000  # at high rates, a batch pipelined in one go is not refused in part
# A reserved request goes at most this late (seconds; later, it asks again): a moment
# missed on a busy machine, a group of moments sent at its last, a follower whose slot's
# answer came late. The margin covers it in a window of a minute or more.
LATE = 0.5
# A window shorter than this (seconds) is short: its margin is less than ``LATE`` and its
# requests too few for a fixed burst. In a short window the interactive lane's burst and its
# reach past bulk's reserved moments each take at most ``WINDOW_SHARE`` of it (a burst of 5
# and a reach of 1.25 s left a 10/s limit 2.2 requests a second, a 5/s limit 0.44), and the
# lateness the margin does not cover counts as time in it.
SHORT_WINDOW = 60.0
WINDOW_SHARE = 0.1
RESERVE_SLACK = 0.25  # seconds the lines are released beyond one scheduler interval
DEFAULT_WEIGHT = 1.0


def reserve_ahead(scheduler_interval: float, inprocess_max_delay: float) -> float:
    """Seconds ahead a request may be given its moment, and the lines released: one
    scheduler interval (every worker's scheduler releases once an interval) and a little,
    so the schedule never runs dry between two releases; never longer than a delivery may
    wait in its worker."""
    return min(scheduler_interval + RESERVE_SLACK, inprocess_max_delay)


def interval_us(limit: RateLimit, ahead: float = 0.0) -> float:
    """Microseconds between two requests at the rate used: no window of the limit's length
    holds more than the limit less the margin, the interactive lane's run-ahead (its burst,
    and its reach past the ``ahead`` seconds of moments reserved) and requests sent up to
    ``LATE`` after their moments included."""
    usable = limit.requests * (1 - SAFETY_MARGIN)
    window = limit.per_seconds + _reach(limit, ahead) + _uncovered_lateness(limit)
    by_burst = window / max(usable - _burst(limit), 1.0)
    by_floor = (window + MIN_BURST_US / 1e6) / max(usable - 1, 1.0)
    return max(by_burst, by_floor) * 1_000_000


def burst_us(limit: RateLimit, lane: Lane, ahead: float = 0.0) -> float:
    """How far ahead of the schedule a lane may go. Interactive: its burst (``_burst``
    requests, or 100 ms, whichever is longer) beyond the moments reserved within its reach
    (``_reach``); bulk: two intervals less than the interactive burst, so that an
    interactive ticket finds room even while bulk keeps the rate saturated (in a short
    window, once the moments bulk reserved beyond its reach have come)."""
    interval = interval_us(limit, ahead)
    interactive = max((_burst(limit) - 1) * interval, MIN_BURST_US)
    if lane == "interactive":
        return interactive + _reach(limit, ahead) * 1_000_000
    return max(interactive - 2 * interval, 0.0)


def _short(limit: RateLimit) -> bool:
    return limit.per_seconds < SHORT_WINDOW


def _burst(limit: RateLimit) -> int:
    """Requests an interactive caller may take ahead of the schedule at once:
    ``INTERACTIVE_BURST``; in a short window, no more than ``WINDOW_SHARE`` of the limit,
    and never none."""
    if not _short(limit):
        return INTERACTIVE_BURST
    usable = limit.requests * (1 - SAFETY_MARGIN)
    return max(1, min(INTERACTIVE_BURST, int(usable * WINDOW_SHARE)))


def _reach(limit: RateLimit, ahead: float) -> float:
    """Seconds of bulk's reserved moments an interactive request goes ahead of: ``ahead``
    (all those reserved fresh; one let out of its line may reserve further); in a short
    window no more than ``WINDOW_SHARE`` of it: beyond, an interactive request is given its
    moment after bulk's, like any other (at 10/s, up to about 1.4 s later)."""
    if not _short(limit):
        return ahead
    return min(ahead, limit.per_seconds * WINDOW_SHARE)


def _uncovered_lateness(limit: RateLimit) -> float:
    """Seconds of ``LATE`` the margin does not cover (none in a window of a minute)."""
    return max(LATE - SAFETY_MARGIN * limit.per_seconds, 0.0)


class Request(NamedTuple):
    """One request to admit: whose, in which lane, its holder (released by the job store's
    transition), its job (named in its lane's line if it joins it), and where it stands
    (``Standing``: fresh, let past the line earlier in its delivery, or at its moment)."""

    account_id: str
    lane: Lane
    holder: str
    job_id: str
    standing: Standing = Standing.FRESH
    held: int = 0  # its account's slots the caller holds with requests out


@dataclass(frozen=True)
class Admission:
    reason: Reason
    wait: float  # seconds until asking again makes sense; 0 when admitted

    @property
    def admitted(self) -> bool:
        """It may go now (a ``RESERVED`` one goes at its moment, ``wait`` from now)."""
        return self.reason in (Reason.ADMITTED, Reason.PROBE)


class Limiter:
    def __init__(
        self,
        store: LimitStore,
        limit: RateLimit,
        account_cap: int,
        holder_lease: float,
        probe_interval: float = 30.0,
        *,
        ahead: float = 0.0,
        weights: Mapping[str, float] | None = None,
        account_limit: RateLimit | None = None,
    ) -> None:
        self._store = store
        self._limit = limit
        self._ahead = ahead
        self._weights = dict(weights or {})
        own = account_limit
        self._round = Round(
            interval_us=interval_us(limit, ahead),
            account_cap=account_cap,
            holder_lease=holder_lease,
            probe_interval=probe_interval,
            account_interval_us=interval_us(own, ahead) if own else 0.0,
            account_ahead_us=burst_us(own, "interactive", ahead) if own else 0.0,
            interactive_burst_us=burst_us(limit, "interactive", ahead)
            - _reach(limit, ahead) * 1_000_000,
        )

    @classmethod
    def of(cls, store: LimitStore, settings: Settings) -> Limiter:
        """The limiter the settings describe, for a worker."""
        return cls(
            store,
            settings.parsed_rate_limit,
            account_cap=settings.account_concurrency,
            holder_lease=settings.lease_seconds,
            probe_interval=settings.auth_pause,
            ahead=reserve_ahead(settings.scheduler_interval, settings.inprocess_max_delay),
            weights=settings.parsed_account_weights,
            account_limit=settings.parsed_account_rate_limit,
        )

    @property
    def ahead(self) -> float:
        """Seconds ahead a request may be given its moment (``reserve_ahead``)."""
        return self._ahead

    def admit(self, account_id: str, lane: Lane, holder: str, job_id: str = "") -> Admission:
        """Ask to send one request now; ``holder`` names it in the account's in-flight set
        until the outcome is recorded (the job store's transition releases it), and
        ``job_id`` (the holder if not given) in its lane's line, if it joins it."""
        return self.admit_many([Request(account_id, lane, holder, job_id or holder)])[0]

    def admit_many(
        self,
        requests: Sequence[Request],
        holds: Mapping[Lane, float] | None = None,
        follow: int = 0,
    ) -> list[Admission]:
        """Ask for a round of requests, in order, in one script run (``admit.lua``). A
        request of a lane with a hold (seconds it may still wait in its delivery) that the
        rate holds back no longer than that, and than ``ahead``, is given its moment
        (``Reason.RESERVED``); one held back longer joins its lane's line (``Reason.LINE``).
        A request past the line (let out of it, or passed earlier in its delivery) may wait
        for its moment as long as its delivery may. Without a hold, a request may be given
        any moment. Once a pause of the key refuses one, the rest wait unasked. A request
        its account's cap holds back may follow one admitted earlier in the round, or one
        of the ``held`` slots its caller has requests out on (``Reason.FOLLOWS``: its caller
        sends it once that one is answered), up to ``follow`` a slot."""
        if not requests:
            return []
        holds = holds or {}
        asks = [
            Ask(
                request.account_id,
                burst_us(self._limit, request.lane, self._ahead),
                request.holder,
                request.lane,
                request.job_id,
                self._weights.get(request.account_id, DEFAULT_WEIGHT),
                _hold(holds.get(request.lane), self._ahead, request.lane),
                holds.get(request.lane),
                request.standing,
                request.held,
            )
            for request in requests
        ]
        return [
            Admission(reason, wait_us / 1e6)
            for reason, wait_us in self._store.admit(self._round, asks, follow)
        ]

    def line_up(self, error: str) -> LineUp:
        """The key's lines, for the claim to line fresh jobs up in while their lane's line
        holds anyone (they would only be claimed to join it); ``error`` says why they wait."""
        return self._store.line_up(self._round, self._weights, DEFAULT_WEIGHT, error)

    def release(self, most: int, now: float) -> int:
        """Let jobs out of the lines for the next ``ahead`` seconds of the key's schedule
        (the scheduler sends them); how many, at most ``most``."""
        return self._store.release(self._round, self._ahead, most, now)

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


def _hold(hold: float | None, ahead: float, lane: Lane) -> float | None:
    """How long a request may wait for its moment: bulk no longer than ``ahead`` (its
    delivery would hold a thread the lines can do without), interactive as long as its
    delivery may wait."""
    if hold is None:
        return None
    return min(hold, ahead) if lane == "bulk" else hold
