"""A job record's layouts in a real (private) Redis: the compact one create.lua writes, the
one versions before wrote (every reader takes either), and what a job costs
(``ops.footprint``)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import cast

import pytest
import redis

from ops import footprint
from ops.bench.scenarios import TicketqPhase
from producers.client import Producer
from worker.contract import MAX_BODY_BYTES, ErrorKind, JobError, JobSpec, JobState, TicketIds
from worker.store.batches import Batches
from worker.store.jobs import Claim, Due, JobStore, Recorded, failed, spec_from_claim
from worker.store.keys import (
    COMPACT_FIELDS,
    DUE_INDEX,
    idempotency_entry,
    job_key,
    queued_key,
    ref_entry,
)
from worker.store.stats import recount

TICKET = {"title": "Disk full on db-1", "content": [{"plain": "é€😀 " * 40}], "tags": ["a"]}


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, succeeded_ttl=3600, lease_seconds=60, keep_body=True)


def spec(**extra: str) -> JobSpec:
    return JobSpec.model_validate({"account_id": "acct-1", "ticket": TICKET, **extra})


def stored(client: redis.Redis, job_id: str) -> dict[str, str]:
    return cast(dict[str, str], client.hgetall(job_key(job_id)))


def test_a_queued_job_costs_its_body_and_at_most_500_bytes_more_and_a_finished_one_600() -> None:
    """Measured as ``python -m ops.footprint`` measures it: Redis's used memory per job, with
    its indexes, in buckets as full as 3 million retained jobs make them."""
    measured = footprint.measure(jobs=1_000)

    assert measured.queued - measured.body <= 500
    assert measured.succeeded <= 600 and measured.retried <= 600


def test_a_queued_record_keeps_its_body_once_under_compact_names(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """The ticket alone, in parts "0", "1", ... of at most 64 bytes (the spec's other fields
    are the record's own), the fields under their compact names: a compact hash."""
    job_spec = spec(ref="r-1", idempotency_key="k-1", batch_id="b-1")
    job_id = store.create(job_spec, "bulk").job_id

    record = stored(redis_client, job_id)
    parts = [name for name in record if name.isdigit()]
    assert set(record) - set(parts) == {"state", "lane", *COMPACT_FIELDS.values()}
    body = "".join(record[str(n)] for n in range(len(parts)))
    assert body == job_spec.ticket.model_dump_json(exclude_unset=True)
    assert all(len(record[name].encode()) <= 64 for name in parts)
    assert redis_client.object("encoding", job_key(job_id)) in ("listpack", "ziplist")
    shown = store.get(job_id)
    assert shown is not None and shown.state is JobState.QUEUED and shown.lane == "bulk"
    assert (shown.account_id, shown.ref, shown.idempotency_key, shown.batch_id) == (
        "acct-1",
        "r-1",
        "k-1",
        "b-1",
    )
    assert shown.created_at == shown.updated_at == float(record[COMPACT_FIELDS["created_at"]])


def test_a_record_keeps_its_compact_names_from_queued_to_failed_replayed_and_succeeded(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """No script renames a record: each reads either layout's names. The spec read back at
    every claim equals the one submitted; the view of the record stays the same; a body kept
    after success (TICKETQ_KEEP_BODY) is the body whole."""
    job_spec = spec(ref="r-1", idempotency_key="k-1", batch_id="b-1")
    job_id = store.create(job_spec, "interactive").job_id
    queued = store.get(job_id)
    body = {name: value for name, value in stored(redis_client, job_id).items() if name.isdigit()}
    claim = store.claim(job_id)
    assert isinstance(claim, Claim) and spec_from_claim(claim) == job_spec
    error = JobError(kind=ErrorKind.TERMINAL, message="no")
    assert store.apply([failed(claim, job_spec, error, 1)]) == [Recorded.OK]
    replayed = store.replay(job_id)
    assert isinstance(replayed, Due)
    again = store.claim(job_id)
    assert isinstance(again, Claim) and spec_from_claim(again) == job_spec

    assert store.succeed(again, job_spec, TicketIds(id="t-1")) is Recorded.OK

    record = stored(redis_client, job_id)
    assert not {"account_id", "created_at", "ref", "idempotency_key", "batch_id"} & set(record)
    assert {name: value for name, value in record.items() if name.isdigit()} == body
    assert redis_client.object("encoding", job_key(job_id)) in ("listpack", "ziplist")
    done = store.get(job_id)
    assert queued is not None and done is not None and done.state is JobState.SUCCEEDED
    assert (done.account_id, done.ref, done.idempotency_key, done.batch_id) == (
        "acct-1",
        "r-1",
        "k-1",
        "b-1",
    )
    assert done.created_at == queued.created_at and done.replays == 1


def old_record(client: redis.Redis, job_id: str, job_spec: JobSpec, now: float) -> None:
    """A queued job as the version before the compact record stored it (create.lua then):
    the spec whole as JSON in parts "spec", "spec:1", ... and every field's full name."""
    text = job_spec.model_dump_json(exclude_unset=True)
    parts = [text[at : at + 64] for at in range(0, len(text), 64)]  # ASCII: whole characters
    fields = {"state": "queued", "account_id": job_spec.account_id, "created_at": f"{now:.3f}"}
    fields |= {"spec" if n == 0 else f"spec:{n}": part for n, part in enumerate(parts)}
    fields |= {"idempotency_key": job_spec.idempotency_key or "", "ref": job_spec.ref or ""}
    client.hset(job_key(job_id), items=[item for pair in fields.items() for item in pair])
    for entry in (
        idempotency_entry(job_spec.account_id, job_spec.idempotency_key or ""),
        ref_entry(job_spec.account_id, job_spec.ref or ""),
    ):
        client.hset(entry.bucket, entry.field, job_id)
    client.zadd(DUE_INDEX, {job_id: now + 900})
    client.zadd(queued_key("interactive"), {job_id: now})


def test_a_queued_job_the_previous_version_stored_is_read_claimed_and_recorded_as_before(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """Upgrade safety: a job queued before the upgrade is claimed by the new worker with its
    spec whole, and keeps every field when it succeeds."""
    job_spec = JobSpec.model_validate(
        {"account_id": "acct-1", "ticket": {"title": "t"}, "ref": "r-1", "idempotency_key": "k"}
    )
    job_id, now = "0123456789abcdef0123456789abcdef", time.time()
    old_record(redis_client, job_id, job_spec, now)
    queued = store.get(job_id)
    assert queued is not None and (queued.ref, queued.created_at) == ("r-1", float(f"{now:.3f}"))

    claim = store.claim(job_id)

    assert isinstance(claim, Claim) and spec_from_claim(claim) == job_spec
    assert store.succeed(claim, job_spec, TicketIds(id="t-1")) is Recorded.OK
    done = store.get(job_id)
    assert done is not None and (done.ref, done.idempotency_key) == ("r-1", "k")
    kept = stored(redis_client, job_id)  # TICKETQ_KEEP_BODY: the spec whole, as it was
    parts = ["spec", *(f"spec:{n}" for n in range(1, len(kept)) if f"spec:{n}" in kept)]
    assert "".join(kept[name] for name in parts) == job_spec.model_dump_json(exclude_unset=True)
    assert store.create(job_spec, "interactive").job_id == job_id  # its key still names it


def test_a_queued_job_the_previous_version_stored_is_cancelled_and_releases_its_key(
    store: JobStore, redis_client: redis.Redis
) -> None:
    job_spec = spec(ref="r-1", idempotency_key="k")
    job_id = "0123456789abcdef0123456789abcdef"
    old_record(redis_client, job_id, job_spec, time.time())

    (cancelled,) = store.cancel_many([job_id])

    assert cancelled.code == "ok"
    assert store.create(job_spec, "interactive").is_new


def test_every_reader_takes_a_compact_record_as_a_full_one(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """Find by ref, a batch's rows (the export), the recount of the queued sets, cancel (its
    idempotency entry released): as for a record with full names."""
    job_spec = spec(ref="r-1", idempotency_key="k-1", batch_id="b-1")
    job_id = store.create_many([job_spec], "interactive", positions=[3])[0].job_id
    created = store.get(job_id)
    assert created is not None

    found = store.find("acct-1", "r-1")
    (row,) = Batches(store).rows([(3, job_id)])
    recount(redis_client)

    assert found is not None and found.job_id == job_id
    assert (row.ref, row.state) == ("r-1", "queued")
    since = redis_client.zscore(queued_key("interactive"), job_id)
    assert since == created.created_at
    (cancelled,) = store.cancel_many([job_id], of_batch="b-1")
    assert cancelled.code == "ok"
    record = store.get(job_id)
    assert record is not None and record.state is JobState.CANCELLED and record.ref == "r-1"
    assert store.create(job_spec, "interactive").is_new  # its idempotency key released


def test_the_benchmark_reads_a_compact_records_times(store: JobStore) -> None:
    """ops/bench's latency is finished_at less created_at, read straight from the records."""
    job_id = store.create(spec(), "interactive").job_id
    created = store.get(job_id)
    phase = TicketqPhase.__new__(TicketqPhase)  # its store alone: no stack, no producer
    phase.producer = cast(Producer, SimpleNamespace(store=store))

    assert created is not None
    assert phase.times([job_id]) == [("queued", created.created_at, None)]


def test_the_largest_ticket_the_door_takes_is_stored_sent_and_kept_whole(
    store: JobStore, redis_client: redis.Redis
) -> None:
    """A body of 256 KiB is 4,096 parts: more than one Lua call may take at once (about
    8,000 values). Written in one go, create.lua refused it as if Redis were failing, and
    transition.lua deleted the succeeded record before failing to write it again (the ticket
    made, its record and idempotency key gone: a second submit made a second ticket)."""

    def ticket(plain: str) -> dict[str, object]:
        """Its content in items of at most 100,000 characters, as the door allows."""
        items = [plain[n : n + 100_000] for n in range(0, len(plain), 100_000)] or [""] * 3
        return {"title": "Disk full", "content": [{"plain": item} for item in items]}

    empty = JobSpec.model_validate({"account_id": "acct-1", "ticket": ticket("")})
    filler = "d" * (MAX_BODY_BYTES - len(empty.ticket.to_json().encode()))
    job_spec = JobSpec.model_validate(
        {"account_id": "acct-1", "ticket": ticket(filler), "ref": "r-1", "idempotency_key": "k-1"}
    )
    assert len(job_spec.ticket.to_json().encode()) == MAX_BODY_BYTES

    job_id = store.create(job_spec, "bulk").job_id
    claim = store.claim(job_id)
    assert isinstance(claim, Claim) and spec_from_claim(claim) == job_spec
    assert store.succeed(claim, job_spec, TicketIds(id="t-1")) is Recorded.OK

    done = store.get(job_id)
    assert done is not None and done.state is JobState.SUCCEEDED and done.ref == "r-1"
    kept = stored(redis_client, job_id)
    body = "".join(kept[str(n)] for n in range(len(kept)) if str(n) in kept)
    assert body == job_spec.ticket.to_json()
    assert not store.create(job_spec, "bulk").is_new  # its idempotency key still names it
