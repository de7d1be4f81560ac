"""Submit ticket-creation jobs: validate at the door, record the job, enqueue its id.

Validation happens here so bad input never reaches a queue, let alone the API: the caller
gets ``InvalidJob`` naming the field. Accepted jobs have a record before their message is
sent, so a worker never sees a message without a record.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from producers.publisher import Publisher
from worker.contract import JobRecord, JobSpec, JobState, TicketCreate
from worker.queue.app import create_app
from worker.queue.dispatch import dispatch, dispatch_stored
from worker.settings import Settings, get_settings
from worker.store.batches import Batches
from worker.store.jobs import Due, JobStore, NewJob, Stored
from worker.validation import MAX_ERRORS, bounded, describe_validation_error

log = logging.getLogger("ticketq.producer")


class InvalidJob(ValueError):
    """The job was refused before it was queued; the message names the offending field."""


class BatchNotFound(LookupError):
    """No batch has this id (never made, or expired with its jobs)."""


class JobNotFound(LookupError):
    """No record for this job id (never submitted, or expired after its retention)."""


class BrokerError(RuntimeError):
    """Redis failed the request (out of memory, read-only, refused a command); the message
    says why and the driver's exception is chained as ``__cause__``."""


class BrokerUnavailable(BrokerError):
    """Redis could not be reached (down, wrong TICKETQ_REDIS_URL, no network, wrong
    password) after the client's retries; nothing was stored."""


@contextmanager
def broker_errors() -> Iterator[None]:
    """Callers of the producer API handle ``producers`` exceptions, never a driver's: which
    library talks to Redis is ours to change."""
    try:
        yield
    except OperationalError as exc:
        if isinstance(exc.__cause__, redis.ResponseError):  # out of memory, read-only, ...
            raise BrokerError(f"Redis refused the request: {exc}") from exc
        raise BrokerUnavailable(f"cannot reach Redis (TICKETQ_REDIS_URL): {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"cannot reach Redis (TICKETQ_REDIS_URL): {exc}") from exc
    except redis.RedisError as exc:
        raise BrokerError(f"Redis refused the request: {exc}") from exc


@dataclass(frozen=True)
class JobHandle:
    """What a producer keeps to follow a job; ``is_new`` is False for a repeated idempotency key."""

    job_id: str
    is_new: bool
    store: JobStore

    @broker_errors()
    def status(self) -> JobRecord:
        record = self.store.get(self.job_id)
        if record is None:
            raise JobNotFound(self.job_id)
        return record

    def wait(self, timeout: float = 30.0, poll: float = 0.05) -> JobRecord:
        """Block until the job succeeds or fails; raises TimeoutError with the last state."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.status()
            if record.state.is_final:
                return record
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.job_id} still {record.state} after {timeout}s")
            time.sleep(poll)


@dataclass(frozen=True)
class Rejected:
    """A ticket ``submit_many(..., skip_invalid=True)`` left out: its index and why."""

    index: int
    reason: str


@dataclass(frozen=True)
class BatchHandle:
    """A bulk submission: its id, every job's id (in input order), what was left out, and
    its progress. ``Producer.batch(batch_id)`` reopens one later."""

    batch_id: str
    job_ids: list[str]
    store: JobStore
    rejects: tuple[Rejected, ...] = ()

    @broker_errors()
    def progress(self) -> Counter[str]:
        """How many jobs are in each state (``missing`` for an expired record)."""
        return Counter(
            str(state) if state else "missing" for state in self.store.states(self.job_ids)
        )

    def wait(self, timeout: float = 300.0, poll: float = 0.25) -> Counter[str]:
        """Block until every job is final; raises TimeoutError with the counts so far."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.progress()
            if _all_final(counts):
                return counts
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"batch {self.batch_id} not finished after {timeout}s: {dict(counts)}"
                )
            time.sleep(poll)


def _all_final(counts: Counter[str]) -> bool:
    """Every job succeeded, failed or was cancelled (or its record is gone)."""
    return all(name == "missing" or JobState(name).is_final for name in counts)


