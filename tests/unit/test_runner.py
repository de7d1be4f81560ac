"""What one delivery of a job does, with a real job store, limiter, key health and outage
watch and a scripted StackOne: claims, reconciliation, effects performed, leases and records.

Which decision each answer gets is tested without Redis in ``test_decisions.py``; the
integration and chaos tests run the same deliveries against real HTTP and real workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis

from tests.unit.test_decisions import claimed
from worker.contract import ErrorKind, JobRecord, JobSpec, JobState, TicketCreate, TicketIds
from worker.delivery.attempt import Attempt
from worker.delivery.decisions import IN_LINE, Decisions
from worker.delivery.loop import EventLoop
from worker.delivery.retry import RetryPolicy
from worker.delivery.runner import GROUP, JobRunner, _next_group
from worker.limits.keyhealth import KeyHealth
from worker.limits.outage import OUTAGE_ENDED, OUTAGE_STARTED, KeyOutage
from worker.limits.rate import LATE, Admission, Limiter, Reason, Request, interval_us
from worker.settings import Settings
from worker.stackone.answers import Answer, Failure, TicketCreated, TicketPage
from worker.store.jobs import Claim, JobStore, Lane, NotClaimed
from worker.store.keys import COUNTS, DUE_INDEX, ApiKeyNames, inflight_key, job_key
from worker.store.limits import LimitStore
from worker.text import printable

TITLE = "Checkout is down"


class ScriptedStackOne:
    """Answers each create with the next scripted outcome and remembers what was sent."""

    def __init__(
        self,
        *outcomes: Answer,
        listed: list[dict[str, Any]] | None = None,
        listing_fails: int = 0,
    ) -> None:
        self.outcomes = list(outcomes)
        self.listed = listed or []
        self.listing_fails = listing_fails
        self.sent: list[tuple[str, TicketCreate]] = []
        self.list_calls = 0

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer:
        self.sent.append((account_id, ticket))
        return self.outcomes.pop(0)

    async def list_tickets(
        self, account_id: str, updated_after: float, cursor: str | None = None
    ) -> TicketPage | Failure:
        self.list_calls += 1
        if self.listing_fails:
            self.listing_fails -= 1
            return failure(ErrorKind.RETRYABLE, 503)
        return TicketPage(self.listed, None)


def created(n: int) -> TicketCreated:
    return TicketCreated(ticket=TicketIds(id=f"t-{n}", remote_id=f"PROJ-{n}"))


CREATED = created(1)


def failure(kind: ErrorKind, status: int | None = None, **extra: Any) -> Failure:
    return Failure(kind=kind, message=f"{kind} {status}", status=status, **extra)


LOOP = EventLoop()


def just_now() -> str:
    """A ``created_at`` as StackOne writes it, for a ticket created a moment ago."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Harness:
    def __init__(self, redis_client: redis.Redis, api: ScriptedStackOne, **overrides: Any):
        self.settings = Settings.model_validate(
            {"TICKETQ_MAX_ATTEMPTS": "3", "TICKETQ_INPROCESS_MAX_DELAY": "0", **overrides}
        )
        self.store = JobStore.from_settings(self.settings, client=redis_client)
        policy = RetryPolicy(self.settings, rng=random.Random(1))
        key_state = LimitStore(redis_client, ApiKeyNames.of("fp"))
        self.limiter = Limiter.of(key_state, self.settings)
        self.health = KeyHealth(key_state, "fp", pause_seconds=30)
        self.outage = KeyOutage(key_state, "fp", self.settings)
        decisions = Decisions(self.settings, policy)
        self.api = api
        self.runner = JobRunner(
            self.settings,
            self.store,
            api,
            LOOP,
            self.limiter,
            decisions,
            self.health,
            self.outage,
            threading.Event(),
        )
        self.redis = redis_client

    def submit(self) -> str:
        spec = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": TITLE}})
        return self.store.create(spec, "interactive").job_id

    def run(self, job_id: str) -> JobRecord:
        self.runner.run([job_id])
        record = self.store.get(job_id)
        assert record is not None
        return record

    def due_at(self, job_id: str) -> float | None:
        return self.redis.zscore(DUE_INDEX, job_id)


def test_a_created_ticket_ends_the_job_succeeded(redis_client: redis.Redis) -> None:
    h = Harness(redis_client, ScriptedStackOne(CREATED))
    job_id = h.submit()

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED and record.ticket == CREATED.ticket
    assert h.due_at(job_id) is None


def test_a_long_wait_is_recorded_as_retrying_and_scheduled(redis_client: redis.Redis) -> None:
    h = Harness(redis_client, ScriptedStackOne(failure(ErrorKind.RETRYABLE, 503, retry_after="30")))
    job_id = h.submit()

    record = h.run(job_id)

    assert record.state == JobState.RETRYING and record.attempts == 1
    assert record.next_attempt_at is not None and record.next_attempt_at >= time.time() + 29
    assert h.due_at(job_id) == pytest.approx(record.next_attempt_at)


def test_a_finished_job_redelivered_is_not_sent_again(redis_client: redis.Redis) -> None:
    h = Harness(redis_client, ScriptedStackOne(CREATED))
    job_id = h.submit()
    h.run(job_id)

    h.run(job_id)

    assert len(h.api.sent) == 1


