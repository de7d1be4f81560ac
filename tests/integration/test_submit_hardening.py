"""Submitting against a Redis that cannot take it all, and bodies no JSON reader should take:
a batch is accepted whole or not at all, and bad bodies are refused at the door by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError

from ops.redis_server import RedisServer
from producers.client import (
    BrokerError,
    BrokerUnavailable,
    InvalidJob,
    Producer,
    broker_errors,
)
from worker.contract import MAX_DEPTH
from worker.settings import Settings
from worker.store.jobs import CREATE_CHUNK, JobStore
from worker.store.keys import DUE_INDEX, JOB_PREFIX, PREFIX, ref_entry
from worker.store.scripts import SCRIPTS

pytestmark = pytest.mark.integration
ACCOUNT = "acct-hardening"
# Bytes Redis may still take: room for the arguments of the batch's first create.lua call
# (between 256 and 384 KB as Redis holds them); its 500 records with their refs and keys
# (compact since issue 13: more than 500 KB) then take Redis past maxmemory (a script that
# started may), so the second call is refused.
HEADROOM = 448 * 1024


@pytest.fixture
def producer(redis_server: RedisServer) -> Iterator[Producer]:
    with Producer(Settings(redis_url=redis_server.url)) as running:
        yield running


def jobs_in(client: redis.Redis) -> set[str]:
    return {str(key) for key in client.scan_iter(f"{JOB_PREFIX}*", count=1000)}


def batch_sets_in(client: redis.Redis) -> list[str]:
    return [str(key) for key in client.scan_iter(f"{PREFIX}:batch:*", count=1000)]


def taken_back(client: redis.Redis) -> int:
    """Jobs removed from a batch set since ``near_maxmemory``: one ZREM each."""
    stats = client.info("commandstats").get("cmdstat_zrem", {})
    return int(stats.get("calls", 0))


def near_maxmemory(client: redis.Redis) -> None:
    """Leave Redis room for the first create.lua call of a batch, not for the ones after it."""
    for script in SCRIPTS:  # loaded while there is room, as in a running installation
        client.script_load(script.text)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + HEADROOM)
    client.config_resetstat()


def test_a_batch_redis_cannot_hold_whole_leaves_nothing_behind_and_keeps_older_jobs(
    producer: Producer, redis_client: redis.Redis
) -> None:
    older = producer.submit(ACCOUNT, {"title": "older"}, ref="ref-7", idempotency_key="key-0")
    assert producer.flush()
    before = jobs_in(redis_client)
    tickets = [{"title": f"ticket {n}"} for n in range(1500)]
    near_maxmemory(redis_client)

    # Redis's own error, as the producer passes it on (wrapped or not): "OOM command not allowed"
    with pytest.raises(Exception, match="OOM command not allowed"):
        producer.submit_many(
            ACCOUNT,
            tickets,
            refs=[f"ref-{n}" for n in range(1500)],
            idempotency_keys=[f"key-{n}" for n in range(1500)],
        )

    redis_client.config_set("maxmemory", 0)
    # The first call did store its jobs (all but ticket 0, whose key named the older job).
    assert taken_back(redis_client) >= CREATE_CHUNK - 1
    assert jobs_in(redis_client) == before
    assert redis_client.zrange(DUE_INDEX, 0, -1) == [older.job_id]
    assert batch_sets_in(redis_client) == []
    assert redis_client.hget(*ref_entry(ACCOUNT, "ref-8")[:2]) is None
    found = producer.find(ACCOUNT, "ref-7")
    assert found is not None and found.job_id == older.job_id
    again = producer.submit(ACCOUNT, {"title": "older"}, idempotency_key="key-0")
    assert (again.job_id, again.is_new) == (older.job_id, False)


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [MAX_DEPTH, 250, 100_000])
def test_a_body_nested_too_deep_is_refused_at_the_door_naming_the_field(
    producer: Producer, levels: int
) -> None:
    body = {"priority": {"source_value": nested(levels)}}

    with pytest.raises(InvalidJob) as caught:
        producer.submit(ACCOUNT, body)

    assert str(caught.value).startswith("ticket.priority.source_value.0.0.")
    assert f"nested deeper than {MAX_DEPTH} levels" in str(caught.value)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_at_the_door_by_name(
    producer: Producer, number: float
) -> None:
    body = {"unified_custom_fields": {"score": {"values": [1.5, number]}}}

    with pytest.raises(InvalidJob) as caught:
        producer.submit(ACCOUNT, body)

    name = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(number)]
    assert str(caught.value) == (
        f"ticket.unified_custom_fields.score.values.1: {name} is not a JSON number"
    )


def test_a_batch_stored_whole_is_accepted_when_its_messages_cannot_be_sent(
    producer: Producer,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One create.lua call stores the batch, and then Redis is past maxmemory (here set
    lower as the call returns: its compact records no longer take Redis past it reliably),
    so the send after it is refused: the jobs are accepted (each in the outbox, for a
    worker's scheduler to send), and submit_many says so rather than raising."""
    count = CREATE_CHUNK
    tickets = [{"title": f"ticket {n}"} for n in range(count)]
    keys = [f"stored-{n}" for n in range(count)]
    near_maxmemory(redis_client)
    redis_client.config_set("maxmemory", 0)  # until the batch is stored
    create_many = JobStore.create_many

    def then_full(store: JobStore, *args: Any, **kwargs: Any) -> Any:
        stored = create_many(store, *args, **kwargs)
        redis_client.config_set("maxmemory", 1)
        return stored

    monkeypatch.setattr(JobStore, "create_many", then_full)

    with caplog.at_level("WARNING"):
        batch = producer.submit_many(ACCOUNT, tickets, idempotency_keys=keys)

    assert "will be sent by a worker after TICKETQ_REQUEUE_AFTER" in caplog.text
    redis_client.config_set("maxmemory", 0)
    assert len(batch.job_ids) == len(set(batch.job_ids)) == count
    assert jobs_in(redis_client) == {f"{JOB_PREFIX}{job_id}" for job_id in batch.job_ids}
    assert set(redis_client.zrange(DUE_INDEX, 0, -1)) == set(batch.job_ids)
    assert redis_client.llen("ticketq.bulk") == 0  # nothing sent: the scheduler will send them
    assert batch.progress() == {"queued": count}
    again = producer.submit_many(ACCOUNT, tickets, idempotency_keys=keys)
    assert again.job_ids == batch.job_ids
    assert len(jobs_in(redis_client)) == count


def test_a_send_redis_refuses_is_a_broker_error_not_an_unreachable_redis() -> None:
    refused = redis.exceptions.OutOfMemoryError("command not allowed when used memory")

    expected = r"Redis refused the request: .*used memory"
    with pytest.raises(BrokerError, match=expected) as caught, broker_errors():
        raise OperationalError(str(refused)) from refused

    assert not isinstance(caught.value, BrokerUnavailable)
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis"), broker_errors():
        raise OperationalError("refused") from redis.ConnectionError("refused")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"unified_custom_fields": {"k\ud800": "v"}}, "unified_custom_fields.k\\ud800"),
        ({"priority": {"source_value": {"a": "\udfff"}}}, "priority.source_value.a"),
        ({"title": "t\ud800"}, "title"),
    ],
)
def test_a_lone_surrogate_is_refused_at_the_door_naming_the_field(
    producer: Producer, redis_client: redis.Redis, body: dict[str, Any], where: str
) -> None:
    with pytest.raises(InvalidJob) as caught:
        producer.submit(ACCOUNT, body)

    assert str(caught.value) == f"ticket.{where}: not valid Unicode"
    assert jobs_in(redis_client) == set()
