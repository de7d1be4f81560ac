"""The fleet's numbers with a real worker: jobs submitted (some failing at StackOne's
stand-in) show in the snapshot's counts, throughput and rate limit use, the worker in its
list, and ``ticketq stats`` prints them."""

from __future__ import annotations

import json
import time

import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack
from producers.client import Producer
from tests.integration.support import ticketq
from worker.contract import JobState
from worker.limits.keyhealth import fingerprint
from worker.store.stats import Snapshot, Stats

pytestmark = pytest.mark.integration
ACCOUNT = "acct-stats"


def test_a_snapshot_counts_a_batchs_successes_failures_requests_and_the_worker(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    settings = stack.settings()
    stats = Stats(producer.store.redis, settings)
    titles = [f"{title} #{n}" for n in range(12)]
    for failing in titles[:3]:
        fake_api.script(failing, {"status": 422, "message": "Summary is required"})
    before = stats.snapshot(time.time())

    batch = producer.submit_many(ACCOUNT, [{"title": t} for t in titles])
    queued = stats.snapshot(time.time())
    counts = batch.wait(timeout=60)
    after = stats.snapshot(time.time())

    assert counts == {JobState.SUCCEEDED: 9, JobState.FAILED: 3}
    assert queued.jobs["bulk"]["queued"] + queued.jobs["bulk"]["running"] >= 1
    assert gained(before, after, "succeeded") == 9
    assert gained(before, after, "failed") == 3  # dead letters kept
    assert after.jobs["bulk"]["queued"] == after.jobs["bulk"]["running"] == 0
    finished = sum(m.succeeded for m in after.throughput) - sum(
        m.succeeded for m in before.throughput
    )
    assert finished == 9
    sent = sum(m.attempts for m in after.throughput) - sum(m.attempts for m in before.throughput)
    assert sent == 12  # one request each: a 422 is not tried again
    assert after.limit.last_minute >= 12
    assert after.limit.per_minute == settings.parsed_rate_limit.requests

    assert settings.stackone_api_key is not None
    key = fingerprint(producer.store.redis, settings.stackone_api_key)
    [worker] = after.workers
    assert worker.name.startswith("w0-") and worker.concurrency == 8
    assert worker.key_fingerprint == key
    assert [(k.fingerprint, k.refused, k.outage) for k in after.keys] == [(key, False, False)]


def test_ticketq_stats_prints_the_snapshot_as_tables_and_as_json(stack: LocalStack) -> None:
    as_json = ticketq(stack, "stats", "--json")
    shown = ticketq(stack, "stats")

    assert as_json.returncode == 0, as_json.stderr
    snapshot = Snapshot.model_validate(json.loads(as_json.stdout))
    assert len(snapshot.throughput) == 60 and len(snapshot.workers) == 1
    assert shown.returncode == 0, shown.stderr
    for words in ("Jobs", "Waiting:", "Due index:", "Rate limit:", "Last hour", "Workers alive: 1"):
        assert words in shown.stdout
    assert snapshot.workers[0].name in shown.stdout


def gained(before: Snapshot, after: Snapshot, state: str) -> int:
    return after.jobs["bulk"][state] - before.jobs["bulk"][state]
