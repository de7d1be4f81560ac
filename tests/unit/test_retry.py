"""The retry policy: backoff bounds, Retry-After, and the in-process retry loop."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.contract import ErrorKind, TicketIds
from worker.retry import (
    AttemptResult,
    RetryPolicy,
    full_jitter_delay,
    parse_retry_after,
)
from worker.settings import Settings
from worker.stackone import Created, Failed, Outcome

CREATED = Created(TicketIds(id="t-1", remote_id="JIRA-1"))


def failure(kind: ErrorKind, status: int | None = None, retry_after: float | None = None) -> Failed:
    return Failed(kind=kind, message=f"{kind} {status}", status=status, retry_after=retry_after)


SERVER_ERROR = failure(ErrorKind.RETRYABLE, 500)
READ_TIMEOUT = failure(ErrorKind.AMBIGUOUS)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stackone_api_key": "sk-test",
        "max_attempts": 8,
        "backoff_base": 1.0,
        "backoff_max": 600.0,
        "inprocess_max_delay": 5.0,
        "on_ambiguous": "retry",
        "visibility_timeout": 7200,  # room for the long in-process waits some tests use
    }
    return Settings(**(values | overrides))


class Script:
    """A fake ``send`` that answers from a list, and a ``sleep`` that only records."""

    def __init__(self, outcomes: Iterable[Outcome]) -> None:
        self._outcomes = iter(outcomes)
        self.calls = 0
        self.sleeps: list[float] = []

    def send(self) -> Outcome:
        self.calls += 1
        return next(self._outcomes)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def run(
    outcomes: Iterable[Outcome], attempts_before: int = 0, **overrides: Any
) -> tuple[AttemptResult, Script]:
    script = Script(outcomes)
    policy = RetryPolicy(make_settings(**overrides), rng=random.Random(7), sleep=script.sleep)
    return policy.run(script.send, attempts_before=attempts_before), script


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


def test_full_jitter_ceiling_doubles_per_attempt() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 1.0  # uniform(a, b) == b: the ceiling itself

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


# --- parse_retry_after -----------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)
    assert parse_retry_after(f" {seconds} ") == float(seconds)


@given(st.decimals(min_value=0, max_value=10**6, places=3))
def test_parse_retry_after_tolerates_fractions(seconds: Any) -> None:
    assert parse_retry_after(str(seconds)) == pytest.approx(float(seconds))


@given(
    now=st.integers(min_value=0, max_value=4_000_000_000),
    delta=st.integers(min_value=0, max_value=10**7),
)
def test_parse_retry_after_http_date_round_trips(now: int, delta: int) -> None:
    header = format_datetime(datetime.fromtimestamp(now + delta, UTC), usegmt=True)
    assert parse_retry_after(header, now=float(now)) == pytest.approx(float(delta))


@given(
    now=st.integers(min_value=10**8, max_value=4_000_000_000),
    ago=st.integers(min_value=1, max_value=10**8),
)
def test_parse_retry_after_past_date_means_now(now: int, ago: int) -> None:
    header = format_datetime(datetime.fromtimestamp(now - ago, UTC), usegmt=True)
    assert parse_retry_after(header, now=float(now)) == 0.0


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "1e3", "nan", "inf", "0x10", "Mon, 99 Foo 2025"]
)
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@given(st.text())
def test_parse_retry_after_never_raises(value: str) -> None:
    parsed = parse_retry_after(value, now=1_700_000_000.0)
    assert parsed is None or parsed >= 0.0


# --- run -------------------------------------------------------------------------------


def test_transient_errors_retried_in_process_until_created() -> None:
    result, script = run([SERVER_ERROR, SERVER_ERROR, CREATED])

    assert result == AttemptResult(CREATED, attempts=3, next_delay=None)
    assert script.calls == 3
    assert len(script.sleeps) == 2
    assert 0.0 <= script.sleeps[0] <= 1.0  # full jitter below base * 2**0
    assert 0.0 <= script.sleeps[1] <= 2.0  # ... and below base * 2**1


def test_attempts_before_count_towards_the_jitter_ceiling_and_total() -> None:
    result, script = run([SERVER_ERROR, CREATED], attempts_before=2, inprocess_max_delay=4.0)
    assert result.attempts == 4
    assert 0.0 <= script.sleeps[0] <= 4.0  # the third attempt overall: base * 2**2


def test_long_retry_after_goes_back_to_the_queue_at_once() -> None:
    rate_limited = failure(ErrorKind.RETRYABLE, 429, retry_after=60.0)

    result, script = run([rate_limited, CREATED])

    assert script.calls == 1
    assert script.sleeps == []
    assert result.outcome == rate_limited
    assert result.attempts == 1
    assert result.next_delay is not None
    assert result.next_delay >= 60.0


def test_retry_after_beyond_the_cap_is_clamped() -> None:
    rate_limited = failure(ErrorKind.RETRYABLE, 429, retry_after=10_000.0)
    result, _ = run([rate_limited], backoff_max=900.0)
    assert result.next_delay == 900.0


def test_short_retry_after_is_slept_in_process() -> None:
    rate_limited = failure(ErrorKind.RETRYABLE, 429, retry_after=3.0)
    result, script = run([rate_limited, CREATED])
    assert result.outcome == CREATED
    assert script.sleeps == [3.0]


def test_max_attempts_respected() -> None:
    result, script = run([SERVER_ERROR] * 10, max_attempts=3, inprocess_max_delay=600.0)

    assert script.calls == 3
    assert len(script.sleeps) == 2
    assert result == AttemptResult(SERVER_ERROR, attempts=3, next_delay=None)


def test_max_attempts_counts_attempts_made_before() -> None:
    result, script = run([SERVER_ERROR] * 10, attempts_before=6, inprocess_max_delay=600.0)
    assert script.calls == 2
    assert result.attempts == 8
    assert result.next_delay is None


def test_no_attempt_left_is_refused() -> None:
    with pytest.raises(ValueError, match="no attempt left"):
        run([CREATED], attempts_before=8)


def test_queue_delay_given_when_in_process_budget_is_spent() -> None:
    # A zero in-process budget: every retry goes through the queue.
    result, script = run([SERVER_ERROR], inprocess_max_delay=0.0, backoff_base=10.0)
    assert script.calls == 1
    assert result.next_delay is not None
    assert 0.0 < result.next_delay <= 10.0


@pytest.mark.parametrize(
    "final",
    [
        failure(ErrorKind.TERMINAL, 422),
        failure(ErrorKind.TERMINAL, 501),
        failure(ErrorKind.BAD_CREDENTIALS, 401),
    ],
)
def test_non_retryable_returns_after_one_call(final: Failed) -> None:
    result, script = run([final, CREATED])
    assert script.calls == 1
    assert script.sleeps == []
    assert result == AttemptResult(final, attempts=1, next_delay=None)


def test_ambiguous_retried_under_retry_policy() -> None:
    result, script = run([READ_TIMEOUT, CREATED], on_ambiguous="retry")
    assert script.calls == 2
    assert result.outcome == CREATED


def test_ambiguous_not_retried_under_park_policy() -> None:
    result, script = run([READ_TIMEOUT, CREATED], on_ambiguous="park")
    assert script.calls == 1
    assert result == AttemptResult(READ_TIMEOUT, attempts=1, next_delay=None)


@pytest.mark.parametrize(
    ("kind", "on_ambiguous", "expected"),
    [
        (ErrorKind.RETRYABLE, "park", True),
        (ErrorKind.AMBIGUOUS, "retry", True),
        (ErrorKind.AMBIGUOUS, "park", False),
        (ErrorKind.BAD_CREDENTIALS, "retry", False),
        (ErrorKind.TERMINAL, "retry", False),
        (ErrorKind.INVALID, "retry", False),
    ],
)
def test_is_retryable(kind: ErrorKind, on_ambiguous: str, expected: bool) -> None:
    policy = RetryPolicy(make_settings(on_ambiguous=on_ambiguous))
    assert policy.is_retryable(failure(kind)) is expected


def test_exceptions_from_send_propagate() -> None:
    def send() -> Outcome:
        raise ConnectionError("job store unreachable")

    policy = RetryPolicy(make_settings(), sleep=lambda seconds: None)
    with pytest.raises(ConnectionError, match="job store unreachable"):
        policy.run(send, attempts_before=0)
