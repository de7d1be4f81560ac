"""The rate limit's fair lines in a real Redis: requests the rate holds back join their
lane's line by fair-share tag (admit.lua), and the scheduler lets them out at the key's rate
(release.lua), interactive first, in proportion to the accounts' weights, an account with a
rate of its own no faster than that, nobody while the key is paused; and nobody starves."""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from typing import cast

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.limits.rate import Limiter, Reason, Request, Standing
from worker.settings import RateLimit
from worker.store.jobs import Lane
from worker.store.keys import DUE_INDEX, ApiKeyNames, job_key
from worker.store.limits import LimitStore

NAMES = ApiKeyNames.of("fp")
NOWHERE: dict[Lane, float] = {"interactive": 0.0, "bulk": 0.0}  # no wait in the delivery


def limiter(
    client: redis.Redis,
    weights: dict[str, float] | None = None,
    account_limit: str | None = None,
    ahead: float = 1.25,
) -> Limiter:
    return Limiter(
        LimitStore(client, NAMES),
        RateLimit.parse("600/min"),  # about 0.1 s apart
        account_cap=0,
        holder_lease=30,
        ahead=ahead,
        weights=weights,
        account_limit=RateLimit.parse(account_limit) if account_limit else None,
    )


def join(
    client: redis.Redis,
    lim: Limiter,
    account: str,
    job: str,
    lane: Lane = "bulk",
    state: str = "retrying",
) -> None:
    """The key's schedule is full for a long while: the request joins its lane's line, and
    its delivery hands it back (``state``)."""
    client.set(NAMES.schedule, int((time.time() + 3600) * 1e6))
    answer = lim.admit_many([Request(account, lane, f"h-{job}", job)], NOWHERE)[0]
    assert answer.reason is Reason.LINE
    client.hset(job_key(job), "state", state)


def released(client: redis.Redis, lim: Limiter, most: int) -> list[str]:
    """Let ``most`` jobs out with the key's schedule free; the jobs let out, in no order."""
    before = set(cast(list[str], client.zrange(NAMES.turns, 0, -1)))
    client.delete(NAMES.schedule, NAMES.release)
    count = lim.release(most, time.time())
    after = set(cast(list[str], client.zrange(NAMES.turns, 0, -1)))
    assert len(after - before) == count
    return sorted(after - before)


def accounts(jobs: list[str]) -> Counter[str]:
    return Counter(job.split("-")[0] for job in jobs)


