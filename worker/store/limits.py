"""The limiter's and the key health's state in Redis, for one StackOne API key: its rate
schedule, the fair lines of the requests it holds back and their release, the pauses 429s
ask for, StackOne's refusal of the key (a 401/403) with the pause and the probe that follow
it, and an outage (5xx and connection errors in a row) with its growing pause and its
probe; and the wait of a request held back by its account's cap for a slot to come free
(``wait_for_slots``).

Times are Redis's own clock, so hosts need not agree on theirs. The policy (what the rate
is, how far a lane may run ahead, when to say what) lives in ``worker/limits``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import redis
from redis.client import Pipeline

from worker.store.jobs import Lane, LineUp, stamp
from worker.store.keys import (
    DUE_INDEX,
    JOB_PREFIX,
    WAKE_TTL_MS,
    ApiKeyNames,
    account_pause_key,
    freed_key,
    inflight_key,
    wake_key,
)
from worker.store.scripts import ADMIT, PAUSE, RELEASE, SLOTS, Reason, Standing, run_one

ANY_WAIT = 2**53  # microseconds a request may wait when its delivery sets no bound


@dataclass(frozen=True)
class Ask:
    """One request of an admission round."""

    account_id: str
    ahead_us: float  # how far ahead of the key's schedule its lane may go
    holder: str  # names it in its account's in-flight set until its outcome is recorded
    lane: Lane
    job_id: str  # names it in its lane's line, and its turn once released
    weight: float  # its account's share of the key's rate while others wait too
    hold: float | None  # seconds it may wait for its moment in its delivery (None: any)
    passed_hold: float | None  # the same once past the line (let out, or earlier passed)
    standing: Standing = Standing.FRESH
    held: int = 0  # its account's slots its caller holds with requests out (to follow)


@dataclass(frozen=True)
class Round:
    """What holds for every request of an admission round."""

    interval_us: float  # between two requests with the key
    account_cap: int  # requests in flight per account (0: no cap)
    holder_lease: float  # seconds an admitted request counts against its account at most
    probe_interval: float  # seconds between two probes of a refused key
    account_interval_us: float = 0.0  # between two requests of one account (0: no own rate)
    account_ahead_us: float = 0.0  # how far ahead of its own schedule an account may go
    interactive_burst_us: float = 0.0  # how far ahead of its own schedule interactive may go


@dataclass(frozen=True)
class KeyRefusal:
    status: int | None
    message: str
    since: float
    paused_until: float | None  # None once the pause is over and a probe may go


@dataclass(frozen=True)
class KeyState:
    """One key's shared state as a status page shows it (``key_states``)."""

    fingerprint: str
    refusal: KeyRefusal | None  # StackOne's refusal no success has cleared yet
    outage: bool  # most requests fail: every worker holds its requests for the probe
    paused_until: float | None  # the latest of its pauses (429, refusal, outage), Unix s


def key_states(client: redis.Redis, fingerprints: Sequence[str]) -> list[KeyState]:
    """Each key's refusal, outage and pauses, in one round trip (the web process has no API
    key of its own: it asks for the fingerprints the workers name)."""
    with client.pipeline(transaction=False) as pipe:
        for key in fingerprints:
            names = ApiKeyNames.of(key)
            pipe.get(names.refusal)
            pipe.get(names.refusal_pause)
            pipe.get(names.pause)
            pipe.hget(names.outage, "until")
            pipe.exists(names.outage)
        found = cast(list[str | int | None], pipe.execute())
    return [_key_state(key, *found[5 * i : 5 * i + 5]) for i, key in enumerate(fingerprints)]


def _key_state(
    key: str,
    refusal: str | int | None,
    refusal_pause: str | int | None,
    pause: str | int | None,
    outage_until: str | int | None,
    outage: str | int | None,
) -> KeyState:
    """The reads of ``key_states`` for one key; pauses are kept in ms of Redis's clock."""
    pauses = [int(until) / 1000 for until in (refusal_pause, pause, outage_until) if until]
    refused = _refusal(str(refusal), refusal_pause) if refusal is not None else None
    return KeyState(key, refused, bool(outage), max(pauses) if pauses else None)


def _refusal(raw: str, until: str | int | None) -> KeyRefusal:
    """A refusal as ``note_refusal`` kept it, and when its pause ends (ms), if it has not."""
    info = json.loads(raw)
    paused_until = int(until) / 1000 if until is not None else None
    return KeyRefusal(info["status"], info["message"], info["since"], paused_until)


