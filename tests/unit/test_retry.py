"""The retry policy: backoff bounds, Retry-After, and which failures are worth retrying."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.contract import ErrorKind
from worker.delivery.retry import RetryPolicy, full_jitter_delay, parse_retry_after
from worker.settings import Settings
from worker.stackone.answers import Failure

NOW = 1_700_000_000.0


def failure(kind: ErrorKind, status: int | None = None) -> Failure:
    return Failure(kind=kind, message=f"{kind} {status}", status=status)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stackone_api_key": "sk-test",
        "max_attempts": 8,
        "backoff_base": 1.0,
        "backoff_max": 600.0,
        "on_ambiguous": "retry",
    }
    return Settings(**(values | overrides))


# --- full jitter -----------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=10_000.0),
    seed=st.integers(),
)
def test_full_jitter_stays_within_its_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    ceiling = cap if attempt > 1_000 else min(cap, base * 2 ** (attempt - 1))
    delay = full_jitter_delay(attempt, base, cap, random.Random(seed))
    assert 0.0 <= delay <= ceiling


class Top(random.Random):
    """Always draws the top of the range: ``uniform(a, b) == b``, the ceiling itself."""

    def random(self) -> float:
        return 1.0


def test_full_jitter_ceiling_doubles_per_attempt() -> None:
    assert [full_jitter_delay(n, 0.5, 3.0, Top()) for n in (1, 2, 3, 4, 5)] == [
        0.5,
        1.0,
        2.0,
        3.0,
        3.0,
    ]


def test_full_jitter_refuses_attempt_zero() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        full_jitter_delay(0, 1.0, 10.0, random.Random())


# --- delay_for -------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=1, max_value=100),
    retry_after=st.none() | st.floats(min_value=0.0, max_value=100_000.0),
    backoff_max=st.floats(min_value=1.0, max_value=3_000.0),
    seed=st.integers(),
)
def test_delay_honours_retry_after_up_to_the_cap(
    attempt: int, retry_after: float | None, backoff_max: float, seed: int
) -> None:
    policy = RetryPolicy(make_settings(backoff_max=backoff_max), rng=random.Random(seed))
    delay = policy.delay_for(attempt, retry_after)
    assert 0.0 <= delay <= backoff_max
    if retry_after is not None:
        assert delay >= min(retry_after, backoff_max)


def test_delay_ceiling_doubles_with_attempts_made() -> None:
    policy = RetryPolicy(make_settings(backoff_base=1.0, backoff_max=600.0), rng=Top())
    assert [policy.delay_for(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_short_retry_after_is_a_floor_under_the_jitter() -> None:
    policy = RetryPolicy(make_settings(backoff_base=1.0), rng=random.Random(7))
    assert policy.delay_for(1, 3.0) == 3.0  # the jitter draw is at most 1.0


def test_longer_jitter_wins_over_a_short_retry_after() -> None:
    policy = RetryPolicy(make_settings(backoff_base=10.0), rng=Top())
    assert policy.delay_for(1, 3.0) == 10.0


def test_retry_after_beyond_the_cap_is_clamped() -> None:
    policy = RetryPolicy(make_settings(backoff_max=900.0), rng=random.Random(7))
    assert policy.delay_for(1, 10_000.0) == 900.0


# --- parse_retry_after -----------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), NOW) == float(seconds)
    assert parse_retry_after(f" {seconds} ", NOW) == float(seconds)


@given(st.decimals(min_value=0, max_value=10**6, places=3))
def test_parse_retry_after_tolerates_fractions(seconds: Any) -> None:
    assert parse_retry_after(str(seconds), NOW) == pytest.approx(float(seconds))


@given(
    now=st.integers(min_value=0, max_value=4_000_000_000),
    delta=st.integers(min_value=0, max_value=10**7),
)
def test_parse_retry_after_http_date_round_trips(now: int, delta: int) -> None:
    header = format_datetime(datetime.fromtimestamp(now + delta, UTC), usegmt=True)
    assert parse_retry_after(header, float(now)) == pytest.approx(float(delta))


@given(
    now=st.integers(min_value=10**8, max_value=4_000_000_000),
    ago=st.integers(min_value=1, max_value=10**8),
)
def test_parse_retry_after_past_date_means_now(now: int, ago: int) -> None:
    header = format_datetime(datetime.fromtimestamp(now - ago, UTC), usegmt=True)
    assert parse_retry_after(header, float(now)) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "1e3", "nan", "inf", "0x10", "Mon, 99 Foo 2025"]
)
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


@given(st.text())
def test_parse_retry_after_never_raises(value: str) -> None:
    parsed = parse_retry_after(value, NOW)
    assert parsed is None or parsed >= 0.0


# --- is_retryable ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "on_ambiguous", "expected"),
    [
        (ErrorKind.RETRYABLE, "park", True),
        (ErrorKind.AMBIGUOUS, "retry", True),
        (ErrorKind.AMBIGUOUS, "park", False),
        (ErrorKind.AMBIGUOUS, "reconcile", False),
        (ErrorKind.BAD_CREDENTIALS, "retry", False),
        (ErrorKind.TERMINAL, "retry", False),
        (ErrorKind.INVALID, "retry", False),
    ],
)
def test_is_retryable(kind: ErrorKind, on_ambiguous: str, expected: bool) -> None:
    policy = RetryPolicy(make_settings(on_ambiguous=on_ambiguous))
    assert policy.is_retryable(failure(kind)) is expected
