"""How many bytes of Redis one job costs, queued and finished, measured on a private Redis.

Run ``python -m ops.footprint``. The figure is the growth of Redis's ``used_memory`` over
many jobs divided by their number, so every key a job adds (record, ref and idempotency
indexes, due entry, ticket owner) is counted, not just the hash.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import redis

from ops.redis_server import RedisServer
from worker.contract import AttemptEntry, ErrorKind, JobError, JobSpec, Outcome, TicketIds
from worker.store.jobs import Claim, JobStore, retrying, spec_from_claim, succeeded

SAMPLE_TICKET = {
    "title": "Checkout latency above 2 s in eu-west-1",
    "content": [{"plain": "p99 checkout latency has been above 2 s for 10 minutes. " * 3}],
    "priority": {"value": "high"},
    "tags": ["alert", "checkout"],
}


@dataclass(frozen=True)
class Footprint:
    queued: float  # bytes per job waiting in the queue (record, indexes; message excluded)
    succeeded: float  # bytes per finished job kept for the retention period
    retried: float  # the same, for a job that succeeded at its second request (its history)


UNAVAILABLE = "Service Unavailable: the provider did not answer in time, try again later"


def measure(jobs: int = 2_000) -> Footprint:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = JobStore(client, succeeded_ttl=30 * 24 * 3600, lease_seconds=90)
        before = _used(client)
        ids = _queued(store, jobs, "alert")
        queued = _used(client)
        for n, job_id in enumerate(ids):
            _succeed(store, _claim(store, job_id), n)
        finished = _used(client)
        for n, job_id in enumerate(_queued(store, jobs, "retried")):
            _retry(store, _claim(store, job_id))
            _succeed(store, _claim(store, job_id), n)
        retried = _used(client)
        return Footprint(
            (queued - before) / jobs, (finished - before) / jobs, (retried - finished) / jobs
        )


def _queued(store: JobStore, jobs: int, prefix: str) -> list[str]:
    ids = []
    for n in range(jobs):
        spec = JobSpec.model_validate(
            {
                "account_id": "acct-123",
                "ticket": SAMPLE_TICKET,
                "ref": f"{prefix}-{n:08d}",
                "idempotency_key": f"{prefix}-{n:08d}",
            }
        )
        ids.append(store.create(spec, "interactive").job_id)
    store.confirm_sent(ids)
    return ids


def _claim(store: JobStore, job_id: str) -> Claim:
    claim = store.claim(job_id)
    assert isinstance(claim, Claim)
    return claim


def _succeed(store: JobStore, claim: Claim, n: int) -> None:
    """Recorded as a worker records it: with the request that made the ticket."""
    ticket = TicketIds(id=f"{n:032x}", remote_id=f"PROJ-{n}")
    made = AttemptEntry(at=time.time(), status=201, latency_ms=231.4, outcome=Outcome.SUCCEEDED)
    store.apply([replace(succeeded(claim, spec_from_claim(claim), ticket, 1), tried=(made,))])


def _retry(store: JobStore, claim: Claim) -> None:
    """A 503 first, due again at once."""
    error = JobError(kind=ErrorKind.RETRYABLE, message=UNAVAILABLE, status=503)
    entry = AttemptEntry(
        at=time.time(),
        status=503,
        latency_ms=1042.7,
        outcome=Outcome.RETRYING,
        kind=ErrorKind.RETRYABLE,
        error=UNAVAILABLE,
    )
    change = retrying(claim, spec_from_claim(claim), error, due_at=time.time() - 1, attempts=1)
    store.apply([replace(change, tried=(entry,))])


def _used(client: redis.Redis) -> int:
    time.sleep(0.1)
    info = client.info("memory")
    return int(info["used_memory"])


if __name__ == "__main__":
    result = measure()
    print(
        f"Redis bytes per job: queued {result.queued:,.0f}, succeeded {result.succeeded:,.0f}, "
        f"succeeded at its second request {result.retried:,.0f}"
    )
