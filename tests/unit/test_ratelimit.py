"""The shared limiter in a real Redis: the rate per key, interactive ahead of bulk, the
per-account cap, the pauses a 429 asks for, and an outage's pause and probe."""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
import time

import pytest
import redis

from worker.contract import JobSpec, TicketIds
from worker.limits.keyhealth import KeyHealth
from worker.limits.outage import OUTAGE_ENDED, OUTAGE_STARTED, KeyOutage
from worker.limits.rate import (
    INTERACTIVE_BURST,
    LATE,
    SAFETY_MARGIN,
    Limiter,
    Reason,
    Request,
    Standing,
    burst_us,
    interval_us,
)
from worker.settings import RateLimit, Settings
from worker.store.jobs import Claim, JobStore, Lane, Recorded, succeeded
from worker.store.keys import (
    WAKE_TTL_MS,
    ApiKeyNames,
    account_pause_key,
    freed_key,
    inflight_key,
    wake_key,
)
from worker.store.limits import LimitStore


def key_state(client: redis.Redis) -> LimitStore:
    return LimitStore(client, ApiKeyNames.of("fp"))


def limiter(
    client: redis.Redis, rate: str = "600/min", cap: int = 0, ahead: float = 0.0
) -> Limiter:
    return Limiter(
        key_state(client), RateLimit.parse(rate), account_cap=cap, holder_lease=30, ahead=ahead
    )


@pytest.mark.parametrize(
    ("text", "requests", "seconds"),
    [("1000/min", 1000, 60.0), ("50/s", 50, 1.0), (" 3600 / hour ", 3600, 3600.0)],
)
def test_rates_are_written_per_second_minute_or_hour(
    text: str, requests: int, seconds: float
) -> None:
    assert RateLimit.parse(text) == RateLimit(requests, seconds)


@pytest.mark.parametrize("text", ["1000", "0/min", "10/fortnight", "-5/s", "many/min"])
def test_a_malformed_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="like 1000/min"):
        RateLimit.parse(text)


HOLDS: dict[Lane, float] = {"interactive": 5.0, "bulk": 2.0}


def moments(lim: Limiter, requests: list[Request]) -> list[tuple[Reason, float]]:
    """Each request's answer and when it may go (seconds from now)."""
    return [(answer.reason, answer.wait) for answer in lim.admit_many(requests, HOLDS)]


def asks(account: str, count: int, lane: Lane = "bulk", prefix: str = "") -> list[Request]:
    prefix = prefix or account
    return [Request(account, lane, f"h-{prefix}{n}", f"{prefix}{n:04d}") for n in range(count)]


def test_requests_the_rate_holds_back_are_given_moments_one_interval_apart(
    redis_client: redis.Redis,
) -> None:
    limit = RateLimit.parse("600/min")
    lim = limiter(redis_client, "600/min", ahead=2.0)

    answers = moments(lim, asks("acct", 12))

    interval = interval_us(limit, 2.0) / 1e6
    reserved = [wait for reason, wait in answers if reason is Reason.RESERVED]
    assert [reason for reason, _ in answers[: 12 - len(reserved)]] == [Reason.ADMITTED] * (
        12 - len(reserved)
    )
    assert len(reserved) >= 8  # the rest of the round: nobody polls for its turn
    gaps = [later - earlier for earlier, later in itertools.pairwise(reserved)]
    assert gaps == pytest.approx([interval] * len(gaps), abs=2e-3)


def test_a_bulk_request_held_back_longer_than_it_may_wait_joins_the_line(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "60/min", ahead=2.0)  # a second apart: two reserved at most
    answers = moments(lim, asks("acct", 6))

    assert [reason for reason, _ in answers].count(Reason.LINE) >= 2
    lined = [wait for reason, wait in answers if reason is Reason.LINE]
    assert all(wait >= 60 for wait in lined)  # due again by itself only if never released
    assert redis_client.zcard(ApiKeyNames.of("fp").bulk_line) == len(lined)


def test_interactive_requests_pass_while_bulk_holds_every_moment_it_may_reserve(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "600/min", ahead=1.25)
    bulk = moments(lim, asks("acct", 40))
    assert bulk[-1][0] is Reason.LINE  # bulk took all it could

    interactive = moments(lim, asks("other", 3, "interactive"))

    assert [reason for reason, _ in interactive[:2]] == [Reason.ADMITTED] * 2