def _microseconds(hold: float | None) -> int:
    """A wait bound as admit.lua reads it (None: any wait)."""
    return ANY_WAIT if hold is None else int(hold * 1_000_000)


class LimitStore:
    """Reads and writes the limiter's and the key health's keys for one API key."""

    def __init__(self, client: redis.Redis, names: ApiKeyNames) -> None:
        self._redis = client
        self._names = names

    def admit(
        self, limits: Round, asks: Sequence[Ask], follow: int = 0
    ) -> list[tuple[Reason, int]]:
        """Each request's answer, in order, in one script run: (why, microseconds to wait).
        Up to ``follow`` requests an account's cap holds back may follow each slot taken in
        the round or held by the caller (``Ask.held``; ``Reason.FOLLOWS``)."""
        names = self._names
        keys = [
            names.schedule,
            names.pause,
            names.refusal_pause,
            names.refusal,
            names.probe,
            names.outage,
            names.outage_probe,
            names.interactive_line,
            names.bulk_line,
            names.shares,
            names.turns,
            names.interactive_schedule,
        ]
        args: list[str | int | float] = [
            limits.interval_us,
            limits.account_cap,
            int(limits.holder_lease * 1000),
            int(limits.probe_interval * 1000),
            limits.account_interval_us,
            limits.account_ahead_us,
            limits.interactive_burst_us,
            follow,
        ]
        for ask in asks:
            keys += [
                inflight_key(ask.account_id),
                account_pause_key(ask.account_id),
                names.account_schedule(ask.account_id),
            ]
            args += [
                ask.ahead_us,
                ask.holder,
                ask.lane,
                ask.job_id,
                ask.account_id,
                ask.weight,
                _microseconds(ask.hold),
                _microseconds(ask.passed_hold),
                ask.standing.value,
                ask.held,
            ]
        flat = run_one(self._redis, ADMIT, keys, args)
        return [(Reason(int(flat[i + 1])), int(flat[i])) for i in range(0, len(flat), 2)]

    def line_up(
        self, limits: Round, weights: Mapping[str, float], default: float, error: str
    ) -> LineUp:
        """The key's lines, for claim.lua to line fresh jobs up in before claiming them, as
        admit.lua would (a lined job's error is ``error``)."""
        names = self._names
        return LineUp(
            keys=(names.interactive_line, names.bulk_line, names.shares, names.turns),
            pace_us=max(limits.interval_us, limits.account_interval_us),
            error=error,
            weights=tuple(weights.items()),
            default=default,
        )

    def release(self, limits: Round, lookahead: float, most: int, now: float) -> int:
        """Let up to ``most`` jobs out of the key's lines, as many as the next ``lookahead``
        seconds of the key's schedule have moments for, made due at ``now`` (this host's
        clock, as the due index keeps it); how many were let out."""
        names = self._names
        keys = [
            names.interactive_line,
            names.bulk_line,
            names.shares,
            names.turns,
            names.release,
            names.schedule,
            DUE_INDEX,
            names.pause,
            names.refusal_pause,
            names.refusal,
            names.outage,
            names.probe,
            names.outage_probe,
        ]
        args: list[str | int | float] = [
            limits.interval_us,
            int(lookahead * 1_000_000),
            most,
            limits.account_interval_us,
            stamp(now),
            JOB_PREFIX,
        ]
        return int(run_one(self._redis, RELEASE, keys, args))

    def wait_for_slots(self, wanted: Mapping[str, int], timeout: float) -> tuple[str, int] | None:
        """Block until slots of one of these accounts (each at its cap) are freed, for at
        most ``timeout`` seconds: the account and how many of its freed slots this took (at
        most as many as ``wanted`` of it; 0 if others took them meanwhile), or None.

        A slot freed is counted, and the first one counted signals the longest waiting
        delivery (``transition.lua``), which takes as many as it can use (``slots.lua``) and
        leaves the rest to the next: a freed slot wakes one waiter, not every one, and the
        slots one delivery's answers freed together go out together again. Slots freed and
        not yet taken are taken first, without waiting: so a delivery whose own answers
        freed them sends its next jobs at once, before the waiter they woke comes to take
        them (it finds none and waits again). The wait holds a connection of the pool."""
        for account, most in wanted.items():
            taken = self._take_slots(account, most)
            if taken:
                return account, taken
        names = {wake_key(account): account for account in wanted}
        # Redis takes a whole number of ms here, and 0 would block for good; a socket
        # timeout set in TICKETQ_REDIS_URL must not cut the wait short (then it ends early).
        seconds = max(math.ceil(timeout * 1000), 1) / 1000
        read_timeout = self._redis.connection_pool.connection_kwargs.get("socket_timeout")
        if read_timeout:
            seconds = min(seconds, read_timeout / 2)
        popped = cast(tuple[str, str] | None, self._redis.blpop(list(names), timeout=seconds))
        if popped is None:
            return None
        account = names[popped[0]]
        return account, self._take_slots(account, wanted[account])

    def _take_slots(self, account: str, most: int) -> int:
        """Up to ``most`` of the account's freed slots (slots.lua)."""
        keys = [freed_key(account), wake_key(account)]
        return int(run_one(self._redis, SLOTS, keys, [most, WAKE_TTL_MS]))

    def pause_key(self, seconds: float) -> None:
        """Nobody sends with the key for at least ``seconds`` (a 429)."""
        self._pause(self._names.pause, seconds)

    def pause_account(self, account_id: str, seconds: float) -> None:
        """Nobody sends to this account for at least ``seconds`` (its provider's 429)."""
        self._pause(account_pause_key(account_id), seconds)

    def pause_refused_key(self, seconds: float) -> bool:
        """Nobody sends with the refused key for ``seconds``; True if this started the pause."""
        until_ms = self._now_ms() + int(seconds * 1000)
        started = self._redis.set(
            self._names.refusal_pause, until_ms, px=int(seconds * 1000), nx=True
        )
        return bool(started)

    def note_refusal(self, status: int | None, message: str, since: float) -> bool:
        """Keep StackOne's refusal of the key until a request succeeds; True if it is the
        first since the last success."""
        info = json.dumps({"status": status, "message": message, "since": since})
        return bool(self._redis.set(self._names.refusal, info, nx=True))

    def clear_refusal(self) -> bool:
        """A request succeeded with the key; True if a refusal was on record."""
        return bool(self._redis.delete(self._names.refusal))

    def refusal(self) -> KeyRefusal | None:
        """The key's last refusal no success has cleared yet, and when its pause ends."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._names.refusal)
            pipe.get(self._names.refusal_pause)
            raw, until = cast(list[str | None], pipe.execute())
        return _refusal(raw, until) if raw is not None else None

    def note_failure(self, window: float) -> int:
        """A request with the key failed (5xx, connection error): the failures in a row so
        far, forgotten after ``window`` seconds without another."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._names.failures)
            pipe.pexpire(self._names.failures, int(window * 1000))
            count, _ = pipe.execute()
        return int(count)

    def start_outage(self, step: float) -> bool:
        """Hold every request with the key for ``step`` seconds, then let one probe; True if
        this started the outage (False: one was on already, and stays as it is)."""
        now_ms = self._now_ms()
        step_ms = int(step * 1000)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._names.outage, "until", now_ms + step_ms)
            pipe.hsetnx(self._names.outage, "step", step_ms)
            started, _ = pipe.execute()
        return bool(started)

    def extend_outage(self, cap: float) -> float | None:
        """The probe failed: pause again, twice the last step (up to ``cap`` seconds), and
        free the probe lock for the next; the new step, or None if no outage is on (a
        success ended it meanwhile: it is not started again)."""
        now_ms = self._now_ms()
        steps: list[int] = []  # the step set by the attempt that went through

        def extend(pipe: Pipeline) -> None:
            steps.clear()
            last = pipe.hget(self._names.outage, "step")
            if last is not None:
                steps.append(min(2 * int(last), int(cap * 1000)))
                pipe.multi()
                pipe.hset(
                    self._names.outage, mapping={"until": now_ms + steps[0], "step": steps[0]}
                )
                pipe.delete(self._names.outage_probe)

        self._redis.transaction(extend, self._names.outage)
        return steps[0] / 1000 if steps else None

    def end_outage(self) -> bool:
        """A request with the key succeeded: no failures in a row, no outage; True if an
        outage was on."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._names.failures)
            pipe.delete(self._names.outage_probe)
            pipe.delete(self._names.outage)
            *_, ended = pipe.execute()
        return bool(ended)

    def _now_ms(self) -> int:
        """Redis's clock, which admission reads, in milliseconds."""
        now_s, now_us = self._redis.time()
        return int(now_s) * 1000 + int(now_us) // 1000

    def _pause(self, key: str, seconds: float) -> None:
        run_one(self._redis, PAUSE, [key], [int(seconds * 1000)])
