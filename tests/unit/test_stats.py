"""The fleet's numbers (worker/store/stats.py) read from a real (private) Redis after real
store operations, the heartbeats, and the pure parts of ``ticketq stats``."""

from __future__ import annotations

import time
from typing import cast

import pytest
import redis

from ops.cli.stats import age, sparkline
from worker.contract import ErrorKind, JobError, JobSpec, TicketIds
from worker.settings import Settings
from worker.store.jobs import Claim, JobStore, Lane, retrying
from worker.store.keys import COUNTS, ApiKeyNames, queued_key
from worker.store.limits import Ask, LimitStore, Round
from worker.store.stats import Stats, recount
from worker.store.workers import WORKER_TIMEOUT, Heartbeat, WorkerInfo

ERROR = JobError(kind=ErrorKind.RETRYABLE, message="503")
JOB = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": "t"}})


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, succeeded_ttl=3600, lease_seconds=60)


@pytest.fixture
def stats(redis_client: redis.Redis) -> Stats:
    return Stats(redis_client, Settings(rate_limit="600/min"))


def claimed(store: JobStore, lane: Lane = "bulk") -> Claim:
    claim = store.claim(store.create(JOB, lane).job_id)
    assert isinstance(claim, Claim)
    return claim


def test_jobs_are_counted_per_lane_and_state_and_finished_ones_for_the_last_hour(
    store: JobStore, stats: Stats
) -> None:
    store.create(JOB, "interactive")
    claimed(store)  # running
    store.succeed(claimed(store), JOB, TicketIds(id="t-1"))
    store.fail(claimed(store, "interactive"), JOB, ERROR)
    store.cancel_many([store.create(JOB, "bulk").job_id])

    now = time.time()
    jobs = stats.snapshot(now).jobs
    later = stats.snapshot(now + 3660).jobs

    assert jobs["interactive"] == dict.fromkeys(jobs["interactive"], 0) | {
        "queued": 1,
        "failed": 1,
    }
    assert jobs["bulk"] == dict.fromkeys(jobs["bulk"], 0) | {
        "running": 1,
        "succeeded": 1,
        "cancelled": 1,
    }
    # An hour later the finished ones are out of the window; the live and the kept are not.
    assert later["bulk"]["succeeded"] == later["bulk"]["cancelled"] == 0
    assert later["bulk"]["running"] == later["interactive"]["failed"] == 1