def test_interactive_requests_alone_take_their_burst_at_once_and_no_more(
    redis_client: redis.Redis,
) -> None:
    """The reach that lets interactive jump bulk's reserved moments is not a burst of its
    own: without bulk, interactive still takes only its burst at once."""
    lim = limiter(redis_client, "1000/min", ahead=1.25)

    interactive = moments(lim, asks("acct", 12, "interactive"))

    now = [reason for reason, _ in interactive].count(Reason.ADMITTED)
    assert now == INTERACTIVE_BURST
    assert all(reason is Reason.RESERVED for reason, _ in interactive[now:])


def sent_mixed(lim: Limiter, until: float) -> list[float]:
    """When each request goes, asked one at a time (a third interactive, the rest bulk,
    each taking any wait) until one would go after ``until`` (monotonic seconds)."""
    sent: list[float] = []
    while not sent or sent[-1] <= until:
        lane: Lane = "interactive" if len(sent) % 3 == 0 else "bulk"
        answer = lim.admit_many([Request("acct", lane, "h", f"j{len(sent)}")])[0]
        sent.append(time.monotonic() + answer.wait)
    return sent


def test_no_window_holds_more_than_the_rate_plus_the_burst(redis_client: redis.Redis) -> None:
    limit = RateLimit.parse("3000/min")  # ~49 per second with the margin
    start = time.monotonic()
    sent = sent_mixed(limiter(redis_client, "3000/min", ahead=0.5), until=start + 3.0)

    per_second = 1e6 / interval_us(limit, 0.5)
    assert busiest_second(sent) <= per_second * 1.5 + INTERACTIVE_BURST + 1  # and the reach


@pytest.mark.parametrize("text", ["5/s", "10/s", "100/s"])
def test_a_limit_per_second_is_used_in_half_and_no_second_holds_more_even_sent_late(
    redis_client: redis.Redis, text: str
) -> None:
    """A window of a second leaves little room: the interactive lane's burst and its reach
    past reserved moments each take at most a share of it, not 5 requests and the whole
    1.25 s lookahead (which ran 10/s at 2.2/s, 5/s at 0.44/s), and a request may go up to
    ``LATE`` after its moment, which its 15 ms of margin does not cover."""
    limit = RateLimit.parse(text)
    start = time.monotonic()
    sent = sent_mixed(limiter(redis_client, text, ahead=1.25), until=start + 4.0)

    usable = limit.requests * (1 - SAFETY_MARGIN)
    lateness = random.Random(13)
    for _ in range(20):
        assert busiest_second([t + lateness.uniform(0, LATE) for t in sent]) <= usable
    steady = [t for t in sent if start + 1.0 <= t < start + 4.0]  # past the first burst
    assert len(steady) / 3.0 >= 0.45 * limit.requests  # 5/s: 47%; 10/s: 53%; 100/s: 58%


def test_a_limit_per_minute_keeps_its_whole_burst_however_small(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "10/min", ahead=1.25)

    interactive = moments(lim, asks("acct", INTERACTIVE_BURST, "interactive"))

    assert [reason for reason, _ in interactive] == [Reason.ADMITTED] * INTERACTIVE_BURST


def busiest_second(sent: list[float]) -> int:
    return max(sum(1 for t in sent if begin <= t < begin + 1.0) for begin in sent)


def test_the_rate_used_leaves_room_for_the_reach_of_reserved_moments() -> None:
    limit = RateLimit.parse("1000/min")

    per_minute = 60e6 / interval_us(limit, ahead=1.25)
    reach = (burst_us(limit, "interactive", 1.25)) / interval_us(limit, 1.25)

    assert per_minute + reach + 1 <= 1000 * (1 - SAFETY_MARGIN)
    assert per_minute >= 950


