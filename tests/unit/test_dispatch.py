"""Messages carry job ids: a few interactive jobs or a batch of bulk ones per message."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from ops.redis_server import RedisServer
from worker.queue.app import create_app
from worker.queue.dispatch import INTERACTIVE_BATCH, argsrepr, dispatch
from worker.settings import Settings
from worker.store.jobs import Due, JobStore
from worker.store.keys import QUEUES


def job_ids_per_message(client: redis.Redis, queue: str) -> list[list[str]]:
    """Each message's job ids, in the order kombu's Redis transport will deliver them."""
    raw = client.lrange(queue, 0, -1)
    bodies = [json.loads(base64.b64decode(json.loads(item)["body"])) for item in reversed(raw)]
    args: list[list[Any]] = [body[0] for body in bodies]
    return [ids for (ids,) in args]


def test_interactive_and_bulk_jobs_are_grouped_by_lane_each_up_to_its_batch(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    app = create_app(Settings(redis_url=redis_server.url))
    store = JobStore(redis_client, succeeded_ttl=3600, lease_seconds=60)
    interactive = [f"i{n}" for n in range(INTERACTIVE_BATCH + 3)]
    bulk = [f"b{n}" for n in range(7)]
    jobs = [Due(job_id, "interactive") for job_id in interactive]
    jobs += [Due(job_id, "bulk") for job_id in bulk]

    dispatch(app, store, jobs, bulk_batch=5)

    assert job_ids_per_message(redis_client, QUEUES["interactive"]) == [
        interactive[:INTERACTIVE_BATCH],
        interactive[INTERACTIVE_BATCH:],
    ]
    assert job_ids_per_message(redis_client, QUEUES["bulk"]) == [bulk[:5], bulk[5:]]
    headers = [json.loads(item)["headers"] for item in redis_client.lrange(QUEUES["bulk"], 0, -1)]
    # Flower tells messages apart by their first ids; not every id a second time.
    assert [h["argsrepr"] for h in reversed(headers)] == ["[b0, b1, +3 more]", "[b5, b6]"]


def test_a_messages_argsrepr_names_its_first_two_job_ids_and_counts_the_rest() -> None:
    ids = [f"{n:032x}" for n in range(50)]

    assert argsrepr(ids[:1]) == f"[{ids[0]}]"
    assert argsrepr(ids[:2]) == f"[{ids[0]}, {ids[1]}]"
    assert argsrepr(ids) == f"[{ids[0]}, {ids[1]}, +48 more]"
