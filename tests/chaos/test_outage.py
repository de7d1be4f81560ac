"""StackOne fails every request (500 on every create) for a while, then works again: a
10-minute outage, shortened by settings (backoff capped at 3 s instead of 600 s, the retry
budget two minutes instead of 24 hours). Under the old count-based policy (8 attempts,
backoff from 0.2 s) every job would have been failed ``exhausted`` within seconds.

The jobs are not to blame: none may fail, each must make exactly one ticket once StackOne
returns, and the workers must back off together: one probe at a time while StackOne
fails, not one request per job per backoff step. The scenario runs once (a module
fixture); the tests below check different promises.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ops.stack import LocalStack
from producers.client import Producer
from tests.chaos.conftest import ROWS, StackFactory
from tests.chaos.support import (
    Row,
    duplicates,
    records,
    submit_titled,
    tickets_by_title,
    wait_final,
    worker_logs,
)
from worker.contract import ErrorKind, JobRecord, JobState
from worker.limits.outage import OUTAGE_ENDED, OUTAGE_STARTED

pytestmark = pytest.mark.chaos

JOBS = 20  # more than the 8 threads: most jobs meet the outage before sending anything
OUTAGE_FOR = 25.0  # seconds of 500s: "10 minutes", shortened
BACKOFF_MAX = 3.0  # the longest pause between two probes (600 s by default)
FIRST_BURST = 1.0  # requests this close to the first were sent before the outage was known
OUTAGE_ENV = {
    "TICKETQ_RETRY_FOR": "120",  # "24 hours", shortened: well beyond the outage
    "TICKETQ_BACKOFF_MAX": str(BACKOFF_MAX),
    "TICKETQ_OUTAGE_AFTER": "5",
}


@dataclass
class Observed:
    stack: LocalStack
    jobs: dict[str, str]  # job id by title
    final_during_outage: list[str]
    waiting: dict[str, JobRecord]  # as the jobs stood just before StackOne came back
    arrivals: list[float]  # when requests arrived during the outage (Unix time)
    outage_ended_at: float
    log_during_outage: str
    final: dict[str, JobRecord]
    recovered_in: float  # seconds from StackOne's return until every job was final
    tickets: dict[str, list[str]]
    created: dict[str, int]
    requested: dict[str, int]  # requests per title, over the whole scenario
    log: str

    @property
    def later_probes(self) -> list[float]:
        """Requests after the first burst, when every worker should know of the outage."""
        return [t for t in self.arrivals if t > self.arrivals[0] + FIRST_BURST]


@pytest.fixture(scope="module")
def observed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    factory = StackFactory(tmp_path_factory.mktemp("outage"))
    try:
        stack = factory(workers=2, concurrency=4, latency_ms=20, env=OUTAGE_ENV)
        producer, fake = Producer(stack.settings()), factory.fake_api(stack)
        titles = [f"outage-{uuid.uuid4().hex[:8]}-{i:02d}" for i in range(JOBS)]
        fake.configure(error_rate=1.0)
        started = time.monotonic()
        jobs = submit_titled(producer, titles)
        job_ids = list(jobs.values())

        final_during_outage: set[str] = set()
        while time.monotonic() - started < OUTAGE_FOR:
            now = records(producer, job_ids)
            final_during_outage |= {job_id for job_id, r in now.items() if r.state.is_final}
            time.sleep(0.25)
        waiting = records(producer, job_ids)
        stats = fake.stats()
        arrivals = sorted(t for title in titles for t in stats["requests_by_title"].get(title, []))
        log_during_outage = worker_logs(stack)
        outage_ended_at = time.time()
        fake.configure(error_rate=0.0)
        back = time.monotonic()

        final = wait_final(producer, job_ids, timeout=BACKOFF_MAX * 4 + 20)
        recovered_in = time.monotonic() - back
        stats = fake.stats()
        seen = Observed(
            stack=stack,
            jobs=jobs,
            final_during_outage=sorted(final_during_outage),
            waiting=waiting,
            arrivals=arrivals,
            outage_ended_at=outage_ended_at,
            log_during_outage=log_during_outage,
            final=final,
            recovered_in=recovered_in,
            tickets=tickets_by_title(stack),
            created=stats["created_by_title"],
            requested={t: len(stats["requests_by_title"].get(t, [])) for t in titles},
            log=worker_logs(stack),
        )
        request.config.stash[ROWS].append(
            Row.of(
                "StackOne outage",
                f"500 on every create for {OUTAGE_FOR:.0f}s (backoff cap {BACKOFF_MAX:.0f}s), "
                "then OK",
                final,
                tickets=sum(seen.created.get(t, 0) for t in titles),
                duplicates=duplicates(seen.created, titles),
                adopted_uncertain=(
                    f"{len(arrivals)} requests during the outage: "
                    f"{len(arrivals) - len(seen.later_probes)} at first, "
                    f"{len(seen.later_probes)} probes"
                ),
                seconds=time.monotonic() - started,
                nodeid=request.node.nodeid,  # the module: every test below
            )
        )
        yield seen
    finally:
        factory.stop_all()


def test_an_outage_fails_no_job_and_each_makes_one_ticket_once_stackone_returns(
    observed: Observed,
) -> None:
    run_dir = observed.stack.config.run_dir
    assert observed.arrivals, "StackOne was never tried during the outage"
    failed = {
        job_id: (r.error.kind, r.error.message) if r.error else None
        for job_id, r in observed.final.items()
        if r.state == JobState.FAILED
    }
    assert observed.final_during_outage == [], f"jobs ended during the outage: {failed}; {run_dir}"
    for record in observed.waiting.values():
        assert record.state in (JobState.RETRYING, JobState.QUEUED, JobState.RUNNING), record
        if record.state == JobState.RETRYING:
            assert record.error is not None and record.error.kind == ErrorKind.RETRYABLE, record

    assert {r.state for r in observed.final.values()} == {JobState.SUCCEEDED}, (failed, run_dir)
    assert {t: observed.created.get(t, 0) for t in observed.jobs} == dict.fromkeys(observed.jobs, 1)
    for title, job_id in observed.jobs.items():
        record = observed.final[job_id]
        assert record.ticket is not None and observed.tickets[title] == [record.ticket.id]
        # Every request the job made is one attempt; none was made without being counted.
        assert record.attempts == observed.requested[title], (title, record)
    # Once StackOne works again, the held jobs go out within about one probe pause.
    assert observed.recovered_in < BACKOFF_MAX * 3 + 10, observed.recovered_in


def test_during_an_outage_workers_send_about_one_probe_per_pause_not_one_request_per_job(
    observed: Observed,
) -> None:
    burst = len(observed.arrivals) - len(observed.later_probes)
    if burst > JOBS:  # at most one each, before the workers learnt of the outage
        pytest.fail(f"{burst} requests in the first burst, for {JOBS} jobs")
    # Probes double their pause from the backoff base up to BACKOFF_MAX: a few quick ones,
    # then one every BACKOFF_MAX seconds (a probe's own answer takes a little too).
    ramp = math.ceil(math.log2(BACKOFF_MAX / 0.2)) + 2
    allowed = math.ceil(OUTAGE_FOR / BACKOFF_MAX) + ramp
    spread = [round(t - observed.arrivals[0], 2) for t in observed.arrivals]
    assert len(observed.later_probes) <= allowed, (
        f"{len(observed.later_probes)} requests after the first burst during a "
        f"{OUTAGE_FOR:.0f}s outage (at most {allowed} expected): {spread}"
    )
    # Far below what each job retrying on its own would send (attempts x jobs).
    assert len(observed.arrivals) < JOBS * 2, spread


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    observed: Observed,
) -> None:
    assert observed.log_during_outage.count(OUTAGE_STARTED) == 1, observed.stack.config.run_dir
    assert OUTAGE_ENDED not in observed.log_during_outage
    assert observed.log.count(OUTAGE_ENDED) == 1
    assert observed.stack.config.api_key not in observed.log
