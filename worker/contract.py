"""The contract every part shares: what a ticket, a job and a job's outcome look like.

The create-ticket body mirrors StackOne's ``TicketingTicketCreateRequestDto``. The spec
declares no sizes; the limits here are ours, so that one bad producer cannot fill Redis
and so that bad input is refused at the door with a message naming the field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_TITLE_CHARS = 1_000
MAX_CONTENT_ITEMS = 50
MAX_CONTENT_CHARS = 100_000
MAX_LIST_ITEMS = 100
MAX_ID_CHARS = 256
MAX_CUSTOM_FIELDS = 100
MAX_BODY_BYTES = 256 * 1024

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
# Sent as the x-account-id header: printable ASCII without spaces, or httpx cannot send it.
AccountId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[\x21-\x7e]+$")
]
IdList = Annotated[list[Identifier], Field(max_length=MAX_LIST_ITEMS)]
Text = Annotated[str, StringConstraints(max_length=MAX_CONTENT_CHARS)]


class Strict(BaseModel):
    """Unknown fields are an error that names them, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorityValue(StrEnum):
    LOWEST = "lowest"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    HIGHEST = "highest"
    UNMAPPED_VALUE = "unmapped_value"


class Priority(Strict):
    id: Identifier | None = None
    value: PriorityValue | None = None
    source_value: Any = None


class Content(Strict):
    plain: Text | None = None
    html: Text | None = None


class TicketCreate(Strict):
    """The body of ``POST /unified/ticketing/tickets``; every field optional, as in the spec."""

    title: Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS)] | None = None
    creator_id: Identifier | None = None
    reporters: IdList | None = None
    assignees: IdList | None = None
    content: Annotated[list[Content], Field(max_length=MAX_CONTENT_ITEMS)] | None = None
    parent_id: Identifier | None = None
    priority: Priority | None = None
    tags: IdList | None = None
    type: Identifier | None = None
    organization_id: Identifier | None = None
    project_id: Identifier | None = None
    # The spec says string, the docs' example a list: accept both, send what was given.
    component_ids: Identifier | IdList | None = None
    collections: IdList | None = None
    unified_custom_fields: Annotated[dict[str, Any], Field(max_length=MAX_CUSTOM_FIELDS)] | None = (
        None
    )

    @model_validator(mode="after")
    def _body_fits(self) -> TicketCreate:
        size = len(self.to_json().encode())
        if size > MAX_BODY_BYTES:
            raise ValueError(f"ticket body is {size} bytes; the limit is {MAX_BODY_BYTES}")
        return self

    def to_json(self) -> str:
        """The exact JSON sent to StackOne: only the fields the producer set."""
        return self.model_dump_json(exclude_unset=True)


class JobSpec(Strict):
    """What a producer asks for: one ticket in one linked account."""

    account_id: AccountId
    ticket: TicketCreate
    ref: Identifier | None = None
    idempotency_key: Identifier | None = None
    batch_id: Identifier | None = None


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


class ErrorKind(StrEnum):
    """Why an attempt did not create a ticket; decides what happens next."""

    RETRYABLE = "retryable"  # transient: connection error, 429, 5xx
    TERMINAL = "terminal"  # the API refused the job itself: 400, 404, 409, 412, 422, 501
    AMBIGUOUS = "ambiguous"  # the ticket may exist: 408, timeout after sending
    BAD_CREDENTIALS = "bad_credentials"  # 401/403: our key, not the job
    INVALID = "invalid"  # the job never passed our own validation
    EXHAUSTED = "exhausted"  # retryable errors until max attempts ran out
    UNCERTAIN = "uncertain"  # parked after an ambiguous outcome, for a person to decide
    POISON = "poison"  # the worker was lost every time it attempted this job


class JobError(BaseModel):
    kind: ErrorKind
    message: str
    status: int | None = None
    provider_errors: list[Any] | None = None


class TicketIds(BaseModel):
    """StackOne's unified ``id`` and the provider's ``remote_id``: what callers correlate on."""

    id: str
    remote_id: str | None = None


class JobRecord(BaseModel):
    """One job as the job store holds it; ``--json`` output and ``status`` read this."""

    job_id: str
    state: JobState
    account_id: str
    ref: str | None = None
    idempotency_key: str | None = None
    batch_id: str | None = None
    lane: str = "interactive"
    attempts: int = 0
    replays: int = 0  # times a person replayed it from the dead letters
    ticket: TicketIds | None = None
    error: JobError | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    next_attempt_at: float | None = None
    uncertain_since: float | None = None  # an attempt since then may have made the ticket

    def public(self) -> dict[str, Any]:
        """The stable JSON shape of ``ticketq status --json`` and ``find --json``."""
        return self.model_dump(mode="json")
