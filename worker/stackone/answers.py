"""What StackOne's ticketing API answers, as types: the client returns them, the delivery
(reconcile, decisions, retry) reads them.

They live apart from the HTTP client so that the delivery's policy can read an answer
without importing the client, and the client can build one without importing any policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.contract import ErrorKind, JobError, TicketIds


@dataclass(frozen=True)
class TicketCreated:
    """The ticket exists; ``ticket`` holds the ids callers correlate on."""

    ticket: TicketIds
    status: int = 201  # the 2xx it came with (StackOne documents 201), for the log


@dataclass(frozen=True)
class Failure:
    """An attempt that did not (or may not have) created a ticket.

    ``retry_after`` is the ``Retry-After`` header exactly as StackOne sent it (seconds or an
    HTTP date), unparsed: a date means a wait relative to the moment it is read, which is
    the decision's, so the retry policy parses it then (``worker.delivery.retry``).
    """

    kind: ErrorKind
    message: str
    status: int | None = None
    provider_errors: list[Any] | None = None
    retry_after: str | None = None

    def to_error(self) -> JobError:
        """The job record's view; ``retry_after`` has been spent on scheduling by then."""
        return JobError(
            kind=self.kind,
            message=self.message,
            status=self.status,
            provider_errors=self.provider_errors,
        )


Answer = TicketCreated | Failure


@dataclass(frozen=True)
class TicketPage:
    """One page of an account's tickets, and the cursor of the next (None: the last)."""

    tickets: list[dict[str, Any]]
    next: str | None


def kind_for_status(status: int) -> ErrorKind:
    """What a non-2xx status says about the job, per StackOne's documented meanings.

    401/403 condemn our key, not the job. 408 means StackOne gave up after 60 s while the
    provider may still have created the ticket. 501 (not supported by this provider) will
    not change on a retry, unlike every other 5xx. Any other status, including an
    unexpected 1xx or 3xx, is a refusal of this request as sent.
    """
    if status in (401, 403):
        return ErrorKind.BAD_CREDENTIALS
    if status == 408:
        return ErrorKind.AMBIGUOUS
    if status == 429 or (500 <= status < 600 and status != 501):
        return ErrorKind.RETRYABLE
    return ErrorKind.TERMINAL


MAX_ID_CHARS = 500  # far above any provider's ids; a longer "id" is no id to store


def as_id(value: Any) -> str | None:
    """Ids are strings in the spec; a provider's numeric id is kept as its decimal text."""
    if isinstance(value, str):
        return value if 0 < len(value) <= MAX_ID_CHARS else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
