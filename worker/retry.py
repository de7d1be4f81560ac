"""When to send a failed job again, and how long to wait first.

Delays are exponential backoff with full jitter (a uniform draw below a doubling ceiling),
so that many jobs failing together, say in a bulk import during a StackOne outage, do not
come back together. A ``Retry-After`` from StackOne is a floor: the server knows when it
will take requests again, so no delay is ever shorter than it asks.

Short waits stay in-process: the worker sleeps and sends again, which is cheaper than a
round trip through the broker. Long waits go back to the queue (the caller hands
``AttemptResult.next_delay`` to it as a countdown), so no worker slot sleeps for minutes
while other jobs wait. Every delay is at most ``backoff_max``, which settings guarantee is
below the broker's visibility timeout: a countdown longer than that would have Redis
deliver the message twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_result

from worker.contract import ErrorKind
from worker.settings import Settings
from worker.stackone import Failed, Outcome, parse_retry_after

__all__ = [
    "AttemptResult",
    "RetryPolicy",
    "full_jitter_delay",
    "parse_retry_after",
]


def full_jitter_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """A delay drawn uniformly from ``[0, min(cap, base * 2 ** (attempt - 1))]``.

    ``attempt`` is the number of attempts made so far (1 after the first failure).
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, got {attempt}")
    try:
        ceiling = min(cap, base * 2.0 ** (attempt - 1))
    except OverflowError:  # 2.0 ** n overflows long after any cap is reached
        ceiling = cap
    return rng.uniform(0.0, ceiling)


@dataclass(frozen=True)
class AttemptResult:
    """What ``RetryPolicy.run`` ended with.

    ``attempts`` counts every attempt the job has had, including those before this run.
    ``next_delay`` is set only when the outcome is retryable and attempts remain: the
    delay already chosen for the next attempt, which the caller hands to the queue.
    """

    outcome: Outcome
    attempts: int
    next_delay: float | None


class RetryPolicy:
    """The one place that decides whether and when a failed attempt is tried again."""

    def __init__(
        self,
        settings: Settings,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        stopping: threading.Event | None = None,
    ) -> None:
        self._settings = settings
        self._rng = rng if rng is not None else random.Random()
        self._sleep = sleep
        # Set when the worker is shutting down: no more in-process waits, hand back instead.
        self._stopping = stopping if stopping is not None else threading.Event()

    def delay_for(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after ``attempt`` attempts; never below Retry-After, up to the cap.

        The jittered backoff still applies when it is the longer of the two: Retry-After
        says when the server may take requests again, not that every client should return
        at that same instant.
        """
        cap = self._settings.backoff_max
        delay = full_jitter_delay(attempt, self._settings.backoff_base, cap, self._rng)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, cap)

    def is_retryable(self, failure: Failed) -> bool:
        """Whether sending the same job again is the right answer to this failure.

        An ambiguous outcome may already have created the ticket, so sending again risks a
        duplicate: that is only done when the operator chose ``on_ambiguous="retry"``.
        Bad credentials are the caller's to handle (the key is wrong, not the job), and a
        terminal refusal will not change on a retry.
        """
        if failure.kind is ErrorKind.RETRYABLE:
            return True
        return failure.kind is ErrorKind.AMBIGUOUS and self._settings.on_ambiguous == "retry"

    def run(self, send: Callable[[], Outcome], attempts_before: int) -> AttemptResult:
        """Call ``send`` (one attempt each call) until the outcome is final for this process.

        Retries in-process while the outcome is retryable, the next delay is within
        ``inprocess_max_delay`` and attempts remain; otherwise returns, with the next delay
        when the queue should try again later. Exceptions from ``send`` propagate.
        """
        max_attempts = self._settings.max_attempts
        if not 0 <= attempts_before < max_attempts:
            raise ValueError(f"no attempt left: {attempts_before} of {max_attempts} made")

        def attempts(state: RetryCallState) -> int:
            return attempts_before + state.attempt_number

        def wait(state: RetryCallState) -> float:
            return self.delay_for(attempts(state), _retry_after(state))

        started = time.monotonic()

        def stop(state: RetryCallState) -> bool:
            # tenacity computes the wait before asking whether to stop, so the delay is known.
            too_long = state.upcoming_sleep > self._settings.inprocess_max_delay
            # A delivery that has used a lease's worth of time hands back, so no delivery
            # outlives two leases (settings keep that below the visibility timeout).
            spent = time.monotonic() - started >= self._settings.lease_seconds
            return too_long or spent or attempts(state) >= max_attempts or self._stopping.is_set()

        retrying = Retrying(
            sleep=self._sleep,
            retry=retry_if_result(self._wants_retry),
            wait=wait,
            stop=stop,
            # On stop, end the loop with the last outcome instead of raising RetryError.
            retry_error_callback=lambda _: None,
        )
        for attempt in retrying:
            state = attempt.retry_state
            outcome = send()
            state.set_result(outcome)
        made = attempts(state)
        if self._wants_retry(outcome) and made < max_attempts:
            return AttemptResult(outcome, made, next_delay=state.upcoming_sleep)
        return AttemptResult(outcome, made, next_delay=None)

    def _wants_retry(self, outcome: Outcome) -> bool:
        return isinstance(outcome, Failed) and self.is_retryable(outcome)


def _retry_after(state: RetryCallState) -> float | None:
    """The Retry-After of the failure just seen; only called after a retryable ``Failed``."""
    assert state.outcome is not None
    failure: Failed = state.outcome.result()
    return failure.retry_after