def test_an_ambiguous_outcome_is_reconciled_by_adopting_the_listed_ticket(
    redis_client: redis.Redis,
) -> None:
    listed = [{"id": "t-9", "remote_id": "PROJ-9", "title": TITLE, "created_at": just_now()}]
    h = Harness(redis_client, ScriptedStackOne(failure(ErrorKind.AMBIGUOUS, 408), listed=listed))
    job_id = h.submit()

    waiting = h.run(job_id)
    assert waiting.state == JobState.RETRYING and waiting.uncertain_since is not None
    h.redis.hset(job_key(job_id), "next_attempt_at", 0)

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED
    assert record.ticket == TicketIds(id="t-9", remote_id="PROJ-9")
    assert len(h.api.sent) == 1 and h.api.list_calls == 1
    assert h.store.owners_of("acct", ["t-9"]) == [job_id]


def test_reconciliation_sends_again_when_no_unowned_ticket_matches(
    redis_client: redis.Redis,
) -> None:
    listed = [
        {"id": "t-other", "title": "Another title", "created_at": just_now()},
        {"id": "t-owned", "title": TITLE, "created_at": just_now()},
    ]
    h = Harness(
        redis_client,
        ScriptedStackOne(failure(ErrorKind.AMBIGUOUS), CREATED, listed=listed),
        TICKETQ_RECONCILE_SETTLE="0",
    )
    h.redis.set("ticketq:ticket:acct:t-owned", "some-other-job")
    job_id = h.submit()
    h.run(job_id)
    h.redis.hset(job_key(job_id), "next_attempt_at", 0)

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED and record.ticket == CREATED.ticket
    assert len(h.api.sent) == 2


def test_bad_credentials_pause_every_worker_without_failing_or_counting(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(failure(ErrorKind.BAD_CREDENTIALS, 401)))
    first, second = h.submit(), h.submit()

    refused = h.run(first)
    waiting = h.run(second)

    assert (refused.state, refused.attempts) == (JobState.RETRYING, 0)
    assert refused.error is not None and refused.error.kind == ErrorKind.BAD_CREDENTIALS
    assert waiting.state == JobState.RETRYING and waiting.attempts == 0
    assert len(h.api.sent) == 1  # the second job was never sent while paused
    assert h.limiter.admit("acct", "interactive", "p").reason is Reason.KEY_REFUSED
    assert waiting.next_attempt_at is not None and waiting.next_attempt_at > time.time() + 25


def test_a_job_whose_lease_expired_is_taken_over_as_uncertain(redis_client: redis.Redis) -> None:
    h = Harness(redis_client, ScriptedStackOne(CREATED), TICKETQ_ON_AMBIGUOUS="park")
    job_id = h.submit()
    lost = h.store.claim(job_id)
    assert isinstance(lost, Claim)
    h.redis.hset(job_key(job_id), "lease_until", 0)  # its worker died mid-request

    record = h.run(job_id)

    assert record.state == JobState.FAILED
    assert record.error is not None and record.error.kind == ErrorKind.UNCERTAIN
    assert h.api.sent == []


def test_a_job_that_loses_its_worker_every_time_ends_failed_as_poison(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne())
    job_id = h.submit()
    for _ in range(3):  # TICKETQ_MAX_LOST_ATTEMPTS
        claim = h.store.claim(job_id)
        assert isinstance(claim, Claim)
        h.redis.hset(job_key(job_id), "lease_until", 0)

    record = h.run(job_id)

    assert record.state == JobState.FAILED
    assert record.error is not None and record.error.kind == ErrorKind.POISON
    assert h.api.sent == []
    assert h.store.failed_ids() == [job_id]


class Meanwhile(ScriptedStackOne):
    """Answers as scripted; while the ``during``-th request waits for its answer,
    ``meanwhile`` runs (what another worker does in that time)."""

    def __init__(self, *outcomes: Answer, during: int, meanwhile: Callable[[], None]) -> None:
        super().__init__(*outcomes)
        self.during = during
        self.meanwhile = meanwhile

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer:
        answer = await super().create_ticket(account_id, ticket)
        if len(self.sent) == self.during:
            self.meanwhile()
        return answer


