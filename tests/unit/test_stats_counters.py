"""The fleet's counters (lua/lib/moves.lua) against a recount of the job records, after
random sequences of real store operations on a real (private) Redis."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast
from unittest.mock import patch

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.contract import ErrorKind, JobError, JobSpec, TicketIds
from worker.store.jobs import Claim, JobStore, Lane, failed, retrying, spec_from_claim, succeeded
from worker.store.keys import COUNTS, JOB_PREFIX, MINUTE_PREFIX, queued_key
from worker.store.scripts import run_each
from worker.store.stats import recount

LANES: tuple[Lane, ...] = ("interactive", "bulk")
# What the counters hash keeps per lane (succeeded and cancelled are counted per minute).
_COUNTED = ("queued", "running", "retrying", "failed", "held_back")
ERROR = JobError(kind=ErrorKind.RETRYABLE, message="503")


def spec(n: int, *, ref: bool, idem: bool, batch: str | None = None) -> JobSpec:
    """A job; refs and idempotency keys come from a small set, so they collide."""
    fields: dict[str, Any] = {"account_id": "acct", "ticket": {"title": f"t{n}"}}
    if ref:
        fields["ref"] = f"ref-{n % 3}"
    if idem:
        fields["idempotency_key"] = f"key-{n % 4}"
    if batch:
        fields["batch_id"] = batch
    return JobSpec.model_validate(fields)


class Fleet:
    """The store under test, the jobs it made and the claims deliveries hold."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.store = JobStore(client, succeeded_ttl=3600, lease_seconds=60, requeue_after=0.0)
        # Claims through this store expire at once: the next claim takes the job over (a
        # worker lost mid-delivery), and the third loss makes the job poison.
        self.lost = JobStore(client, succeeded_ttl=3600, lease_seconds=0, max_lost_attempts=3)
        self.job_ids: list[str] = []
        self.claims: list[tuple[Claim, JobSpec]] = []

    def pick(self, n: int) -> str:
        return self.job_ids[n % len(self.job_ids)]

    def create(self, lane: Lane, n: int, count: int, ref: bool, idem: bool) -> None:
        specs = [spec(n + i, ref=ref, idem=idem, batch=f"b{n % 2}") for i in range(count)]
        self.job_ids += [stored.job_id for stored in self.store.create_many(specs, lane)]

    def create_half_failing(self, lane: Lane, n: int) -> None:
        """create_many whose second call Redis refuses (as at maxmemory): the first call's
        jobs are taken back by uncreate.lua."""

        def second_refused(client: redis.Redis, calls: Sequence[Any]) -> list[Any]:
            return [*run_each(client, calls[:1]), redis.ResponseError("OOM")]

        specs = [spec(n, ref=True, idem=True, batch="x1"), spec(n + 1, ref=False, idem=False)]
        with (
            patch("worker.store.jobs.run_each", second_refused),
            pytest.raises(redis.ResponseError),
        ):
            self.store.create_many(specs, lane)

    def claim(self, n: int, lose: bool) -> None:
        store = self.lost if lose else self.store
        job_id = self.pick(n)
        claim = store.claim(job_id)
        if isinstance(claim, Claim):
            self.claims.append((claim, spec_from_claim(claim)))

    def record(self, n: int, outcome: str, held: bool, past: bool) -> None:
        if not self.claims:
            return
        claim, job = self.claims.pop(n % len(self.claims))
        due = time.time() + (-1 if past else 3600)
        change = {
            "succeeded": lambda: succeeded(claim, job, TicketIds(id=f"t-{claim.token}"), 1),
            "failed": lambda: failed(claim, job, ERROR, 1),
            "retrying": lambda: retrying(
                claim, job, ERROR, due_at=due, attempts=0 if held else 1, held_back=held
            ),
        }[outcome]()
        self.store.apply([change])

    def due(self) -> None:
        self.store.take_due(50)

    def cancel(self, n: int) -> None:
        self.store.cancel_many([self.pick(n)])

    def lose(self, n: int) -> None:
        """A job whose worker is lost in every delivery: the third takeover makes it poison."""
        for _ in range(4):
            self.claim(n, lose=True)

    def replay(self, n: int) -> None:
        self.store.replay(self.dead_letter(n))

    def purge(self, n: int) -> None:
        self.store.purge(self.dead_letter(n))

    def dead_letter(self, n: int) -> str:
        """A failed job, as people pick them (any job if none failed)."""
        dead = self.store.failed_ids(100)
        return dead[n % len(dead)] if dead else self.pick(n)

    def recount(self) -> tuple[Counter[str], Counter[str]]:
        """From the records alone: jobs per "<lane>:<state>" (held_back too), and the
        queued ids each lane's sorted set should hold."""
        counts: Counter[str] = Counter()
        queued: Counter[str] = Counter()
        for key in cast(list[str], list(self.redis.scan_iter(f"{JOB_PREFIX}*"))):
            state, lane, held = cast(list[str], self.redis.hmget(key, "state", "lane", "held_back"))
            lane = lane or "interactive"  # a record that does not say is interactive
            counts[f"{lane}:{state}"] += 1
            if held:
                counts[f"{lane}:held_back"] += 1
            if state == "queued":
                queued[f"{lane}:{key.removeprefix(JOB_PREFIX)}"] += 1
        return counts, queued


Op = tuple[Any, ...]
ops = st.one_of(
    st.tuples(
        st.just("create"),
        st.sampled_from(LANES),
        st.integers(0, 50),
        st.integers(1, 3),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("create_half_failing"), st.sampled_from(LANES), st.integers(0, 50)),
    st.tuples(st.just("claim"), st.integers(0, 50), st.booleans()),
    st.tuples(
        st.just("record"),
        st.integers(0, 50),
        st.sampled_from(["succeeded", "failed", "retrying"]),
        st.booleans(),
        st.booleans(),
    ),
    st.tuples(st.just("lose"), st.integers(0, 50)),
    st.tuples(st.just("due")),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("replay"), st.integers(0, 50)),
    st.tuples(st.just("purge"), st.integers(0, 50)),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(ops, min_size=10, max_size=60))
def test_the_counters_equal_a_recount_of_the_records_after_any_sequence_of_moves(
    redis_client: redis.Redis, steps: list[Op]
) -> None:
    redis_client.flushdb()
    fleet = Fleet(redis_client)
    for name, *args in steps:
        if name not in ("create", "create_half_failing", "due") and not fleet.job_ids:
            continue
        getattr(fleet, name)(*args)

    counts, queued = fleet.recount()
    kept = {f"{lane}:{state}" for lane in LANES for state in _COUNTED}
    expected = {field: n for field, n in counts.items() if field in kept and n}
    raw = cast(dict[str, str], redis_client.hgetall(COUNTS))
    stored = {field: int(n) for field, n in raw.items() if int(n)}
    assert stored == expected
    in_sets = Counter(
        f"{lane}:{job_id}"
        for lane in LANES
        for job_id in cast(list[str], redis_client.zrange(queued_key(lane), 0, -1))
    )
    assert in_sets == queued
    # The repair path finds the same from the records.
    assert {field: n for field, n in recount(redis_client).items() if n} == expected
    finished = Counter[str]()
    for key in redis_client.scan_iter(f"{MINUTE_PREFIX}*"):
        bucket = cast(dict[str, str], redis_client.hgetall(key))
        finished.update({field: int(n) for field, n in bucket.items()})
    for lane in LANES:  # succeeded and cancelled jobs never move again (nor expire here)
        for state in ("succeeded", "cancelled"):
            assert finished[f"{lane}:{state}"] == counts[f"{lane}:{state}"]
