"""Names of everything ticketq keeps in Redis: the job store's keys, the limiter's and the
key health's, and the Celery queues (Redis lists) the workers read.

All share one prefix and one way of quoting caller-chosen values into key names, so no
account id or ref can forge another's key.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

PREFIX = "ticketq"
JOB_PREFIX = f"{PREFIX}:job:"
FAILED_INDEX = f"{PREFIX}:failed"
DUE_INDEX = f"{PREFIX}:due"
# Batches by when they were opened (a sorted set), for ``ticketq batches``; an entry whose
# batch has expired is dropped when listing.
BATCH_INDEX = f"{PREFIX}:batches"
# The deployment's random salt for API key fingerprints (worker/store/salt.py); kept for
# good: a new one renames every key's limiter and key-health state.
KEY_SALT = f"{PREFIX}:keysalt"
# The Celery queues (Redis lists) of the two lanes, interactive first: workers read them in
# this order, and the scheduler looks at their length.
QUEUES = {"interactive": "ticketq.interactive", "bulk": "ticketq.bulk"}
# The fleet's numbers (worker/store/stats.py), kept by the scripts that move jobs: a hash of
# jobs per "<lane>:<state>" (queued, running, retrying, held_back, failed) ...
COUNTS = f"{PREFIX}:counts"
# ... a sorted set per lane of its queued job ids by when they became queued (the oldest
# waiting job) ...
QUEUED_PREFIX = f"{PREFIX}:queued:"
# ... and a hash per minute (its Unix time // 60) of the jobs finished in it per
# "<lane>:<state>" and the requests sent in each of its seconds ("sent:<second>").
MINUTE_PREFIX = f"{PREFIX}:minute:"
MINUTE_TTL = 2 * 3600  # seconds a minute's hash is kept
# The worker processes alive (a hash: one heartbeat per process, worker/store/workers.py).
WORKERS = f"{PREFIX}:workers"


def queued_key(lane: str) -> str:
    """A lane's queued job ids (a sorted set), scored by when each became queued."""
    return f"{QUEUED_PREFIX}{lane}"


def minute_key(moment: float) -> str:
    """The hash of the minute holding ``moment`` (Unix seconds)."""
    return f"{MINUTE_PREFIX}{int(moment // 60)}"


def segment(value: str) -> str:
    return quote(value, safe="")


def job_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


# A job's record, as create.lua writes it, names these fields compactly (a field's name is
# stored in every record: most of a queued job's bytes besides its body), and keeps its body
# (the ticket: the spec's other fields are these) in parts named "0", "1", ..., each at most
# 64 bytes. Records the versions before wrote keep the full names, and the spec whole in
# parts "spec", "spec:1", ...: every reader takes either (jobs.py record_fields,
# lua/lib/records.lua).
COMPACT_FIELDS = {
    "account_id": "a",
    "created_at": "c",
    "idempotency_key": "i",
    "ref": "r",
    "batch_id": "b",
}
BODY_FIRST_PARTS = ("spec", "0")  # a body's first part: with full names, compact
# The spec's fields a record keeps on their own, beside its body (claim.lua answers them, in
# this order), which also name its index keys (purge and cancel read them to find the keys).
SPEC_FIELDS = ("account_id", "ref", "idempotency_key", "batch_id")


# The job indexes (a job by its ref, by its idempotency key, a ticket's owner) are fields of
# small hashes, INDEX_BUCKETS of each kind, a field's bucket chosen by a checksum of its
# name: Redis keeps a small hash in its compact encoding, where an entry costs about 60
# bytes, against about 165 for a key of its own with an expiry. 65,536 buckets hold 3 million
# jobs' entries at 46 a bucket, and 33 million before a bucket (512 entries) loses that
# encoding. An entry lives as long as the job it names: the scheduler sweeps away entries
# whose job has expired (sweep.lua), and every reader takes an entry naming a job that is
# gone as no entry.
INDEX_BUCKETS = 1 << 16
# Where the sweep goes on from (a string: buckets swept so far, all kinds in a row).
INDEX_SWEEP = f"{PREFIX}:indexsweep"
INDEX_KINDS = ("refs", "idems", "tickets")


class IndexEntry(NamedTuple):
    """One index entry's place: the bucket (a hash), the field in it, and the key the
    versions before the buckets kept it under (a string), read when the field is absent."""

    bucket: str
    field: str
    old_key: str


def index_bucket(kind: str, number: int) -> str:
    """The ``number``-th bucket (a hash) of an index ``kind`` (one of ``INDEX_KINDS``)."""
    return f"{PREFIX}:{kind}:{number:04x}"


def _entry(kind: str, old: str, account_id: str, value: str) -> IndexEntry:
    field = f"{segment(account_id)}:{segment(value)}"
    number = zlib.crc32(field.encode()) % INDEX_BUCKETS
    return IndexEntry(index_bucket(kind, number), field, f"{PREFIX}:{old}:{field}")


def ref_entry(account_id: str, ref: str) -> IndexEntry:
    """The latest job submitted with this ref for this account."""
    return _entry("refs", "ref", account_id, ref)