def test_accounts_waiting_together_are_let_out_in_turn(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    for n in range(6):
        join(redis_client, lim, "A", f"A-{n}")
    for n in range(3):
        join(redis_client, lim, "B", f"B-{n}")

    assert accounts(released(redis_client, lim, 4)) == {"A": 2, "B": 2}
    assert accounts(released(redis_client, lim, 4)) == {"A": 3, "B": 1}


def test_an_account_that_comes_late_is_not_put_behind_the_whole_of_an_earlier_import(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client)
    for n in range(100):
        join(redis_client, lim, "A", f"A-{n}")
    released(redis_client, lim, 10)  # A's import is under way

    for n in range(5):
        join(redis_client, lim, "B", f"B-{n}")

    assert accounts(released(redis_client, lim, 10)) == {"A": 5, "B": 5}


def test_weights_share_the_rate_in_proportion(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client, weights={"A": 3})
    for n in range(12):
        join(redis_client, lim, "A", f"A-{n}")
        join(redis_client, lim, "B", f"B-{n}")

    assert accounts(released(redis_client, lim, 8)) == {"A": 6, "B": 2}


def test_the_interactive_line_is_let_out_before_the_bulk_line(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    for n in range(3):
        join(redis_client, lim, "A", f"A-{n}")
    join(redis_client, lim, "I", "I-0", lane="interactive")

    assert released(redis_client, lim, 1) == ["I-0"]


def test_a_job_let_out_is_due_at_once_and_passes_the_line_once(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    join(redis_client, lim, "A", "A-0")
    join(redis_client, lim, "A", "A-1")
    assert released(redis_client, lim, 1) == ["A-0"]
    assert redis_client.zscore(DUE_INDEX, "A-0") is not None  # the scheduler sends it now
    holds: dict[Lane, float] = {"interactive": 5.0, "bulk": 2.0}

    first = lim.admit_many([Request("A", "bulk", "h", "A-0")], holds)[0]
    again = lim.admit_many([Request("A", "bulk", "h", "A-0")], holds)[0]

    assert first.reason in (Reason.ADMITTED, Reason.RESERVED)
    assert again.reason is Reason.LINE  # its turn was taken: A-1 still waits, it goes behind


def test_a_job_let_out_waits_for_its_moment_as_long_as_its_delivery_may_keeping_its_place(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client)  # bulk may reserve 1.25 s ahead; its delivery may wait 2 s
    join(redis_client, lim, "A", "A-0")
    join(redis_client, lim, "A", "A-1")
    released(redis_client, lim, 1)
    redis_client.set(NAMES.schedule, int((time.time() + 1.8) * 1e6))  # others went first
    holds: dict[Lane, float] = {"interactive": 5.0, "bulk": 2.0}

    answer = lim.admit_many([Request("A", "bulk", "h", "A-0")], holds)[0]

    assert answer.reason is Reason.RESERVED and 1.5 < answer.wait <= 2.0


def test_a_job_whose_moment_lapsed_passes_the_line_again(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    join(redis_client, lim, "A", "A-1")  # the line holds someone
    redis_client.delete(NAMES.schedule)
    holds: dict[Lane, float] = {"interactive": 5.0, "bulk": 2.0}

    again = lim.admit_many([Request("B", "bulk", "h", "B-0", Standing.PASSED)], holds)[0]
    fresh = lim.admit_many([Request("B", "bulk", "h2", "B-1")], holds)[0]

    assert again.reason is Reason.ADMITTED
    assert fresh.reason is Reason.LINE


def test_a_new_request_joins_a_line_that_holds_anyone_even_with_the_rate_free(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client)
    join(redis_client, lim, "A", "A-0")
    redis_client.delete(NAMES.schedule)

    bulk = lim.admit("C", "bulk", "h-c", "C-0")
    interactive = lim.admit("C", "interactive", "h-i", "C-1")

    assert bulk.reason is Reason.LINE
    assert interactive.reason is Reason.ADMITTED  # the bulk line holds no interactive request


def test_a_job_whose_handback_is_not_yet_recorded_waits_for_the_next_release(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client)
    join(redis_client, lim, "A", "A-0", state="running")  # its delivery is still recording
    join(redis_client, lim, "A", "A-1")

    assert released(redis_client, lim, 2) == ["A-1"]
    redis_client.hset(job_key("A-0"), "state", "retrying")
    assert released(redis_client, lim, 2) == ["A-0"]


def test_a_job_gone_or_finished_leaves_the_line_without_taking_a_moment(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client)
    join(redis_client, lim, "A", "A-0", state="cancelled")
    join(redis_client, lim, "A", "A-1")
    redis_client.delete(job_key("A-1"))
    join(redis_client, lim, "A", "A-2")

    assert released(redis_client, lim, 1) == ["A-2"]
    assert redis_client.zcard(NAMES.bulk_line) == 0


def test_nothing_is_let_out_while_the_key_is_paused(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    join(redis_client, lim, "A", "A-0")
    lim.pause_key(5.0)

    assert released(redis_client, lim, 10) == []


def test_with_stackone_failing_one_job_at_a_time_is_let_out_to_be_the_probe(
    redis_client: redis.Redis,
) -> None:
    """Else a line holding every job would wait for a probe that never comes."""
    lim = limiter(redis_client)
    for n in range(5):
        join(redis_client, lim, "A", f"A-{n}")
    redis_client.hset(NAMES.outage, mapping={"until": 0, "step": 1000})  # its pause is over

    let_out = released(redis_client, lim, 10)
    probe = lim.admit_many([Request("A", "bulk", "h-A-0", let_out[0])], {"bulk": 2.0})[0]
    while_probing = released(redis_client, lim, 10)

    assert len(let_out) == 1 and probe.reason is Reason.PROBE
    assert while_probing == []  # the probe's answer decides
    redis_client.hset(NAMES.outage, "until", int(time.time() * 1000) + 5000)  # it failed
    redis_client.delete(NAMES.outage_probe)
    assert released(redis_client, lim, 10) == []  # and the outage pauses again


def test_the_schedule_lets_out_no_more_than_its_next_moments_hold(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, ahead=0.5)  # 0.5 s at about 0.1 s apart
    for n in range(20):
        join(redis_client, lim, "A", f"A-{n}")
    redis_client.delete(NAMES.schedule, NAMES.release)

    first = lim.release(100, time.time())
    second = lim.release(100, time.time())  # another worker's scheduler, just after

    assert 5 <= first <= 6 and second == 0


def test_accounts_with_a_rate_of_their_own_are_let_out_no_faster_than_it(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, account_limit="60/min")  # one a second or so, each
    for n in range(10):
        join(redis_client, lim, "A", f"A-{n}")
    for n in range(5):
        join(redis_client, lim, "B", f"B-{n}")

    let_out = accounts(released(redis_client, lim, 10))  # 1.25 s ahead: two moments each

    assert let_out == {"A": 2, "B": 2}  # the key could take 13: A's line does not hold B


# --- nobody starves ---------------------------------------------------------------------

WEIGHTS = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 1.0}


def bound(account: str, seen: set[str]) -> int:
    """Jobs of other accounts let out, at most, before an account's oldest waiting job:
    for each other account that waits meanwhile, its weight over this one's, plus one."""
    own = WEIGHTS[account]
    return sum(math.floor(WEIGHTS[other] / own) + 1 for other in seen if other != account)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.sampled_from(["A", "B", "C", "D", "release"]), min_size=5, max_size=60))
def test_the_oldest_waiting_job_of_every_account_goes_within_the_stated_bound(
    redis_client: redis.Redis, steps: list[str]
) -> None:
    redis_client.flushdb()
    lim = limiter(redis_client, weights=WEIGHTS)
    lines: dict[str, deque[str]] = {account: deque() for account in WEIGHTS}
    passed_by: Counter[str] = Counter()  # others let out while its oldest job waited
    seen: set[str] = set()
    for n, step in enumerate([*steps, *["release"] * 200]):
        if step != "release":
            join(redis_client, lim, step, f"{step}-{n}")
            lines[step].append(f"{step}-{n}")
            seen.add(step)
            continue
        out = released(redis_client, lim, 1)
        if not out:
            break
        who = out[0].split("-")[0]
        assert lines[who].popleft() == out[0]  # an account's own jobs go in order
        passed_by[who] = 0
        for other, line in lines.items():
            if other != who and line:
                passed_by[other] += 1
                assert passed_by[other] <= bound(other, seen)
    assert not any(lines.values())
