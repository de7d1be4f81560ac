"""How many bytes of Redis one job costs, queued and finished, measured on a private Redis.

Run ``python -m ops.footprint``. The figure is the growth of Redis's ``used_memory`` over
many jobs divided by their number, so every key a job adds (record, ref and idempotency
indexes, due entry, ticket owner) is counted, not just the hash.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from ops.redis_server import RedisServer
from worker.contract import JobSpec, TicketIds
from worker.store.jobs import Claim, JobStore, spec_from_claim

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


def measure(jobs: int = 2_000) -> Footprint:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = JobStore(client, succeeded_ttl=30 * 24 * 3600, lease_seconds=90)
        before = _used(client)
        ids = []
        for n in range(jobs):
            spec = JobSpec.model_validate(
                {
                    "account_id": "acct-123",
                    "ticket": SAMPLE_TICKET,
                    "ref": f"alert-{n:08d}",
                    "idempotency_key": f"alert-{n:08d}",
                }
            )
            ids.append(store.create(spec, "interactive").job_id)
        store.confirm_sent(ids)
        queued = _used(client)
        for n, job_id in enumerate(ids):
            claim = store.claim(job_id)
            assert isinstance(claim, Claim)
            spec = spec_from_claim(claim)
            ticket = TicketIds(id=f"{n:032x}", remote_id=f"PROJ-{n}")
            store.succeed(claim, spec, ticket)
        finished = _used(client)
        return Footprint((queued - before) / jobs, (finished - before) / jobs)


def _used(client: redis.Redis) -> int:
    time.sleep(0.1)
    info = client.info("memory")
    return int(info["used_memory"])


if __name__ == "__main__":
    result = measure()
    print(f"Redis bytes per job: queued {result.queued:,.0f}, succeeded {result.succeeded:,.0f}")