def test_a_job_whose_lease_ran_out_while_it_waited_its_turn_is_dropped_not_sent(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A delivery's waiting jobs take their turns one after another, each after the answers
    of the turns before it: a StackOne slow to answer can outlast a waiting job's lease, and
    another worker's scheduler hands the job to a delivery that sends it. Sending it here
    as well could make a second ticket (and its outcome would be refused: lost_lease)."""
    monkeypatch.setattr("worker.delivery.runner.LEASE_SLACK", 0)  # as if it had run long
    other_worker = JobStore(redis_client, succeeded_ttl=60, lease_seconds=60)
    taken: list[Claim | NotClaimed] = []

    def lease_runs_out_and_another_delivery_takes_it() -> None:
        redis_client.hset(job_key(second), "lease_until", 0)
        taken.append(other_worker.claim(second))

    api = Meanwhile(
        failure(ErrorKind.RETRYABLE, 503, retry_after="0.1"),
        failure(ErrorKind.RETRYABLE, 503, retry_after="0.3"),
        CREATED,
        CREATED,
        during=3,  # the first job's second request, while the second job waits its turn
        meanwhile=lease_runs_out_and_another_delivery_takes_it,
    )
    h = Harness(redis_client, api, TICKETQ_INPROCESS_MAX_DELAY="1", TICKETQ_BACKOFF_BASE="0.01")
    first, second = h.submit(), h.submit()

    with caplog.at_level(logging.INFO, logger="ticketq.worker"):
        h.runner.run([first, second])

    assert len(taken) == 1 and isinstance(taken[0], Claim)
    assert len(api.sent) == 3  # the second job only once, before it was taken over
    assert h.redis.hget(job_key(second), "lease_token") == taken[0].token
    assert "lease lost to another delivery" in caplog.text and "not recorded" not in caplog.text


@pytest.mark.parametrize("stored", ['{"account_id": "acct", "ticket": {"sumary": "x"}}', "{}"])
def test_a_stored_job_that_no_longer_validates_fails_as_invalid(
    redis_client: redis.Redis, stored: str
) -> None:
    h = Harness(redis_client, ScriptedStackOne())
    job_id = h.submit()
    h.redis.delete(job_key(job_id))  # as another version stored it, in one field
    old = ["state", "queued", "account_id", "acct", "spec", stored, "created_at", "1"]
    h.redis.hset(job_key(job_id), items=old)

    record = h.run(job_id)

    assert record.state == JobState.FAILED
    assert record.error is not None and record.error.kind == ErrorKind.INVALID
    assert h.api.sent == []


def test_a_replay_keeps_reconciling_first_until_a_listing_succeeds_then_stops_being_uncertain(
    redis_client: redis.Redis,
) -> None:
    api = ScriptedStackOne(failure(ErrorKind.RETRYABLE, 503), listing_fails=3)
    h = Harness(redis_client, api, TICKETQ_ON_AMBIGUOUS="park")
    job_id = h.submit()
    long_ago = time.time() - 3600  # past the settle time: nothing listed means not created
    h.redis.hset(job_key(job_id), mapping={"uncertain_since": long_ago, "reconcile_first": 1})

    h.run(job_id)  # every read of the listing fails: still to be reconciled first, unsent
    assert h.redis.hget(job_key(job_id), "reconcile_first") == "1" and api.sent == []
    h.redis.hset(job_key(job_id), "next_attempt_at", 0)
    record = h.run(job_id)  # nothing listed: sent, and a 503 is now an ordinary retry

    assert api.list_calls == 4 and len(api.sent) == 1
    assert record.state == JobState.RETRYING and record.uncertain_since is None
    assert h.redis.hget(job_key(job_id), "reconcile_first") is None


def test_a_429_pauses_the_key_for_every_worker_and_does_not_count_as_an_attempt(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(failure(ErrorKind.RETRYABLE, 429, retry_after="20")))
    job_id, other = h.submit(), h.submit()

    record = h.run(job_id)
    waiting = h.run(other)

    assert record.state == JobState.RETRYING and record.attempts == 0
    assert record.next_attempt_at is not None and record.next_attempt_at >= time.time() + 19
    assert waiting.state == JobState.RETRYING and waiting.attempts == 0
    assert len(h.api.sent) == 1  # the other job never went out during the pause
    assert h.limiter.admit("acct", "interactive", "probe").reason is Reason.KEY_PAUSED


def test_a_429_from_the_provider_pauses_only_that_account(redis_client: redis.Redis) -> None:
    throttled = failure(
        ErrorKind.RETRYABLE, 429, retry_after="20", provider_errors=[{"status": 429}]
    )
    h = Harness(redis_client, ScriptedStackOne(throttled))

    h.run(h.submit())

    assert h.limiter.admit("acct", "interactive", "p").reason is Reason.ACCOUNT_PAUSED
    assert h.limiter.admit("another-account", "interactive", "p").admitted


def test_a_long_wait_for_the_rate_limit_hands_the_job_back_unsent(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(), TICKETQ_RATE_LIMIT="60/min")
    while h.limiter.admit("acct", "bulk", "someone-else").admitted:
        pass  # another worker's bulk import took the whole rate
    job_id = h.submit()
    h.redis.hset(job_key(job_id), "lane", "bulk")

    record = h.run(job_id)

    assert record.state == JobState.RETRYING and record.attempts == 0
    assert record.error is not None and "rate limit" in record.error.message
    assert h.api.sent == []


class TimedStackOne(ScriptedStackOne):
    """Also remembers when each request went out."""

    def __init__(self, *outcomes: Answer) -> None:
        super().__init__(*outcomes)
        self.times: list[float] = []

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer:
        self.times.append(time.monotonic())
        return await super().create_ticket(account_id, ticket)


class SlowStackOne(ScriptedStackOne):
    """Answers after ``latency`` seconds, counting the requests in flight at once."""

    def __init__(self, *outcomes: Answer, latency: float = 0.05) -> None:
        super().__init__(*outcomes)
        self.latency = latency
        self.in_flight = self.peak = 0

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            return await super().create_ticket(account_id, ticket)
        finally:
            self.in_flight -= 1


def counting_rounds(h: Harness) -> list[Sequence[Request]]:
    """Every admission round the runner asks for, from now on."""
    rounds: list[Sequence[Request]] = []
    admit_many = h.limiter.admit_many

    def counted(
        requests: Sequence[Request], holds: Mapping[Lane, float] | None = None, follow: int = 0
    ) -> list[Admission]:
        rounds.append(requests)
        return admit_many(requests, holds, follow)

    h.limiter.admit_many = counted  # type: ignore[method-assign]
    return rounds


def test_jobs_the_cap_holds_back_go_on_their_rounds_slots_as_each_is_answered(
    redis_client: redis.Redis,
) -> None:
    """A semaphore handed on within the delivery: no job waits for a round trip, the
    account never has more than its cap in flight, and one admission round serves all."""
    api = SlowStackOne(*[created(n) for n in range(9)])
    h = Harness(redis_client, api, TICKETQ_ACCOUNT_CONCURRENCY="2", TICKETQ_RATE_LIMIT="60000/min")
    h.runner.run([h.submit()])  # StackOne's latency, as the runner learns it
    rounds = counting_rounds(h)
    jobs = [h.submit() for _ in range(8)]

    h.runner.run(jobs)

    assert all(h.store.get(job).state == JobState.SUCCEEDED for job in jobs)  # type: ignore[union-attr]
    assert api.peak == 2 and len(rounds) == 1
    assert redis_client.zcard(inflight_key("acct")) == 0


def test_deliveries_of_one_process_share_their_accounts_slots_and_never_exceed_the_cap(
    redis_client: redis.Redis,
) -> None:
    """Jobs of one delivery follow the slots another delivery of the process holds: each
    freed slot carries the next job of either, and the account's in-flight set, passed
    on from job to job, ends empty."""
    api = SlowStackOne(*[created(n) for n in range(13)])
    h = Harness(redis_client, api, TICKETQ_ACCOUNT_CONCURRENCY="2", TICKETQ_RATE_LIMIT="60000/min")
    h.runner.run([h.submit()])
    batches = [[h.submit() for _ in range(6)] for _ in range(2)]

    threads = [threading.Thread(target=h.runner.run, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    states = {h.store.get(job).state for batch in batches for job in batch}  # type: ignore[union-attr]
    assert states == {JobState.SUCCEEDED}
    assert api.peak == 2 and redis_client.zcard(inflight_key("acct")) == 0


def test_a_fresh_job_whose_lanes_line_holds_anyone_joins_it_unclaimed_and_goes_once_let_out(
    redis_client: redis.Redis,
) -> None:
    """Claiming it would only hand it back to the line (admit.lua): it joins the line in
    the claim, held back, never claimed; let out, it is claimed and sent once."""
    api = ScriptedStackOne(created(1))
    h = Harness(redis_client, api, TICKETQ_RATE_LIMIT="600/min")
    names = ApiKeyNames.of("fp")
    redis_client.set(names.schedule, int((time.time() + 3600) * 1e6))  # full for an hour
    nowhere: dict[Lane, float] = {"interactive": 0.0, "bulk": 0.0}
    ahead = h.limiter.admit_many([Request("acct", "interactive", "h-0", "ahead-0")], nowhere)[0]
    assert ahead.reason is Reason.LINE
    job_id = h.submit()

    record = h.run(job_id)

    assert record.state == JobState.RETRYING and record.error is not None
    assert record.error.message == IN_LINE
    assert redis_client.hget(job_key(job_id), "deliveries") is None  # never claimed
    line = redis_client.zrange(names.interactive_line, 0, -1)
    assert line == ["ahead-0|acct", f"{job_id}|acct"] and api.sent == []
    assert redis_client.hget(COUNTS, "interactive:held_back") == "1"

    redis_client.delete(names.schedule)
    redis_client.hset(job_key("ahead-0"), "state", "succeeded")  # gone: it leaves the line
    assert h.limiter.release(10, time.time()) == 1
    assert [due.job_id for due in h.store.take_due()] == [job_id]
    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED and len(api.sent) == 1
    assert redis_client.hget(COUNTS, "interactive:held_back") == "0"


async def _stall(seconds: float) -> None:
    """Keep the event loop from running anything else for ``seconds``."""
    time.sleep(seconds)


def test_a_round_follows_the_slots_another_delivery_took_before_the_loop_sends_on_them(
    redis_client: redis.Redis,
) -> None:
    """A slot is the process's from the moment it is admitted, not from when the event
    loop starts its request: a second delivery admitted in between follows it, where it
    found the account full and no slot here to follow, and was handed back."""
    api = SlowStackOne(*[created(n) for n in range(5)])
    h = Harness(redis_client, api, TICKETQ_ACCOUNT_CONCURRENCY="2", TICKETQ_RATE_LIMIT="60000/min")
    h.runner.run([h.submit()])
    first, second = [h.submit(), h.submit()], [h.submit(), h.submit()]

    stalled = LOOP.submit(_stall(LATE / 2))  # not so long that the followers' moments lapse
    earlier = threading.Thread(target=h.runner.run, args=(first,))
    earlier.start()
    while redis_client.zcard(inflight_key("acct")) < 2:
        time.sleep(0.005)
    h.runner.run(second)
    earlier.join(timeout=30)
    stalled.result()

    assert all(h.store.get(job).state == JobState.SUCCEEDED for job in first + second)  # type: ignore[union-attr]
    assert api.peak == 2


def test_jobs_go_at_their_moments_while_earlier_answers_are_still_out(
    redis_client: redis.Redis,
) -> None:
    """StackOne answering slowly holds no moment back: had the delivery waited for its
    first group's answers, the later moments would have lapsed and those jobs would wait
    in line, unsent."""
    api = SlowStackOne(*[created(n) for n in range(8)], latency=1.0)
    h = Harness(
        redis_client,
        api,
        TICKETQ_RATE_LIMIT="600/min",  # about 0.1 s apart
        TICKETQ_INPROCESS_MAX_DELAY=5,
        TICKETQ_SCHEDULER_INTERVAL=1,
    )
    jobs = [h.submit() for _ in range(8)]
    for job_id in jobs:
        h.redis.hset(job_key(job_id), "lane", "bulk")

    h.runner.run(jobs)

    assert {h.store.get(job).state for job in jobs} == {JobState.SUCCEEDED}  # type: ignore[union-attr]
    assert api.peak == 8


def test_a_slot_whose_request_failed_carries_no_follower(redis_client: redis.Redis) -> None:
    """A failure may mean the account or the key must wait: its followers ask again."""
    api = SlowStackOne(created(0), failure(ErrorKind.TERMINAL, 422), created(1))
    h = Harness(
        redis_client,
        api,
        TICKETQ_ACCOUNT_CONCURRENCY="1",
        TICKETQ_RATE_LIMIT="60000/min",
        TICKETQ_INPROCESS_MAX_DELAY="5",
    )
    h.runner.run([h.submit()])
    rounds = counting_rounds(h)
    jobs = [h.submit() for _ in range(2)]

    h.runner.run(jobs)

    states = [h.store.get(job).state for job in jobs]  # type: ignore[union-attr]
    assert states == [JobState.FAILED, JobState.SUCCEEDED]
    assert len(rounds) == 2 and api.peak == 1


def test_bulk_jobs_the_rate_holds_back_go_at_their_moments_or_wait_in_line_unsent(
    redis_client: redis.Redis,
) -> None:
    api = TimedStackOne(*[created(n) for n in range(12)])
    h = Harness(
        redis_client,
        api,
        TICKETQ_RATE_LIMIT="120/min",  # about half a second apart
        TICKETQ_INPROCESS_MAX_DELAY=5,
        TICKETQ_SCHEDULER_INTERVAL=1,
    )
    rounds = counting_rounds(h)
    jobs = [h.submit() for _ in range(12)]
    for job_id in jobs:
        h.redis.hset(job_key(job_id), "lane", "bulk")

    h.runner.run(jobs)

    records = [h.store.get(job_id) for job_id in jobs]
    sent = [r for r in records if r and r.state == JobState.SUCCEEDED]
    waiting = [r for r in records if r and r.state == JobState.RETRYING]
    assert 3 <= len(sent) <= 6 and len(sent) + len(waiting) == len(jobs)
    # Each job asked at most twice: for its moment, and when it came (for its account's slot).
    asked = Counter(request.job_id for round_ in rounds for request in round_)
    assert max(asked.values()) <= 2 and sum(asked.values()) <= len(jobs) + len(sent)
    interval = interval_us(h.settings.parsed_rate_limit, 1.25) / 1e6
    gaps = [later - earlier for earlier, later in itertools.pairwise(api.times)]
    assert min(gaps[2:]) >= interval - 0.02  # past the burst, one moment after another
    # The rest wait unsent in the line, until the scheduler lets them out.
    assert all(r.attempts == 0 and r.next_attempt_at for r in waiting)
    assert h.redis.zcard(ApiKeyNames.of("fp").bulk_line) == len(waiting)
    assert all(r.next_attempt_at and r.next_attempt_at > time.time() + 30 for r in waiting)


def test_one_delivery_of_a_batch_takes_each_jobs_own_decision(redis_client: redis.Redis) -> None:
    rejected = failure(ErrorKind.TERMINAL, 422)
    down = failure(ErrorKind.RETRYABLE, 503, retry_after="30")
    h = Harness(redis_client, ScriptedStackOne(CREATED, rejected, down))
    jobs = [h.submit() for _ in range(3)]

    h.runner.run(jobs)

    records = [h.store.get(job_id) for job_id in jobs]
    assert [r.state if r else None for r in records] == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.RETRYING,
    ]
    assert [r.attempts if r else None for r in records] == [1, 1, 1]


DOWN = failure(ErrorKind.RETRYABLE, 503)
OUTAGE = ApiKeyNames.of("fp").outage


def test_a_job_keeps_its_first_failure_across_deliveries_and_ends_exhausted_after_the_budget(
    redis_client: redis.Redis,
) -> None:
    h = Harness(
        redis_client,
        ScriptedStackOne(DOWN, DOWN),
        TICKETQ_MAX_ATTEMPTS="0",
        TICKETQ_RETRY_FOR="60",
    )
    job_id = h.submit()
    first = h.run(job_id)
    since = float(h.redis.hget(job_key(job_id), "failing_since") or 0)
    assert first.state == JobState.RETRYING and time.time() - 5 < since <= time.time()
    h.redis.hset(job_key(job_id), mapping={"next_attempt_at": 0, "failing_since": since - 60})

    done = h.run(job_id)

    assert done.state == JobState.FAILED and done.error is not None
    assert done.error.kind == ErrorKind.EXHAUSTED and done.attempts == 2
    assert done.error.message.startswith("gave up after 2 attempts over 60s; last error: ")
    # A final job no longer carries it: a replay starts its budget afresh.
    assert h.redis.hget(job_key(job_id), "failing_since") is None


def test_failures_in_a_row_start_an_outage_that_holds_every_job_unsent_and_uncounted(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(redis_client, ScriptedStackOne(DOWN, DOWN), TICKETQ_OUTAGE_AFTER="2")
    first, second, third, fourth = (h.submit() for _ in range(4))

    with caplog.at_level(logging.INFO, logger="ticketq.worker"):
        failed = [h.run(first), h.run(second)]
        held = [h.run(third), h.run(fourth)]

    assert [r.attempts for r in failed] == [1, 1] and len(h.api.sent) == 2
    for record in held:
        assert record.state == JobState.RETRYING and record.attempts == 0
        assert record.error is not None and record.error.kind == ErrorKind.RETRYABLE
        assert record.error.message.startswith("waiting: StackOne is failing")
    assert h.limiter.admit("acct", "interactive", "p").reason is Reason.OUTAGE
    assert caplog.text.count(OUTAGE_STARTED) == 1


def test_after_the_outage_pause_one_job_probes_and_its_success_ends_the_outage(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(
        redis_client, ScriptedStackOne(DOWN, DOWN, created(2), created(3)), TICKETQ_OUTAGE_AFTER="2"
    )
    jobs = [h.submit() for _ in range(4)]
    h.run(jobs[0])
    h.run(jobs[1])
    h.redis.hset(OUTAGE, "until", 0)  # the outage's pause is over

    with caplog.at_level(logging.INFO, logger="ticketq.worker"):
        probe = h.run(jobs[2])
        after = h.run(jobs[3])

    assert probe.state == after.state == JobState.SUCCEEDED
    assert not h.redis.exists(OUTAGE)
    assert caplog.text.count(OUTAGE_ENDED) == 1


def test_a_failed_probe_pauses_the_outage_again_for_twice_as_long(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(DOWN, DOWN, DOWN), TICKETQ_OUTAGE_AFTER="2")
    jobs = [h.submit() for _ in range(4)]
    h.run(jobs[0])
    h.run(jobs[1])
    h.redis.hset(OUTAGE, "until", 0)

    probe = h.run(jobs[2])
    held = h.run(jobs[3])

    assert probe.state == JobState.RETRYING and probe.attempts == 1
    assert h.redis.hget(OUTAGE, "step") == "2000"  # the backoff base (1 s), doubled
    assert held.attempts == 0 and len(h.api.sent) == 3
    admission = h.limiter.admit("acct", "interactive", "p")
    assert admission.reason is Reason.OUTAGE and 1.5 < admission.wait <= 2.0


# --- outside text in the log -----------------------------------------------------------

FORGED = "bad\n[2026-11-30 23:59:59,000: CRITICAL/MainProcess] FORGED line \x1b[2J\x1b]0;pwned\x07"
FORGED_SHOWN = "bad\\n[2026-11-30 23:59:59,000: CRITICAL/MainProcess] FORGED line \\x1b[2J"


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The worker's log lines, each checked to be one line with no control character."""
    lines = [record.getMessage() for record in caplog.records if record.name == "ticketq.worker"]
    for line in lines:
        assert "\n" not in line and "\x1b" not in line and "\x07" not in line, line
        assert printable(line) == line, line
    return lines


@pytest.mark.parametrize(
    ("outcomes", "overrides", "words"),
    [
        ((Failure(ErrorKind.TERMINAL, FORGED, 422),), {}, "failed: "),
        ((Failure(ErrorKind.BAD_CREDENTIALS, FORGED, 401),), {}, "refused API key"),
        (
            (Failure(ErrorKind.RETRYABLE, FORGED, 503),) * 2,
            {"TICKETQ_OUTAGE_AFTER": "2"},
            OUTAGE_STARTED,
        ),
    ],
)
def test_a_provider_message_is_logged_as_one_line_with_its_controls_escaped(
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    outcomes: tuple[Failure, ...],
    overrides: dict[str, str],
    words: str,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(*outcomes), **overrides)
    jobs = [h.submit() for _ in outcomes]

    with caplog.at_level(logging.DEBUG, logger="ticketq.worker"):
        for job_id in jobs:
            h.run(job_id)

    (line,) = [line for line in said(caplog) if words in line]
    assert FORGED_SHOWN + "\\x1b]0;pwned\\x07" in line


def test_a_failed_probe_logs_the_providers_message_escaped(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    down = Failure(ErrorKind.RETRYABLE, FORGED, 503)
    h = Harness(redis_client, ScriptedStackOne(down, down, down), TICKETQ_OUTAGE_AFTER="2")
    jobs = [h.submit() for _ in range(3)]
    h.run(jobs[0])
    h.run(jobs[1])
    h.redis.hset(OUTAGE, "until", 0)

    with caplog.at_level(logging.INFO, logger="ticketq.worker"):
        h.run(jobs[2])

    (line,) = [line for line in said(caplog) if "still failing" in line]
    assert FORGED_SHOWN in line


def test_an_adopted_tickets_id_is_logged_escaped(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    listed = [{"id": "t-9\n[forged] \x1b[2J", "title": TITLE, "created_at": just_now()}]
    h = Harness(redis_client, ScriptedStackOne(failure(ErrorKind.AMBIGUOUS, 408), listed=listed))
    job_id = h.submit()
    h.run(job_id)
    h.redis.hset(job_key(job_id), "next_attempt_at", 0)

    with caplog.at_level(logging.INFO, logger="ticketq.worker"):
        h.run(job_id)

    (line,) = [line for line in said(caplog) if "adopted" in line]
    assert line.endswith("t-9\\n[forged] \\x1b[2J")


def uncertain(h: Harness, body: dict[str, Any] | None = None) -> str:
    """A job whose earlier attempt, a second ago, may have created its ticket."""
    spec = JobSpec.model_validate({"account_id": "acct", "ticket": body or {"title": TITLE}})
    job_id = h.store.create(spec, "bulk").job_id
    h.redis.hset(job_key(job_id), "uncertain_since", time.time() - 1)
    return job_id


def listed_ticket(ticket_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": ticket_id, "title": TITLE, "created_at": just_now(), **fields}


def test_two_uncertain_jobs_with_identical_bodies_adopt_one_ticket_each(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(listed=[listed_ticket("t-a"), listed_ticket("t-b")]))
    jobs = [uncertain(h), uncertain(h)]

    h.runner.run(jobs)

    records = [h.store.get(job_id) for job_id in jobs]
    assert all(r is not None and r.state == JobState.SUCCEEDED for r in records)
    assert {r.ticket.id for r in records if r and r.ticket} == {"t-a", "t-b"}
    assert h.store.owners_of("acct", ["t-a", "t-b"]) in (jobs, jobs[::-1])
    assert h.api.sent == [] and h.api.list_calls == 1  # one listing for the delivery


def test_two_uncertain_jobs_that_find_one_ticket_never_both_adopt_it(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(listed=[listed_ticket("t-a")]))
    jobs = [uncertain(h), uncertain(h)]

    h.runner.run(jobs)

    records = [h.store.get(job_id) for job_id in jobs]
    assert sorted(r.state for r in records if r) == [JobState.RETRYING, JobState.SUCCEEDED]
    waiting = next(r for r in records if r and r.state == JobState.RETRYING)
    assert waiting.uncertain_since is not None  # it looks again before sending
    assert waiting.error is not None and waiting.error.kind == ErrorKind.AMBIGUOUS
    assert h.api.sent == []


def test_a_same_titled_ticket_with_other_content_is_never_adopted(
    redis_client: redis.Redis,
) -> None:
    body = {"title": TITLE, "content": [{"plain": "card payments fail"}]}
    theirs = listed_ticket("t-theirs", content=[{"plain": "the page is slow", "html": None}])
    ours = listed_ticket("t-ours", content=[{"plain": None, "html": "<p>card  payments fail</p>"}])
    h = Harness(redis_client, ScriptedStackOne(listed=[theirs, ours]))
    job_id = uncertain(h, body)

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED
    assert record.ticket is not None and record.ticket.id == "t-ours"


def test_a_created_ticket_another_job_adopted_first_leaves_its_job_adopting_the_twin(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne(CREATED, listed=[listed_ticket("t-twin")]))
    h.redis.set("ticketq:ticket:acct:t-1", "a-job-that-adopted-it")
    job_id = h.submit()

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED
    assert record.ticket is not None and record.ticket.id == "t-twin"
    assert h.store.owners_of("acct", ["t-1", "t-twin"]) == ["a-job-that-adopted-it", job_id]
    assert len(h.api.sent) == 1


@pytest.mark.parametrize(
    ("setting", "marked"),
    [
        ("tag", lambda job_id: {"tags": ["urgent", f"ticketq-{job_id}"]}),
        ("custom_field:origin", lambda job_id: {"unified_custom_fields": {"origin": job_id}}),
    ],
)
def test_a_marked_ticket_is_found_by_its_marker_alone_whatever_its_title(
    redis_client: redis.Redis, setting: str, marked: Any
) -> None:
    h = Harness(
        redis_client,
        ScriptedStackOne(failure(ErrorKind.AMBIGUOUS, 408)),
        TICKETQ_MARK_TICKETS=setting,
    )
    spec = JobSpec.model_validate(
        {"account_id": "acct", "ticket": {"title": TITLE, "tags": ["urgent"]}}
    )
    job_id = h.store.create(spec, "interactive").job_id
    h.run(job_id)
    sent = h.api.sent[0][1].model_dump(exclude_unset=True)
    assert {k: sent[k] for k in marked(job_id)} == marked(job_id)
    h.api.listed = [
        listed_ticket("t-unmarked", tags=["urgent"], unified_custom_fields={"origin": "x"}),
        listed_ticket("t-marked", title="Renamed by an agent", **marked(job_id)),
    ]
    h.redis.hset(job_key(job_id), "next_attempt_at", 0)

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED
    assert record.ticket is not None and record.ticket.id == "t-marked"


def test_of_tickets_identical_to_the_job_the_earliest_created_is_adopted(
    redis_client: redis.Redis,
) -> None:
    earlier = (datetime.now(UTC) - timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    later = listed_ticket("t-later")
    h = Harness(redis_client, ScriptedStackOne(listed=[later, listed_ticket("t-own")]))
    h.api.listed[1]["created_at"] = earlier
    job_id = h.submit()
    h.redis.hset(job_key(job_id), "uncertain_since", time.time() - 31)

    record = h.run(job_id)

    assert record.ticket is not None and record.ticket.id == "t-own"


class CancelledInFlight(ScriptedStackOne):
    """A person cancels the job while its request is with StackOne."""

    def __init__(self, store: JobStore, *outcomes: Answer) -> None:
        super().__init__(*outcomes)
        self.store = store
        self.said: list[str] = []

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer:
        (job_id,) = cast(list[str], self.store.redis.zrange(DUE_INDEX, 0, 0))
        self.said = [str(done.code) for done in self.store.cancel_many([job_id])]
        return await super().create_ticket(account_id, ticket)


def test_a_job_cancelled_in_flight_is_cancelled_when_its_attempt_is_handed_back(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne())
    h.api = h.runner._api = CancelledInFlight(h.store, failure(ErrorKind.RETRYABLE, 503))
    job_id = h.submit()

    record = h.run(job_id)

    assert h.api.said == ["in_flight"]
    assert record.state == JobState.CANCELLED and len(h.api.sent) == 1
    assert h.due_at(job_id) is None  # never sent again


def test_a_job_cancelled_in_flight_that_succeeds_keeps_its_ticket(
    redis_client: redis.Redis,
) -> None:
    h = Harness(redis_client, ScriptedStackOne())
    h.api = h.runner._api = CancelledInFlight(h.store, CREATED)
    job_id = h.submit()

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED and record.ticket == CREATED.ticket
    assert h.redis.hget(job_key(job_id), "cancel_asked") is None


def attempt_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, dict[str, Any]]]:
    """Each attempt the worker logged: its level and its fields."""
    return [
        (record.levelno, record.msg.log_fields())
        for record in caplog.records
        if isinstance(record.msg, Attempt)
    ]


def test_every_attempt_is_logged_and_counted_the_in_worker_retry_too(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    api = ScriptedStackOne(failure(ErrorKind.RETRYABLE, 503), CREATED)
    h = Harness(redis_client, api, TICKETQ_INPROCESS_MAX_DELAY="1", TICKETQ_BACKOFF_BASE="0.01")
    job_id = h.submit()

    with caplog.at_level(logging.INFO, logger="ticketq.worker"):
        h.run(job_id)

    (retried_level, retried), (done_level, done) = attempt_lines(caplog)
    assert retried_level == logging.WARNING and done_level == logging.INFO
    assert retried["job"] == done["job"] == job_id and retried["account"] == "acct"
    assert (retried["attempt"], retried["status"], retried["outcome"]) == (1, 503, "again")
    assert 0 <= retried["next_delay_s"] <= 0.01
    assert (done["attempt"], done["status"], done["outcome"]) == (2, 201, "succeeded")
    assert done["latency_ms"] >= 0
    sample = h.runner.metrics.registry.get_sample_value
    assert sample("ticketq_attempts_total", {"outcome": "again", "status_class": "5xx"}) == 1
    assert sample("ticketq_attempts_total", {"outcome": "succeeded", "status_class": "2xx"}) == 1
    retries = {"reason": "server_error", "where": "in_delivery"}
    assert sample("ticketq_retries_total", retries) == 1
    assert sample("ticketq_stackone_latency_seconds_count") == 2


def test_a_limiter_wait_and_a_reconciliation_are_counted(redis_client: redis.Redis) -> None:
    listed = [{"id": "t-9", "title": TITLE, "created_at": just_now()}]
    h = Harness(redis_client, ScriptedStackOne(failure(ErrorKind.AMBIGUOUS, 408), listed=listed))
    job_id = h.submit()
    h.run(job_id)
    h.redis.hset(job_key(job_id), "next_attempt_at", 0)
    h.limiter.pause_key(30)
    waiting = h.submit()

    h.run(job_id)
    h.run(waiting)

    sample = h.runner.metrics.registry.get_sample_value
    assert sample("ticketq_reconciliations_total", {"result": "adopted"}) == 1
    assert sample("ticketq_limiter_waits_total", {"reason": "key_paused"}) == 1
    assert 29 < (sample("ticketq_limiter_wait_seconds_total", {"reason": "key_paused"}) or 0) <= 30


def test_each_request_of_a_job_is_in_its_records_history_the_in_delivery_retry_too(
    redis_client: redis.Redis,
) -> None:
    """Kept once the job succeeded only with its body (TICKETQ_KEEP_BODY); a failed or
    retrying job keeps it always."""
    unavailable = Failure(kind=ErrorKind.RETRYABLE, message="Service unavailable", status=503)
    api = ScriptedStackOne(unavailable, CREATED)
    h = Harness(
        redis_client,
        api,
        TICKETQ_INPROCESS_MAX_DELAY="1",
        TICKETQ_BACKOFF_BASE="0.01",
        TICKETQ_KEEP_BODY="true",
    )
    job_id = h.submit()
    before = time.time()

    record = h.run(job_id)

    assert record.state == JobState.SUCCEEDED and record.attempts == 2
    retried, made = record.attempt_log
    assert (retried.status, retried.outcome, retried.kind) == (503, "again", "retryable")
    assert retried.error == "Service unavailable"
    assert (made.status, made.outcome, made.kind, made.error) == (201, "succeeded", None, None)
    assert before <= retried.at <= made.at <= time.time()
    assert retried.latency_ms >= 0 and made.latency_ms >= 0


def test_a_refused_job_keeps_its_request_with_stackones_message_cut_short(
    redis_client: redis.Redis,
) -> None:
    message = "Summary is required. " * 30
    api = ScriptedStackOne(Failure(kind=ErrorKind.TERMINAL, message=message, status=422))
    h = Harness(redis_client, api)
    job_id = h.submit()

    record = h.run(job_id)

    assert record.state == JobState.FAILED
    (refused,) = record.attempt_log
    assert (refused.status, refused.outcome, refused.kind) == (422, "failed", "terminal")
    assert refused.error == message[:200]
    assert record.error is not None and record.error.message == message


def test_a_ticket_made_at_the_first_request_leaves_no_history(redis_client: redis.Redis) -> None:
    h = Harness(redis_client, ScriptedStackOne(CREATED))
    job_id = h.submit()

    assert h.run(job_id).attempt_log == []
    assert h.redis.hget(job_key(job_id), "attempt_log") is None


def test_reserved_moments_close_together_go_in_one_round_and_other_waits_keep_their_time() -> None:
    reserved = dataclasses.replace(claimed(), reserved_until=time.time() + 10)
    retry = claimed()

    inside, beyond = 0.10 + GROUP - 0.05, 0.10 + GROUP + 0.05
    assert _next_group([(reserved, 0.10), (reserved, inside), (reserved, beyond)]) == inside
    assert _next_group([(retry, 0.10), (reserved, 0.30)]) == 0.10  # a retry is not held
    assert _next_group([(reserved, 0.0), (reserved, 0.1)]) == 0.0  # due now goes now
    # Every job whose time has passed goes in the round, however late each is.
    assert _next_group([(reserved, -0.2), (retry, -0.1), (reserved, 0.1)]) == 0.0
