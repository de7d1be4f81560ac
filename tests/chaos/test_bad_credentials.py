"""StackOne refuses the API key (401 on every request, as for a revoked key) for a while,
then accepts it again. The jobs are not to blame: none may fail, none may burn attempts,
the queue must not be hammered with one request per job, and an operator must be told.

The scenario runs once (a module fixture); the tests below check different promises.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ops.stack import LocalStack
from producers.client import Producer
from tests.chaos.conftest import ROWS, StackFactory
from tests.chaos.support import (
    AUTH_PAUSE,
    KEY_ACCEPTED,
    KEY_REFUSED,
    Row,
    duplicates,
    records,
    submit_titled,
    ticketq,
    tickets_by_title,
    wait_final,
    worker_logs,
)
from worker.contract import ErrorKind, JobRecord, JobState

pytestmark = pytest.mark.chaos

JOBS = 12  # more than the 8 threads, so some jobs meet the pause before sending anything
REFUSED_FOR = 3.5 * AUTH_PAUSE
FIRST_BURST = 1.0  # requests this close to the first were sent before any pause existed


@dataclass
class Observed:
    stack: LocalStack
    jobs: dict[str, str]  # job id by title
    final_while_refused: list[str]
    waiting: dict[str, JobRecord]  # as the jobs stood just before the key was accepted again
    status_json: dict[str, Any] | None  # `ticketq status JOB --json` while waiting
    arrivals: list[float]  # when requests arrived while the key was refused (Unix time)
    refused_until: float
    log_while_refused: str
    final: dict[str, JobRecord]
    tickets: dict[str, list[str]]
    created: dict[str, int]
    log: str

    @property
    def later_probes(self) -> list[float]:
        """Requests after the first burst, when every worker should know of the pause."""
        return [t for t in self.arrivals if t > self.arrivals[0] + FIRST_BURST]

    @property
    def pauses(self) -> float:
        """How many pause windows passed after the first burst."""
        return (self.refused_until - self.arrivals[0] - FIRST_BURST) / AUTH_PAUSE


def _status_while_waiting(stack: LocalStack, producer: Producer, jobs: list[str]) -> Any:
    """The CLI's view of a job caught waiting (a job may be between states: ask again)."""
    for _ in range(5):
        waiting = [
            job_id for job_id, r in records(producer, jobs).items() if r.state == JobState.RETRYING
        ]
        if waiting:
            shown = ticketq(stack, "status", waiting[0], "--json")
            assert shown.returncode == 0, shown.stderr
            status = json.loads(shown.stdout)
            if status["state"] == "retrying":
                return status
        time.sleep(0.3)
    return None


@pytest.fixture(scope="module")
def observed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    factory = StackFactory(tmp_path_factory.mktemp("bad-credentials"))
    try:
        stack = factory(workers=2, concurrency=4, latency_ms=50)
        producer, fake = Producer(stack.settings()), factory.fake_api(stack)
        titles = [f"revoked-{uuid.uuid4().hex[:8]}-{i:02d}" for i in range(JOBS)]
        fake.configure(auth_failure=401)
        started = time.monotonic()
        jobs = submit_titled(producer, titles)
        job_ids = list(jobs.values())

        final_while_refused: set[str] = set()
        status_json = None
        while time.monotonic() - started < REFUSED_FOR:
            now = records(producer, job_ids)
            final_while_refused |= {job_id for job_id, r in now.items() if r.state.is_final}
            if status_json is None and time.monotonic() - started > AUTH_PAUSE:
                status_json = _status_while_waiting(stack, producer, job_ids)
            time.sleep(0.2)
        waiting = records(producer, job_ids)
        stats = fake.stats()
        arrivals = sorted(t for title in titles for t in stats["requests_by_title"].get(title, []))
        log_while_refused = worker_logs(stack)
        refused_until = time.time()
        fake.configure(auth_failure=None)

        final = wait_final(producer, job_ids, timeout=AUTH_PAUSE + 20)
        seen = Observed(
            stack=stack,
            jobs=jobs,
            final_while_refused=sorted(final_while_refused),
            waiting=waiting,
            status_json=status_json,
            arrivals=arrivals,
            refused_until=refused_until,
            log_while_refused=log_while_refused,
            final=final,
            tickets=tickets_by_title(stack),
            created=fake.stats()["created_by_title"],
            log=worker_logs(stack),
        )
        request.config.stash[ROWS].append(
            Row.of(
                "bad credentials",
                f"401 on every request for {REFUSED_FOR:.1f}s (pause {AUTH_PAUSE:.0f}s), then OK",
                final,
                tickets=sum(seen.created.get(t, 0) for t in titles),
                duplicates=duplicates(seen.created, titles),
                adopted_uncertain=(
                    f"{len(arrivals)} refused requests: "
                    f"{len(arrivals) - len(seen.later_probes)} at first, "
                    f"{len(seen.later_probes)} over {seen.pauses:.1f} pauses"
                ),
                seconds=time.monotonic() - started,
                nodeid=request.node.nodeid,  # the module: both tests below
            )
        )
        yield seen
    finally:
        factory.stop_all()


def test_with_a_refused_key_jobs_wait_unfailed_and_then_each_makes_one_ticket(
    observed: Observed,
) -> None:
    run_dir = observed.stack.config.run_dir
    assert observed.arrivals, "the key was never tried"
    assert observed.final_while_refused == [], f"jobs ended while the key was refused; {run_dir}"
    for record in observed.waiting.values():
        assert not record.state.is_final
        assert record.error is not None, record
        assert (record.error.kind, record.error.status) == (ErrorKind.BAD_CREDENTIALS, 401)
        assert record.attempts == 0, record  # the key's fault is not counted against the job
    assert JobState.RETRYING in {r.state for r in observed.waiting.values()}

    status = observed.status_json
    assert status is not None, "`ticketq status --json` never showed a waiting job"
    assert status["error"]["kind"] == "bad_credentials"
    assert status["next_attempt_at"] is not None and status["finished_at"] is None

    # Said loudly, and once per pause rather than once per job.
    assert KEY_REFUSED in observed.log_while_refused
    assert observed.log_while_refused.count(KEY_REFUSED) <= math.ceil(observed.pauses) + 2
    assert observed.log_while_refused.count("jobs wait, they are not failed") == 1
    assert observed.stack.config.api_key not in observed.log

    assert {r.state for r in observed.final.values()} == {JobState.SUCCEEDED}, run_dir
    assert {t: observed.created.get(t, 0) for t in observed.jobs} == dict.fromkeys(observed.jobs, 1)
    for title, job_id in observed.jobs.items():
        record = observed.final[job_id]
        assert record.ticket is not None and observed.tickets[title] == [record.ticket.id]
        assert record.attempts == 1, record
    assert KEY_ACCEPTED in observed.log


def test_a_refused_key_is_probed_about_once_per_pause_not_once_per_job(
    observed: Observed,
) -> None:
    burst = len(observed.arrivals) - len(observed.later_probes)
    if burst > 8:  # one per worker thread at most, before any of them learnt of the refusal
        pytest.fail(f"{burst} requests in the first burst, from 8 worker threads")
    allowed = math.ceil(observed.pauses) + 1
    assert len(observed.later_probes) <= allowed, (
        f"{len(observed.later_probes)} requests over {observed.pauses:.1f} pauses of "
        f"{AUTH_PAUSE:.0f}s after the first burst (at most {allowed} expected): "
        f"{[round(t - observed.arrivals[0], 2) for t in observed.arrivals]}"
    )
