"""How many bytes of Redis one job costs, queued and finished, measured on a private Redis.

Run ``python -m ops.footprint``. The figure is the growth of Redis's ``used_memory`` over
many jobs divided by their number, so everything a job adds (record, ref and idempotency
index entries, due entry, ticket owner, counters) is counted, not just the hash.

The index entries live in buckets (worker/store/keys.py): a bucket's own cost is shared by
the entries in it, so the figure depends on how full the buckets are. The buckets these
jobs' entries land in are first filled as ``RETAINED`` jobs kept for the retention period
would fill them (the issue's 100,000 tickets a day for 30 days), so the figure is what one
more job costs in such a Redis, not what the first jobs of an empty one cost.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import redis

from ops.redis_server import RedisServer
from worker.contract import AttemptEntry, ErrorKind, JobError, JobSpec, Outcome, TicketIds
from worker.store.jobs import (
    Claim,
    JobStore,
    Recorded,
    retrying,
    spec_from_claim,
    succeeded,
)
from worker.store.keys import INDEX_BUCKETS, idempotency_entry, ref_entry, ticket_entry

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
    # bytes of a queued job's body (its spec as JSON, as submitted), part of ``queued``; its
    # record keeps the ticket as JSON and the spec's other fields as fields of their own
    body: float


UNAVAILABLE = "Service Unavailable: the provider did not answer in time, try again later"
ACCOUNT = "acct-123"
RETAINED = 3_000_000  # jobs kept for the retention period: 100,000 a day for 30 days


def measure(jobs: int = 2_000) -> Footprint:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = JobStore(client, succeeded_ttl=30 * 24 * 3600, lease_seconds=90)
        _fill_buckets(client, jobs, ("alert", "retried"))
        before = _used(client)
        ids = _queued(store, jobs, "alert")
        queued = _used(client)
        for n, job_id in enumerate(ids):
            _succeed(store, _claim(store, job_id), n)
        finished = _used(client)
        for n, job_id in enumerate(_queued(store, jobs, "retried")):
            _retry(store, _claim(store, job_id))
            _succeed(store, _claim(store, job_id), jobs + n)
        retried = _used(client)
        return Footprint(
            (queued - before) / jobs,
            (finished - before) / jobs,
            (retried - finished) / jobs,
            len(_spec("alert", 0).model_dump_json(exclude_unset=True)),
        )


def _spec(prefix: str, n: int) -> JobSpec:
    key = f"{prefix}-{n:08d}"
    return JobSpec.model_validate(
        {"account_id": ACCOUNT, "ticket": SAMPLE_TICKET, "ref": key, "idempotency_key": key}
    )


def _fill_buckets(client: redis.Redis, jobs: int, prefixes: tuple[str, ...]) -> None:
    """Fill the buckets the jobs' index entries go to as ``RETAINED`` jobs would."""
    per_bucket = RETAINED // INDEX_BUCKETS
    buckets = {
        entry.bucket
        for n in range(jobs)
        for prefix in prefixes
        for entry in (
            ref_entry(ACCOUNT, f"{prefix}-{n:08d}"),
            idempotency_entry(ACCOUNT, f"{prefix}-{n:08d}"),
        )
    } | {ticket_entry(ACCOUNT, _ticket_id(n)).bucket for n in range(jobs * len(prefixes))}
    with client.pipeline(transaction=False) as pipe:
        for bucket in buckets:
            fields = [(f"acct-000:old-{i:08d}", f"{i:032x}") for i in range(per_bucket)]
            pipe.hset(bucket, items=[item for pair in fields for item in pair])
        pipe.execute()


def _queued(store: JobStore, jobs: int, prefix: str) -> list[str]:
    ids = [store.create(_spec(prefix, n), "interactive").job_id for n in range(jobs)]
    store.confirm_sent(ids)
    return ids


def _ticket_id(n: int) -> str:
    return f"{n:032x}"


def _claim(store: JobStore, job_id: str) -> Claim:
    claim = store.claim(job_id)
    assert isinstance(claim, Claim)
    return claim


def _succeed(store: JobStore, claim: Claim, n: int) -> None:
    """Recorded as a worker records it: with the request that made the ticket."""
    ticket = TicketIds(id=_ticket_id(n), remote_id=f"PROJ-{n}")
    made = AttemptEntry(at=time.time(), status=201, latency_ms=231.4, outcome=Outcome.SUCCEEDED)
    change = replace(succeeded(claim, spec_from_claim(claim), ticket, 1), tried=(made,))
    assert store.apply([change]) == [Recorded.OK]


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
    assert store.apply([replace(change, tried=(entry,))]) == [Recorded.OK]


def _used(client: redis.Redis) -> int:
    time.sleep(0.1)
    info = client.info("memory")
    return int(info["used_memory"])


if __name__ == "__main__":
    result = measure()
    print(
        f"Redis bytes per job: queued {result.queued:,.0f} (its body {result.body:,.0f} + "
        f"{result.queued - result.body:,.0f}), succeeded {result.succeeded:,.0f}, "
        f"succeeded at its second request {result.retried:,.0f} "
        f"(index buckets as {RETAINED:,} retained jobs fill them)"
    )
