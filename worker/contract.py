"""The contract every part shares: what a ticket, a job and a job's outcome look like.

The create-ticket body mirrors StackOne's ``TicketingTicketCreateRequestDto``. The spec
declares no sizes; the limits here are ours, so that one bad producer cannot fill Redis
and so that bad input is refused at the door with a message naming the field.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_TITLE_CHARS = 1_000
MAX_CONTENT_ITEMS = 50
MAX_CONTENT_CHARS = 100_000
MAX_LIST_ITEMS = 100
MAX_ID_CHARS = 256
MAX_CUSTOM_FIELDS = 100
MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32  # containers nested in one ticket body, the body itself included
# Below json.loads's limit of 4,300 digits, so what the door accepts the worker can read.
MAX_INT_DIGITS = 4_000

Loc = tuple[str | int, ...]  # where a value sits in a job spec: ("ticket", "priority", ...)
# A free-form value (priority.source_value, a custom field's value) sits inside two
# containers of the body: the body itself, and priority or unified_custom_fields.
_FREE_VALUE_DEPTH = 2
_INT_LIMIT = 10**MAX_INT_DIGITS
_NOT_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)


def refusal(loc: Loc, kind: str, message: str) -> ValidationError:
    """A validation error at ``loc`` shaped like pydantic's own, so that every reader of a
    job reports it the same way (``worker.validation.describe_validation_error``)."""
    error = PydanticCustomError(kind, "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "JobSpec", [{"type": error, "loc": loc, "input": None}]
    )


def _is_unicode(text: str) -> bool:
    """False for a str that no UTF-8 text can hold: one with a lone surrogate (from a JSON
    escape such as ``"\\ud800"``, or a Python string); it could be neither stored nor sent."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _shown(key: str) -> str:
    """An object key as a path names it: a lone surrogate written as its escape, so the
    message naming it can be printed and stored."""
    return key.encode("utf-8", "backslashreplace").decode()


def _not_unicode(loc: Loc) -> ValidationError:
    return refusal(loc, "string_unicode", "not valid Unicode")


def _unicode(value: Any) -> Any:
    """Refuse a string field (or a list of strings) holding a lone surrogate by name, before
    pydantic's own check says "unable to parse raw data as a unicode string"."""
    if isinstance(value, str) and not _is_unicode(value):
        raise _not_unicode(())
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str) and not _is_unicode(item):
                raise _not_unicode((index,))
    return value


Unicode = BeforeValidator(_unicode)
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), Unicode]
# Sent as the x-account-id header: printable ASCII without spaces, or httpx cannot send it.
AccountId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[\x21-\x7e]+$"),
    Unicode,
]
IdList = Annotated[list[Identifier], Field(max_length=MAX_LIST_ITEMS)]
Text = Annotated[str, StringConstraints(max_length=MAX_CONTENT_CHARS), Unicode]


def _json_only(value: Any) -> Any:
    """A free-form value holds what JSON text can: objects with string keys, arrays,
    strings, finite numbers, booleans and null, nested at most ``MAX_DEPTH`` containers deep
    in the body, as ``load_json`` counts them in text. Walked without recursion, so no depth
    can crash it; NaN and Infinity are refused by name (pydantic would send them as null),
    and so is a string or key that is not valid Unicode (a lone surrogate)."""
    pending: list[tuple[Loc, Any]] = [((), value)]
    while pending:
        loc, item = pending.pop()
        if isinstance(item, dict | list | tuple):
            if _FREE_VALUE_DEPTH + 1 + len(loc) > MAX_DEPTH:
                raise refusal(loc, "json_depth", f"nested deeper than {MAX_DEPTH} levels")
            pending += reversed(list(_members(loc, item)))
        elif isinstance(item, str):
            if not _is_unicode(item):
                raise _not_unicode(loc)
        elif isinstance(item, float) and not math.isfinite(item):
            raise refusal(loc, "json_number", f"{_NOT_FINITE[str(item)]} is not a JSON number")
        elif isinstance(item, int) and abs(item) >= _INT_LIMIT:
            raise refusal(loc, "json_number", f"a number of more than {MAX_INT_DIGITS:,} digits")
        elif not isinstance(item, str | int | float | None):
            raise refusal(loc, "json_type", f"not a JSON value (a {type(item).__name__})")
    return value


