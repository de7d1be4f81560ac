"""When to send a failed job again, and how long to wait first.

Delays are exponential backoff with full jitter (a uniform draw below a doubling ceiling),
so that many jobs failing together, say in a bulk import during a StackOne outage, do not
come back together. A ``Retry-After`` from StackOne is a floor: the server knows when it
will take requests again, so no delay is shorter than it asks, up to ``backoff_max``.

Where the wait is spent is the decisions' business (``worker/delivery/decisions.py``): a
short one in the worker, a long one in the due index until the scheduler re-queues the job.
"""

from __future__ import annotations

import random
import re
from datetime import UTC
from email.utils import parsedate_to_datetime

from worker.contract import ErrorKind
from worker.settings import Settings
from worker.stackone.answers import Failure

_DELTA_SECONDS = re.compile(r"\d+(\.\d+)?")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``now`` (Unix seconds) according to a ``Retry-After`` header, or
    None if there is no usable one.

    The header is either delta-seconds or an HTTP date (RFC 9110); StackOne sends seconds,
    but the providers behind it may send dates, and StackOne's own SDKs accept both.
    Fractional seconds are tolerated; a date in the past means "now" (0.0). Anything else
    is ignored rather than trusted: a garbled header must not stall a job.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


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


class RetryPolicy:
    """The one place that decides whether and when a failed attempt is tried again."""

    def __init__(
        self,
        settings: Settings,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._rng = rng if rng is not None else random.Random()

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

    def is_retryable(self, failure: Failure) -> bool:
        """Whether sending the same job again is the right answer to this failure.

        An ambiguous outcome may already have created the ticket, so sending again risks a
        duplicate: that is only done when the operator chose ``on_ambiguous="retry"``.
        Bad credentials are the caller's to handle (the key is wrong, not the job), and a
        terminal refusal will not change on a retry.
        """
        if failure.kind is ErrorKind.RETRYABLE:
            return True
        return failure.kind is ErrorKind.AMBIGUOUS and self._settings.on_ambiguous == "retry"
