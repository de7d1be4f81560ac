"""Submit ticket-creation jobs: validate at the door, record the job, enqueue its id.

Validation happens here so bad input never reaches a queue, let alone the API: the caller
gets ``InvalidJob`` naming the field. Accepted jobs have a record before their message is
sent, so a worker never sees a message without a record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celery import Celery
from pydantic import ValidationError

from worker.celery_app import create_app
from worker.contract import JobRecord, JobSpec, TicketCreate
from worker.dispatch import dispatch
from worker.jobstore import Due, JobStore, Lane
from worker.settings import Settings, get_settings
from worker.validation import describe_validation_error


class InvalidJob(ValueError):
    """The job was refused before it was queued; the message names the offending field."""


class JobNotFound(LookupError):
    """No record for this job id (never submitted, or expired after its retention)."""


@dataclass(frozen=True)
class JobHandle:
    """What a producer keeps to follow a job; ``is_new`` is False for a repeated idempotency key."""

    job_id: str
    is_new: bool
    store: JobStore

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


class Producer:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.store = JobStore.from_settings(self.settings)
        self._app: Celery = create_app(self.settings)

    def submit(
        self,
        account_id: str,
        ticket: TicketCreate | Mapping[str, Any],
        ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobHandle:
        spec = self.validate(account_id, ticket, ref=ref, idempotency_key=idempotency_key)
        return self._enqueue(spec, "interactive")

    @staticmethod
    def validate(
        account_id: str,
        ticket: TicketCreate | Mapping[str, Any],
        *,
        ref: str | None = None,
        idempotency_key: str | None = None,
    ) -> JobSpec:
        fields: dict[str, Any] = {"account_id": account_id, "ticket": ticket}
        # Unset optional fields stay unset, so the stored spec holds only what was given.
        fields.update(
            {k: v for k, v in (("ref", ref), ("idempotency_key", idempotency_key)) if v is not None}
        )
        try:
            return JobSpec.model_validate(fields)
        except ValidationError as exc:
            raise InvalidJob(describe_validation_error(exc)) from None

    def get(self, job_id: str) -> JobRecord | None:
        return self.store.get(job_id)

    def find(self, account_id: str, ref: str) -> JobRecord | None:
        return self.store.find(account_id, ref)

    def _enqueue(self, spec: JobSpec, lane: Lane) -> JobHandle:
        created = self.store.create(spec, lane)
        if created.is_new:
            dispatch(self._app, self.store, [Due(created.job_id, lane)])
        return JobHandle(job_id=created.job_id, is_new=created.is_new, store=self.store)


_default: Producer | None = None


def default_producer() -> Producer:
    global _default
    if _default is None:
        _default = Producer()
    return _default


def submit(
    account_id: str,
    ticket: TicketCreate | Mapping[str, Any],
    ref: str | None = None,
    idempotency_key: str | None = None,
) -> JobHandle:
    """Queue one ticket for creation with the process-wide settings; see ``Producer.submit``."""
    return default_producer().submit(account_id, ticket, ref=ref, idempotency_key=idempotency_key)