def _members(loc: Loc, container: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> Any:
    """Each member of an object or array with its loc; an object's keys must be strings."""
    if not isinstance(container, dict):
        yield from (((*loc, index), item) for index, item in enumerate(container))
        return
    for key, item in container.items():
        if not isinstance(key, str):
            raise refusal(loc, "json_key", f"keys must be strings, not {type(key).__name__}")
        if not _is_unicode(key):
            raise _not_unicode((*loc, _shown(key)))
        yield (*loc, key), item


def _unicode_keys(fields: dict[str, Any]) -> dict[str, Any]:
    """Custom-field names that are not valid Unicode, refused by name (pydantic would send
    them with U+FFFD in place of a lone surrogate)."""
    for key in fields:
        if not _is_unicode(key):
            raise _not_unicode((_shown(key),))
    return fields


# A free-form value: JSON only, checked the same way as JSON text (see ``load_json``).
JsonValue = Annotated[Any, AfterValidator(_json_only)]


def load_json(text: str, at: Loc = ()) -> Any:
    """Parse JSON text as every reader of a job does (the CLI, the worker): nesting past
    ``MAX_DEPTH`` is refused before the parser can recurse (json.loads stops with a
    RecursionError near 1,000 levels, pydantic near 200), and every error is a
    ValidationError naming where. ``at`` is where the text sits in a job spec: () for a
    stored spec, ("ticket",) for a ticket body. NaN and Infinity parse, and the models
    refuse them by name, as from a Python mapping."""
    too_deep = _too_deep(text, at)
    if too_deep is not None:
        raise refusal(too_deep, "json_depth", f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise refusal(at, "json_invalid", f"not JSON ({where})") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise refusal(at, "json_invalid", f"not JSON ({exc})") from None


def _too_deep(text: str, at: Loc) -> Loc | None:
    """The loc of the first container in JSON text nested deeper than ``MAX_DEPTH`` (a
    container at loc ``("ticket", "priority")`` is at depth 2), read token by token
    without recursion; None when the text nests no deeper. Text that is not JSON may be
    misread here, but json.loads refuses it then within the depth read here."""
    if text.count("[") + text.count("{") + len(at) <= MAX_DEPTH:
        return None  # it cannot nest deeper than it opens: every job read back, at C speed
    path: list[str | int] = list(at)
    in_object: list[bool] = []  # per open container, innermost last
    key_next = False
    for token in _JSON_TOKEN.findall(text):
        if token in ("[", "{"):
            if len(path) > MAX_DEPTH:
                return tuple(path)
            in_object.append(token == "{")
            path.append(0)  # an array's first index; an object's key comes next
            key_next = token == "{"
        elif token in ("]", "}"):
            if in_object:
                in_object.pop()
                path.pop()
            key_next = False
        elif token == "," and in_object:
            key_next = in_object[-1]
            if not key_next:
                path[-1] = int(path[-1]) + 1
        elif key_next:
            path[-1] = _key(token)
            key_next = False
    return None


def _key(token: str) -> str:
    """An object key as json.loads reads it (the token as written if it does not parse)."""
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1]


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
    source_value: JsonValue = None


class Content(Strict):
    plain: Text | None = None
    html: Text | None = None


class TicketCreate(Strict):
    """The body of ``POST /unified/ticketing/tickets``; every field optional, as in the spec."""

    title: Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS), Unicode] | None = None
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
    component_ids: Annotated[Identifier | IdList, Unicode] | None = None
    collections: IdList | None = None
    unified_custom_fields: (
        Annotated[
            dict[str, JsonValue],
            Field(max_length=MAX_CUSTOM_FIELDS),
            AfterValidator(_unicode_keys),
        ]
        | None
    ) = None

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
    CANCELLED = "cancelled"  # by a person before it was sent; never sent

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


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


def moment(unix: float) -> datetime:
    """A Unix time as the aware UTC datetime JSON shows it (ISO 8601, ``...Z``)."""
    return datetime.fromtimestamp(unix, UTC)


# A time kept as Unix seconds (what the store holds and code compares), shown in JSON, by
# the CLI's ``--json`` and the web API alike, as ISO 8601 in UTC.
Timestamp = Annotated[float, PlainSerializer(moment, return_type=datetime, when_used="json")]


class JobError(BaseModel):
    kind: ErrorKind
    message: str
    status: int | None = None
    provider_errors: list[Any] | None = None


class Outcome(StrEnum):
    """What one request to StackOne made of its job."""

    SUCCEEDED = "succeeded"  # the ticket exists
    FAILED = "failed"  # the job ended without one (or is left to a person)
    AGAIN = "again"  # sent again in the same delivery, after a short wait
    RETRYING = "retrying"  # handed back to the due index, to be sent later


ATTEMPTS_KEPT = 10  # a job's record keeps its last requests, this many
MAX_ATTEMPT_ERROR_CHARS = 200  # StackOne's message, as one attempt of a job's history keeps it


class AttemptEntry(BaseModel):
    """One request of a job, as its record keeps it (the last ``ATTEMPTS_KEPT``): when it
    was sent, what came back, how fast, what the job became. Stored as one compact JSON
    line (``None`` fields left out); the message is StackOne's, cut short."""

    at: Timestamp  # when the request went out
    status: int | None = None  # None: no HTTP answer (a network failure, a timeout)
    latency_ms: float
    outcome: Outcome
    kind: ErrorKind | None = None  # None: the ticket was created
    error: str | None = None

    def line(self) -> str:
        """The entry as the record stores it: compact, its time in Unix seconds."""
        return json.dumps(self.model_dump(exclude_none=True), separators=(",", ":"))


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
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None = None
    next_attempt_at: Timestamp | None = None
    uncertain_since: Timestamp | None = None  # an attempt since then may have made the ticket
    # Its last requests, oldest first; a job that succeeded at its first request keeps none.
    attempt_log: list[AttemptEntry] = []

    def public(self) -> dict[str, Any]:
        """The stable JSON shape of ``ticketq status --json``, ``find --json`` and the web
        API's jobs: times as ISO 8601 in UTC."""
        return self.model_dump(mode="json")