def test_the_throughput_is_sixty_minutes_oldest_first_with_what_finished_in_each(
    store: JobStore, stats: Stats
) -> None:
    store.succeed(claimed(store), JOB, TicketIds(id="t-1"))
    store.fail(claimed(store), JOB, ERROR)
    now = time.time()

    minutes = stats.snapshot(now).throughput
    ten_later = stats.snapshot(now + 600).throughput

    assert len(minutes) == 60
    assert [m.at.timestamp() for m in minutes] == [
        (int(now // 60) - 59 + i) * 60 for i in range(60)
    ]
    assert (minutes[-1].succeeded, minutes[-1].failed) == (1, 1)
    assert sum(m.succeeded + m.failed for m in minutes[:-1]) == 0
    assert (ten_later[-11].succeeded, ten_later[-11].failed) == (1, 1)


def test_requests_admitted_count_as_sent_in_the_last_minute_and_its_throughput(
    redis_client: redis.Redis, stats: Stats
) -> None:
    limiter = LimitStore(redis_client, ApiKeyNames.of("k"))
    limits = Round(1.0, 0, 60, 30)
    asks = [
        Ask("acct", 10_000_000, f"h{i}", "interactive", f"j{i}", 1.0, None, None) for i in range(7)
    ]
    limiter.admit(limits, asks)
    now = time.time()

    snapshot = stats.snapshot(now)

    assert snapshot.limit.last_minute == 7
    assert snapshot.limit.per_minute == 600
    assert snapshot.limit.use == pytest.approx(7 / 600)
    assert snapshot.throughput[-1].attempts == 7
    assert stats.snapshot(now + 61).limit.last_minute == 0


def test_queue_depth_and_the_oldest_waiting_job_follow_the_queued_jobs(
    store: JobStore, stats: Stats
) -> None:
    assert stats.snapshot(time.time()).oldest_waiting_seconds is None
    first = store.create(JOB, "bulk").job_id
    time.sleep(0.05)
    store.create(JOB, "interactive")
    store.create(JOB, "bulk")
    now = time.time()

    snapshot = stats.snapshot(now + 100)
    assert snapshot.waiting == {"interactive": 1, "bulk": 2}
    assert snapshot.oldest_waiting_seconds == pytest.approx(100.05, abs=0.04)

    store.claim(first)
    assert stats.snapshot(now + 100).oldest_waiting_seconds == pytest.approx(100.0, abs=0.04)


def test_the_due_index_tells_held_back_jobs_from_retries_and_counts_the_overdue(
    store: JobStore, stats: Stats
) -> None:
    now = time.time()
    held = claimed(store)
    store.apply([retrying(held, JOB, ERROR, due_at=now + 300, attempts=0, held_back=True)])
    store.retry_later(claimed(store), JOB, ERROR, due_at=now - 1)
    store.retry_later(claimed(store), JOB, ERROR, due_at=now + 300)

    due = stats.snapshot(now).due
    assert (due.retrying, due.held_back, due.overdue) == (2, 1, 1)

    store.take_due()  # the overdue retry goes back to the queue
    assert stats.snapshot(now).due.overdue == 0
    assert stats.snapshot(now).jobs["bulk"]["queued"] == 1


def test_a_worker_is_alive_from_its_heartbeat_until_it_stops_or_falls_silent(
    redis_client: redis.Redis, stats: Stats
) -> None:
    me = WorkerInfo("celery@a", 11, 16, 1_000.0, "f" * 12)
    heartbeat = Heartbeat(redis_client, me, interval=1.0)
    now = time.time()
    heartbeat.beat(now)
    Heartbeat(redis_client, WorkerInfo("celery@b", 12, 4, 2_000.0, "f" * 12), 1.0).beat(now)

    workers = stats.snapshot(now).workers
    assert [(w.name, w.pid, w.concurrency) for w in workers] == [
        ("celery@a", 11, 16),
        ("celery@b", 12, 4),
    ]
    assert workers[0].started_at.timestamp() == 1_000.0
    assert workers[0].seen_at.timestamp() == pytest.approx(now)
    assert stats.snapshot(now + WORKER_TIMEOUT + 1).workers == []  # died: fell silent

    heartbeat.stop()
    heartbeat.beat(now)  # a beat after the stop does not bring it back
    assert [w.name for w in stats.snapshot(now).workers] == ["celery@b"]


def test_a_silent_worker_is_forgotten_by_the_next_heartbeat_of_another(
    redis_client: redis.Redis,
) -> None:
    now = time.time()
    Heartbeat(redis_client, WorkerInfo("celery@gone", 1, 1, 0.0, "k"), 1.0).beat(now - 60)
    Heartbeat(redis_client, WorkerInfo("celery@here", 2, 1, 0.0, "k"), 1.0).beat(now)

    assert list(cast(dict[str, str], redis_client.hgetall("ticketq:workers"))) == ["celery@here/2"]


def test_keys_are_the_ones_live_workers_name_with_their_refusal_and_pauses(
    redis_client: redis.Redis, stats: Stats
) -> None:
    now = time.time()
    refused, fine = LimitStore(redis_client, ApiKeyNames.of("aaa")), "bbb"
    refused.note_refusal(401, "invalid key", now - 5)
    refused.pause_refused_key(60)
    for name, key in (("celery@a", "aaa"), ("celery@b", fine)):
        Heartbeat(redis_client, WorkerInfo(name, 1, 1, now, key), 1.0).beat(now)
    LimitStore(redis_client, ApiKeyNames.of("ccc")).note_refusal(403, "nobody's", now)

    keys = stats.snapshot(now).keys

    assert [key.fingerprint for key in keys] == ["aaa", "bbb"]
    assert keys[0].refused and keys[0].refusal == "401: invalid key"
    assert keys[0].refused_since is not None
    assert keys[0].refused_since.timestamp() == pytest.approx(now - 5)
    assert keys[0].paused_until is not None
    assert keys[0].paused_until.timestamp() == pytest.approx(now + 60, abs=2)
    assert not keys[1].refused and keys[1].paused_until is None and not keys[1].outage


def test_a_snapshot_costs_the_same_commands_for_ten_jobs_as_for_a_thousand(
    redis_client: redis.Redis, store: JobStore, stats: Stats
) -> None:
    def commands() -> int:
        return int(cast(dict[str, int], redis_client.info("stats"))["total_commands_processed"])

    def cost() -> int:
        before = commands()
        stats.snapshot(time.time())
        return commands() - before

    Heartbeat(redis_client, WorkerInfo("celery@a", 1, 1, 0.0, "k"), 1.0).beat(time.time())
    store.create_many([JOB] * 10, "bulk")
    few = cost()
    store.create_many([JOB] * 1000, "bulk")

    assert cost() == few


def test_a_recount_rebuilds_lost_counters_and_queued_sets_from_the_records(
    redis_client: redis.Redis, store: JobStore, stats: Stats
) -> None:
    store.create_many([JOB] * 3, "bulk")
    store.fail(claimed(store, "interactive"), JOB, ERROR)
    store.succeed(claimed(store), JOB, TicketIds(id="t-1"))
    now = time.time()
    before = stats.snapshot(now)
    redis_client.delete(COUNTS, queued_key("bulk"))  # as on a Redis older than the counters
    assert stats.snapshot(now).jobs["bulk"]["queued"] == 0

    counts = recount(redis_client, page=2)

    assert counts == {"bulk:queued": 3, "interactive:failed": 1}
    after = stats.snapshot(now)
    assert after.jobs == before.jobs
    assert after.oldest_waiting_seconds == pytest.approx(before.oldest_waiting_seconds)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (-3, "0 s"),
        (0.4, "0 s"),
        (45, "45 s"),
        (192, "3 m 12 s"),
        (7500, "2 h 5 m"),
        (277_200, "3 d 5 h"),
    ],
)
def test_ages_are_said_as_people_say_them(seconds: float, said: str) -> None:
    assert age(seconds) == said


def test_a_sparkline_has_a_character_per_minute_scaled_to_the_busiest() -> None:
    assert sparkline([0, 2, 8, 14]) == "▁▂▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""