def test_a_paused_key_admits_nobody_until_the_pause_ends(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    lim.pause_key(2.0)

    refused = lim.admit("acct", "interactive", "h")

    assert refused.reason is Reason.KEY_PAUSED and 1.8 < refused.wait <= 2.0
    lim.pause_key(0.5)  # a shorter pause never cuts a longer one short
    assert lim.admit("other", "bulk", "h").reason is Reason.KEY_PAUSED


def test_an_account_pause_holds_only_that_account(redis_client: redis.Redis) -> None:
    lim = limiter(redis_client)
    lim.pause_account("slow-provider", 5.0)

    assert lim.admit("slow-provider", "bulk", "h").reason is Reason.ACCOUNT_PAUSED
    assert lim.admit("fine-provider", "bulk", "h").admitted


def test_an_account_at_its_cap_waits_until_a_request_leaves_its_in_flight_set(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "6000/min", cap=2)
    assert lim.admit("acct", "interactive", "a").admitted
    assert lim.admit("acct", "interactive", "b").admitted

    busy = lim.admit("acct", "interactive", "c")
    redis_client.zrem(inflight_key("acct"), "a")  # what recording the outcome does
    time.sleep(0.05)

    assert busy.reason is Reason.ACCOUNT_BUSY and busy.wait > 0
    assert lim.admit("acct", "interactive", "c").admitted
    assert lim.admit("other-account", "interactive", "d").admitted


def test_requests_the_cap_holds_back_follow_the_slots_taken_in_their_round_up_to_the_bound(
    redis_client: redis.Redis,
) -> None:
    """A follower takes no slot of its own (it goes on one taken in its round, once that
    slot's request is answered), so the account's in-flight set never holds more than the
    cap; each slot carries at most ``follow`` followers, and without one the cap refuses."""
    lim = limiter(redis_client, "6000/min", cap=2)

    answers = lim.admit_many([*asks("acct", 7), Request("other", "bulk", "h-o", "o")], follow=2)

    reasons = [answer.reason for answer in answers]
    assert reasons[:2] == [Reason.ADMITTED] * 2
    assert reasons[2:6] == [Reason.FOLLOWS] * 4
    assert reasons[6:] == [Reason.ACCOUNT_BUSY, Reason.ADMITTED]
    assert redis_client.zcard(inflight_key("acct")) == 2
    assert lim.admit_many(asks("acct", 1, prefix="late"))[0].reason is Reason.ACCOUNT_BUSY


def test_no_request_follows_a_slot_taken_in_an_earlier_round(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "6000/min", cap=1)
    assert lim.admit_many(asks("acct", 1), follow=5)[0].admitted

    later = lim.admit_many(asks("acct", 1, prefix="next"), follow=5)[0]

    assert later.reason is Reason.ACCOUNT_BUSY


def test_a_follower_is_counted_by_the_rate_as_any_request_is(
    redis_client: redis.Redis,
) -> None:
    """Followers' moments are the ones the same requests get without a cap."""
    capped = limiter(redis_client, "60/min", cap=1, ahead=5.0)
    followed = capped.admit_many(asks("acct", 6), {"bulk": 5.0}, follow=5)
    redis_client.flushdb()
    uncapped = limiter(redis_client, "60/min", cap=0, ahead=5.0)
    alone = uncapped.admit_many(asks("acct", 6), {"bulk": 5.0})

    assert [a.reason for a in followed] == [Reason.ADMITTED] + [Reason.FOLLOWS] * 5
    assert alone[-1].reason is Reason.RESERVED  # the rate holds the last ones back
    assert [a.wait for a in followed] == pytest.approx([a.wait for a in alone], abs=0.01)


def test_a_reserved_moment_takes_its_accounts_slot_only_when_it_comes(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "60/min", cap=1, ahead=3.0)
    redis_client.set(ApiKeyNames.of("fp").schedule, int((time.time() + 3.0) * 1e6))  # others'
    first, second = moments(lim, asks("acct", 2))
    assert first[0] is second[0] is Reason.RESERVED  # not in flight: the cap is not theirs yet
    assert redis_client.zcard(inflight_key("acct")) == 0

    go = [Request("acct", "bulk", f"h-acct{n}", f"acct{n:04d}", Standing.MOMENT) for n in (0, 1)]
    at_first, at_second = lim.admit_many(go)

    assert at_first.reason is Reason.ADMITTED and at_first.wait == 0
    assert at_second.reason is Reason.ACCOUNT_BUSY  # one in flight: its moment waits for it


def test_a_request_waiting_for_its_accounts_slot_is_woken_when_an_outcome_frees_one(
    redis_client: redis.Redis,
) -> None:
    """A semaphore's waiter: recording the answer of the request in flight wakes the one
    waiting, which is then admitted, long before its timeout."""
    lim = limiter(redis_client, "6000/min", cap=1)
    store = JobStore(redis_client, succeeded_ttl=60, lease_seconds=60, account_cap=1)
    job_spec = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": "t"}})
    first = store.claim(store.create(job_spec, "interactive").job_id)
    assert isinstance(first, Claim) and lim.admit("acct", "interactive", first.token).admitted
    assert lim.admit("acct", "interactive", "second").reason is Reason.ACCOUNT_BUSY
    answered = threading.Timer(0.2, store.succeed, (first, job_spec, TicketIds(id="t-1"), 1))
    answered.start()

    woken = lim.wait_for_slots({"other-account": 1, "acct": 1}, timeout=5)

    answered.join()
    assert woken == ("acct", 1)
    assert lim.admit("acct", "interactive", "second").admitted


def chained(client: redis.Redis, count: int) -> tuple[JobStore, JobSpec, list[Claim]]:
    """``count`` claimed jobs of one account that went out one after another on one slot:
    the first admitted (its entry holds the slot), the rest followers (no entry)."""
    store = JobStore(client, succeeded_ttl=60, lease_seconds=60, account_cap=1)
    job_spec = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": "t"}})
    claims = [store.claim(store.create(job_spec, "bulk").job_id) for _ in range(count)]
    assert all(isinstance(claim, Claim) for claim in claims)
    lim = limiter(client, "6000/min", cap=1)
    assert lim.admit("acct", "bulk", claims[0].token).admitted  # type: ignore[union-attr]
    return store, job_spec, claims  # type: ignore[return-value]


def record(store: JobStore, job_spec: JobSpec, claim: Claim, successor: Claim | None) -> None:
    done = dataclasses.replace(
        succeeded(claim, job_spec, TicketIds(id=f"t-{claim.job_id}"), 1), successor=successor
    )
    assert store.apply([done]) == [Recorded.OK]


def holders(client: redis.Redis) -> set[str]:
    return {str(member) for member in client.zrange(inflight_key("acct"), 0, -1)}


def test_recording_an_answer_passes_its_slot_to_the_job_that_followed_on_it(
    redis_client: redis.Redis,
) -> None:
    store, job_spec, (first, second) = chained(redis_client, 2)

    record(store, job_spec, first, successor=second)

    assert holders(redis_client) == {second.token}
    assert redis_client.get(freed_key("acct")) is None  # nothing freed: nobody is woken
    record(store, job_spec, second, successor=None)
    assert holders(redis_client) == set()
    assert redis_client.get(freed_key("acct")) == "1"


def test_a_slot_recorded_out_of_order_never_counts_fewer_holders_than_requests_out(
    redis_client: redis.Redis,
) -> None:
    """The second job on the slot is recorded before the first (two deliveries): the
    third, still out, gets its entry at once; the first, recorded last, frees its own."""
    store, job_spec, (first, second, third) = chained(redis_client, 3)

    record(store, job_spec, second, successor=third)
    assert holders(redis_client) == {first.token, third.token}  # one too many, for now
    record(store, job_spec, first, successor=second)

    assert holders(redis_client) == {third.token}


def freed_for_waiters(client: redis.Redis, account: str, slots: int) -> None:
    """What recording the answers of ``slots`` requests leaves (transition.lua)."""
    client.set(freed_key(account), slots, px=WAKE_TTL_MS)
    client.lpush(wake_key(account), "1")


def test_a_freed_slot_wakes_one_waiter_and_the_next_waits_out_its_timeout(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "6000/min", cap=3)
    freed_for_waiters(redis_client, "acct", 1)

    assert lim.wait_for_slots({"acct": 2}, timeout=1.0) == ("acct", 1)
    assert lim.wait_for_slots({"acct": 2}, timeout=0.05) is None


def test_a_waiter_takes_every_freed_slot_it_can_use_and_wakes_the_next_for_the_rest(
    redis_client: redis.Redis,
) -> None:
    """The slots one delivery's answers freed together go out together again."""
    lim = limiter(redis_client, "6000/min", cap=3)
    freed_for_waiters(redis_client, "acct", 3)

    assert lim.wait_for_slots({"acct": 2}, timeout=1.0) == ("acct", 2)
    assert lim.wait_for_slots({"acct": 5}, timeout=1.0) == ("acct", 1)
    assert lim.wait_for_slots({"acct": 5}, timeout=0.05) is None


def test_slots_freed_and_not_yet_taken_are_taken_at_once_though_another_waiter_was_woken(
    redis_client: redis.Redis,
) -> None:
    """The delivery whose answers freed them is running already: it sends its next jobs at
    once, and the waiter the signal woke finds none and waits again."""
    lim = limiter(redis_client, "6000/min", cap=3)
    freed_for_waiters(redis_client, "acct", 2)
    redis_client.delete(wake_key("acct"))  # the signal went to a delivery blocked on it

    assert lim.wait_for_slots({"acct": 5}, timeout=1.0) == ("acct", 2)


def test_a_holder_that_never_releases_frees_its_slot_when_its_lease_ends(
    redis_client: redis.Redis,
) -> None:
    lim = Limiter(
        key_state(redis_client), RateLimit.parse("6000/min"), account_cap=1, holder_lease=0.2
    )
    assert lim.admit("acct", "bulk", "crashed").admitted
    assert lim.admit("acct", "bulk", "next").reason is Reason.ACCOUNT_BUSY

    time.sleep(0.3)

    assert lim.admit("acct", "bulk", "next").admitted


def test_a_refusal_for_one_account_does_not_hold_up_the_rest_of_the_round(
    redis_client: redis.Redis,
) -> None:
    lim = limiter(redis_client, "6000/min")
    lim.pause_account("throttled", 5.0)

    answers = lim.admit_many(
        [Request("throttled", "bulk", "a", "ja"), Request("fine", "bulk", "b", "jb")]
    )

    assert [answer.reason for answer in answers] == [Reason.ACCOUNT_PAUSED, Reason.ADMITTED]


def test_limit_key_names_stay_those_running_deployments_use() -> None:
    assert ApiKeyNames.of("fp") == ApiKeyNames(
        schedule="ticketq:rl:fp",
        interactive_schedule="ticketq:rl:interactive:fp",
        interactive_line="ticketq:rl:line:interactive:fp",
        bulk_line="ticketq:rl:line:bulk:fp",
        shares="ticketq:rl:shares:fp",
        turns="ticketq:rl:turns:fp",
        release="ticketq:rl:release:fp",
        account_schedules="ticketq:rl:account:fp:",
        pause="ticketq:rl:pause:fp",
        refusal="ticketq:auth:refused:fp",
        refusal_pause="ticketq:auth:pause:fp",
        probe="ticketq:auth:probe:fp",
        failures="ticketq:outage:failures:fp",
        outage="ticketq:outage:fp",
        outage_probe="ticketq:outage:probe:fp",
    )
    assert account_pause_key("a/b") == "ticketq:rl:pause:account:a%2Fb"


def test_a_refused_key_pauses_everyone_and_is_kept_for_status_pages_until_a_success(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    lim = limiter(redis_client)
    health = KeyHealth(key_state(redis_client), "fp", pause_seconds=30)

    health.refused(401, "invalid key", now=1000.0)
    health.refused(401, "invalid key", now=1001.0)

    refusal = health.refusal()
    assert refusal is not None
    assert (refusal.status, refusal.message, refusal.since) == (401, "invalid key", 1000.0)
    assert refusal.paused_until is not None
    assert 25 < refusal.paused_until - time.time() <= 30
    assert lim.admit("acct", "interactive", "h").reason is Reason.KEY_REFUSED
    assert sum("refused API key fp" in r.getMessage() for r in caplog.records) == 1


def test_a_success_after_a_refusal_clears_it_and_says_so_once(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    health = KeyHealth(key_state(redis_client), "fp", pause_seconds=30)
    health.refused(403, "forbidden", now=1000.0)

    health.accepted()
    health.accepted(probe=True)

    assert health.refusal() is None
    assert sum("accepts API key fp again" in r.getMessage() for r in caplog.records) == 1


def outage(client: redis.Redis, after: int = 3, base: float = 1.0, cap: float = 4.0) -> KeyOutage:
    settings = Settings(outage_after=after, backoff_base=base, backoff_max=cap)
    return KeyOutage(key_state(client), "fp", settings)


def said(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_failures_short_of_the_threshold_hold_nothing(redis_client: redis.Redis) -> None:
    watch = outage(redis_client, after=3)

    watch.failed(probe=False, message="HTTP 503")
    watch.failed(probe=False, message="HTTP 503")

    assert limiter(redis_client).admit("acct", "interactive", "h").admitted


def test_a_success_between_failures_means_they_are_not_in_a_row(
    redis_client: redis.Redis,
) -> None:
    watch = outage(redis_client, after=3)
    for _ in range(2):
        watch.failed(probe=False, message="HTTP 503")
    watch.works(probe=False)
    for _ in range(2):
        watch.failed(probe=False, message="HTTP 503")

    assert limiter(redis_client).admit("acct", "interactive", "h").admitted


def test_failures_in_a_row_start_one_outage_that_holds_every_request_said_once(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    watch, other_worker = outage(redis_client, after=3), outage(redis_client, after=3)

    for _ in range(3):
        watch.failed(probe=False, message="HTTP 503")
    for _ in range(4):  # in flight on another worker when it started
        other_worker.failed(probe=False, message="HTTP 502")

    admissions = limiter(redis_client).admit_many(
        [Request("acct", "interactive", "a", "ja"), Request("other", "bulk", "b", "jb")]
    )
    assert [a.reason for a in admissions] == [Reason.OUTAGE, Reason.OUTAGE]
    assert all(0.5 < a.wait <= 1.0 for a in admissions)  # the first pause: the backoff base
    assert said(caplog, f"{OUTAGE_STARTED} fp: 3 requests in a row failed (last: HTTP 503)") == 1
    assert said(caplog, OUTAGE_STARTED) == 1
    assert redis_client.hget(ApiKeyNames.of("fp").outage, "step") == "1000"  # not extended


def test_after_the_pause_one_request_probes_and_the_rest_wait_at_most_one_step(
    redis_client: redis.Redis,
) -> None:
    watch, lim = outage(redis_client, after=1), limiter(redis_client)
    watch.failed(probe=False, message="HTTP 503")
    redis_client.hset(ApiKeyNames.of("fp").outage, "until", 0)  # the pause is over

    probe, held = lim.admit_many(asks("acct", 2, "interactive"))
    later = lim.admit("acct", "interactive", "r")

    assert probe.reason is Reason.PROBE and probe.admitted
    assert held.reason is later.reason is Reason.OUTAGE
    assert 0.5 < later.wait <= 1.0  # the probe's lock lasts a lease; the wait one step


def test_each_failed_probe_doubles_the_pause_up_to_the_backoff_cap(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    watch, lim = outage(redis_client, after=1, base=1.0, cap=4.0), limiter(redis_client)
    watch.failed(probe=False, message="HTTP 503")
    waits = []
    for _ in range(4):
        redis_client.hset(ApiKeyNames.of("fp").outage, "until", 0)
        assert lim.admit("acct", "interactive", "p").reason is Reason.PROBE
        watch.failed(probe=True, message="HTTP 503")
        waits.append(lim.admit("acct", "interactive", "q").wait)

    assert [round(w) for w in waits] == [2, 4, 4, 4]
    assert said(caplog, OUTAGE_STARTED) == 1


def test_a_success_ends_the_outage_for_every_worker_said_once(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    watch, other_worker = outage(redis_client, after=1), outage(redis_client, after=1)
    watch.failed(probe=False, message="HTTP 503")
    other_worker.failed(probe=False, message="HTTP 503")

    watch.works(probe=True)
    other_worker.works(probe=False)

    names = ApiKeyNames.of("fp")
    assert not redis_client.exists(names.failures, names.outage, names.outage_probe)
    assert limiter(redis_client).admit("acct", "interactive", "h").reason is Reason.ADMITTED
    assert said(caplog, f"{OUTAGE_ENDED} fp; sending resumes") == 1


def test_a_worker_that_saw_no_failure_leaves_the_outage_state_alone_on_success(
    redis_client: redis.Redis,
) -> None:
    outage(redis_client, after=1).failed(probe=False, message="HTTP 503")

    outage(redis_client, after=1).works(probe=False)  # a request admitted before it started

    assert limiter(redis_client).admit("acct", "interactive", "h").reason is Reason.OUTAGE


def test_a_probe_that_fails_after_a_success_ended_the_outage_does_not_start_it_again(
    redis_client: redis.Redis,
) -> None:
    watch = outage(redis_client, after=2)
    watch.failed(probe=False, message="HTTP 503")
    watch.failed(probe=False, message="HTTP 503")
    watch.works(probe=False)

    watch.failed(probe=True, message="HTTP 503")

    assert limiter(redis_client).admit("acct", "interactive", "h").admitted