class Producer:
    """Validates, records and queues jobs. ``submit`` returns once the record is stored;
    its message follows from a background thread (``producers/publisher.py``), which
    ``close()`` (or interpreter exit) lets finish."""

    def __init__(self, settings: Settings | None = None, *, ride_out_restarts: bool = True) -> None:
        """``ride_out_restarts``: retry Redis for about half a minute (a restart) before
        raising ``BrokerUnavailable``; False gives up within seconds."""
        self.settings = settings or get_settings()
        self.store = JobStore.from_settings(self.settings, ride_out_restarts=ride_out_restarts)
        self._app: Celery = create_app(self.settings)
        self._publisher = Publisher(self._send_interactive)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every job submitted so far is on the queue; False on timeout."""
        return self._publisher.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send every message still pending; the producer may be used again after."""
        self._publisher.close(timeout)

    @broker_errors()
    def submit(
        self,
        account_id: str,
        ticket: TicketCreate | Mapping[str, Any],
        ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobHandle:
        spec = self.validate(account_id, ticket, ref=ref, idempotency_key=idempotency_key)
        stored = self.store.create(spec, "interactive")
        if stored.is_new:
            self._publisher.put(stored.job_id)
        return JobHandle(job_id=stored.job_id, is_new=stored.is_new, store=self.store)

    @staticmethod
    def validate(
        account_id: str,
        ticket: TicketCreate | Mapping[str, Any],
        *,
        ref: str | None = None,
        idempotency_key: str | None = None,
        batch_id: str | None = None,
    ) -> JobSpec:
        fields: dict[str, Any] = {"account_id": account_id, "ticket": ticket}
        optional = {"ref": ref, "idempotency_key": idempotency_key, "batch_id": batch_id}
        # Unset optional fields stay unset, so the stored spec holds only what was given.
        fields.update({name: value for name, value in optional.items() if value is not None})
        try:
            return JobSpec.model_validate(fields)
        except ValidationError as exc:
            raise InvalidJob(describe_validation_error(exc)) from None

    @broker_errors()
    def batch(self, batch_id: str) -> BatchHandle:
        """Reopen a batch by its id (``BatchNotFound`` once it has expired with its jobs)."""
        batches = Batches(self.store)
        if batches.info(batch_id) is None:
            raise BatchNotFound(batch_id)
        return BatchHandle(batch_id, batches.job_ids(batch_id), self.store)

    @broker_errors()
    def submit_many(
        self,
        account_id: str,
        tickets: Sequence[TicketCreate | Mapping[str, Any]],
        refs: Sequence[str | None] | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        *,
        skip_invalid: bool = False,
    ) -> BatchHandle:
        """Queue many tickets in the bulk lane, behind interactive jobs.

        Every ticket is validated first; if any is invalid, nothing is queued and
        ``InvalidJob`` names each bad one by index (``tickets[3].priority.value: ...``);
        with ``skip_invalid`` the valid ones are queued and the handle's ``rejects`` say
        which were left out and why.
        Redis failing while the batch is stored raises and leaves none of it; once it is
        stored, the call returns even if its messages cannot be sent now (a warning is
        logged; a worker sends them after ``TICKETQ_REQUEUE_AFTER``).
        Pass ``idempotency_keys`` (your refs, say) to make re-running the same import safe;
        a None in ``refs`` or ``idempotency_keys`` gives that ticket none.
        """
        for name, values in (("refs", refs), ("idempotency_keys", idempotency_keys)):
            if values is not None and len(values) != len(tickets):
                raise InvalidJob(f"{name} has {len(values)} items for {len(tickets)} tickets")
        batch_id = uuid.uuid4().hex
        specs: list[JobSpec] = []
        positions: list[int] = []
        rejects: list[Rejected] = []
        for index, ticket in enumerate(tickets):
            try:
                specs.append(
                    self.validate(
                        account_id,
                        ticket,
                        ref=refs[index] if refs is not None else None,
                        idempotency_key=(
                            idempotency_keys[index] if idempotency_keys is not None else None
                        ),
                        batch_id=batch_id,
                    )
                )
                positions.append(index)
            except InvalidJob as exc:
                rejects.append(Rejected(index, str(exc)))
        if rejects and not skip_invalid:
            problems = [f"tickets[{r.index}]: {r.reason}" for r in rejects[:MAX_ERRORS]]
            raise InvalidJob(bounded(problems, len(rejects), " invalid tickets"))
        stored = self._store_batch(batch_id, account_id, specs, positions, rejected=len(rejects))
        self.send_stored(stored)
        return BatchHandle(batch_id, [s.job_id for s in stored], self.store, tuple(rejects))

    @broker_errors()
    def store_bulk(
        self, jobs: Sequence[JobSpec | NewJob], positions: Sequence[int]
    ) -> list[Stored]:
        """Store validated jobs in the bulk lane, all or none (``JobStore.create_many``).
        Stored whole, each with its outbox entry, they are accepted: ``send_stored`` sends
        them, and if it never does, a worker's scheduler does after requeue_after."""
        return self.store.create_many(jobs, "bulk", positions)

    def send_stored(self, stored: Sequence[Stored]) -> None:
        """Put the new jobs among those ``store_bulk`` stored on the queue. A send that
        fails is logged, not raised: the jobs are accepted, and a worker's scheduler sends
        them after requeue_after."""
        new = [Due(s.job_id, "bulk") for s in stored if s.is_new]
        dispatch_stored(self._app, self.store, new, self.settings.bulk_batch)

    def _store_batch(
        self,
        batch_id: str,
        account_id: str,
        specs: list[JobSpec],
        positions: list[int],
        *,
        rejected: int,
    ) -> list[Stored]:
        """Store a batch whole with its record (``ticketq batch``, ``Producer.batch``): the
        record first, so an accepted batch always has one, and dropped if the jobs could not
        be stored. Once they are, the counts are bookkeeping: failing to write them (Redis
        full) is logged, and the batch stands."""
        batches = Batches(self.store)
        batches.open(batch_id, at=time.time(), account_id=account_id, source=None)
        try:
            stored = self.store_bulk(specs, positions)
        except BrokerError:
            with suppress(redis.RedisError):
                batches.forget(batch_id)
            raise
        accepted = sum(s.is_new for s in stored)
        counts = {"accepted": accepted, "already_known": len(stored) - accepted}
        try:
            batches.count(batch_id, rows=len(specs) + rejected, rejected=rejected, **counts)
        except redis.RedisError as exc:
            log.warning("batch %s stored, but not its counts: %s", batch_id, exc)
        return stored

    @broker_errors()
    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    @broker_errors()
    def find(self, account_id: str, ref: str) -> JobRecord | None:
        return self.store.find(account_id, ref)

    def _send_interactive(self, job_ids: list[str]) -> None:
        jobs = [Due(job_id, "interactive") for job_id in job_ids]
        dispatch(self._app, self.store, jobs, self.settings.bulk_batch)


_default: Producer | None = None


def default_producer() -> Producer:
    global _default
    if _default is None:
        _default = Producer()
    return _default


def submit_many(
    account_id: str,
    tickets: Sequence[TicketCreate | Mapping[str, Any]],
    refs: Sequence[str | None] | None = None,
    idempotency_keys: Sequence[str | None] | None = None,
    *,
    skip_invalid: bool = False,
) -> BatchHandle:
    """Queue many tickets in the bulk lane with the process-wide settings."""
    return default_producer().submit_many(
        account_id, tickets, refs, idempotency_keys, skip_invalid=skip_invalid
    )


def submit(
    account_id: str,
    ticket: TicketCreate | Mapping[str, Any],
    ref: str | None = None,
    idempotency_key: str | None = None,
) -> JobHandle:
    """Queue one ticket for creation with the process-wide settings; see ``Producer.submit``."""
    return default_producer().submit(account_id, ticket, ref=ref, idempotency_key=idempotency_key)