def idempotency_entry(account_id: str, key: str) -> IndexEntry:
    """The job an idempotency key names."""
    return _entry("idems", "idem", account_id, key)


def ticket_entry(account_id: str, ticket_id: str) -> IndexEntry:
    """Which job owns a StackOne ticket, so reconciliation never adopts another job's."""
    return _entry("tickets", "ticket", account_id, ticket_id)


def batch_key(batch_id: str) -> str:
    """A batch's jobs (a sorted set), scored by their rows' positions in the input."""
    return f"{PREFIX}:batch:{segment(batch_id)}"


def batch_info_key(batch_id: str) -> str:
    """What a batch was (a hash): when it was opened, its account, its source, its counts."""
    return f"{PREFIX}:batchinfo:{segment(batch_id)}"


def session_key(digest: str) -> str:
    """A dashboard session (a hash), by the digest of its id: the id itself, the cookie's
    value, is never stored, so reading Redis signs nobody in."""
    return f"{PREFIX}:session:{digest}"


def inflight_key(account_id: str) -> str:
    """Requests in flight for an account (holder -> lease end), for its concurrency cap."""
    return f"{PREFIX}:inflight:{segment(account_id)}"


def wake_key(account_id: str) -> str:
    """The wake signal of an account at its cap (a list of at most one element): pushed when
    a slot is freed for waiters with none freed before, taken (BLPOP) by the delivery that
    has waited longest for one, which then takes the freed slots (``freed_key``)."""
    return f"{PREFIX}:wake:{segment(account_id)}"


def freed_key(account_id: str) -> str:
    """The slots of an account freed for the deliveries waiting for one and not yet taken by
    any (a count, at most the slots free when it last grew)."""
    return f"{PREFIX}:freed:{segment(account_id)}"


# How long the signal and the count live (ms; the count from its first slot, the signal
# from its push): a delivery refused an instant before still finds them, and slots nobody
# waited for wake nobody much later.
WAKE_TTL_MS = 2000


def account_pause_key(account_id: str) -> str:
    """The pause the provider behind one linked account asked for (a 429), until when (ms)."""
    return f"{PREFIX}:rl:pause:account:{segment(account_id)}"


@dataclass(frozen=True)
class ApiKeyNames:
    """The keys the limiter and the key health keep for one StackOne API key, named by its
    fingerprint, keyed by the deployment's salt (the key itself is never stored)."""

    schedule: str  # GCRA: when the next request is due (microseconds)
    interactive_schedule: str  # the interactive lane's own GCRA, for its burst (microseconds)
    interactive_line: str  # interactive requests the rate holds back, by fair-share tag
    bulk_line: str  # bulk requests the rate holds back, by fair-share tag
    shares: str  # hash: the lines' virtual times, each account's last tag and release pace
    turns: str  # jobs released from a line, not yet admitted (job -> when released, ms)
    release: str  # when the next job may be released from the lines (microseconds)
    account_schedules: str  # + an account: its own GCRA schedule (TICKETQ_ACCOUNT_RATE_LIMIT)
    pause: str  # the pause a 429 for the whole key asked for, until when (ms)
    refusal: str  # StackOne's last refusal of the key, kept until a request succeeds again
    refusal_pause: str  # the pause after a refusal (401/403), until when (ms)
    probe: str  # the one request allowed to try a refused key once its pause is over
    failures: str  # 5xx and connection errors in a row with the key (a success resets it)
    outage: str  # hash: the outage's pause, until when (ms), and its current step (ms)
    outage_probe: str  # the one request allowed to test StackOne during an outage

    @classmethod
    def of(cls, key_fingerprint: str) -> ApiKeyNames:
        return cls(
            schedule=f"{PREFIX}:rl:{key_fingerprint}",
            interactive_schedule=f"{PREFIX}:rl:interactive:{key_fingerprint}",
            interactive_line=f"{PREFIX}:rl:line:interactive:{key_fingerprint}",
            bulk_line=f"{PREFIX}:rl:line:bulk:{key_fingerprint}",
            shares=f"{PREFIX}:rl:shares:{key_fingerprint}",
            turns=f"{PREFIX}:rl:turns:{key_fingerprint}",
            release=f"{PREFIX}:rl:release:{key_fingerprint}",
            account_schedules=f"{PREFIX}:rl:account:{key_fingerprint}:",
            pause=f"{PREFIX}:rl:pause:{key_fingerprint}",
            refusal=f"{PREFIX}:auth:refused:{key_fingerprint}",
            refusal_pause=f"{PREFIX}:auth:pause:{key_fingerprint}",
            probe=f"{PREFIX}:auth:probe:{key_fingerprint}",
            failures=f"{PREFIX}:outage:failures:{key_fingerprint}",
            outage=f"{PREFIX}:outage:{key_fingerprint}",
            outage_probe=f"{PREFIX}:outage:probe:{key_fingerprint}",
        )

    def account_schedule(self, account_id: str) -> str:
        """An account's own GCRA schedule with this key (microseconds)."""
        return self.account_schedules + segment(account_id)
