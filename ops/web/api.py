"""The JSON API under ``/v1``: intake (write scope) and reads (read scope).

Intake goes through the app's one ``Producer``, so a ticket posted over HTTP is validated,
stored and queued exactly as ``producers.submit`` does it: an ``Idempotency-Key`` names the
job as ``submit``'s ``idempotency_key`` does (same key and account: the same job, one
ticket), and a batch is ``submit_many``: taken whole or not at all. Reads answer the shapes
the CLI's ``--json`` prints (``JobRecord.public``, ``BatchStatus``), times as ISO 8601.
Handlers are plain functions: FastAPI runs them on its thread pool, beside the sync Redis
client.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field

from ops.web.auth import Principal, require
from ops.web.body import CappedBody, size_text
from ops.web.errors import ApiError, ErrorBody
from producers.client import InvalidJob, Producer
from worker.contract import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    AccountId,
    Identifier,
    JobRecord,
    JobState,
    Strict,
    TicketCreate,
)
from worker.settings import Scope
from worker.store.batches import Batches, BatchStatus
from worker.store.jobs import JobStore
from worker.store.listing import JobQuery, Listing, Unserved
from worker.store.stats import Snapshot, Stats

TICKET_CAP = 512 * 1024  # one ticket's request: the 256 KiB body, escapes and whitespace
BATCH_CAP = 8 * 1024 * 1024  # one batch's request
MAX_BATCH_TICKETS = 1_000
MAX_PAGE = 500  # jobs a listing page holds at most
# Past any index Redis holds (2**32 entries), yet far from the 64-bit indexes Redis
# refuses (a 503 then, as if Redis had failed), and exact in any JSON reader.
MAX_CURSOR = 2**53 - 1

Id = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
Filter = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_CHARS)]
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in (
        (401, "No token, or one not configured."),
        (403, "The token's scope does not allow this."),
        (422, "Invalid input; the message names each field."),
        (503, "Redis cannot be reached or refused; nothing was done."),
    )
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "None."}}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The body is over the endpoint's cap."}
}


class TicketIntake(Strict):
    """One ticket to create in a linked account."""

    account_id: AccountId
    ticket: TicketCreate
    ref: Identifier | None = Field(None, description="Your reference, to find the job later.")


class BatchTicket(Strict):
    """One ticket of a batch."""

    ticket: TicketCreate
    ref: Identifier | None = None
    idempotency_key: Identifier | None = Field(
        None, description="Given again (same account), names the same job: one ticket."
    )


class BatchIntake(Strict):
    """Tickets for one linked account, queued together in the bulk lane."""

    account_id: AccountId
    tickets: Annotated[list[BatchTicket], Field(min_length=1, max_length=MAX_BATCH_TICKETS)]


class Accepted(BaseModel):
    job_id: str
    is_new: bool = Field(
        description="False: the Idempotency-Key named a job already, and this is that job."
    )


class BatchAccepted(BaseModel):
    batch_id: str
    job_ids: list[str] = Field(description="Every ticket's job, in the order given.")


class JobPage(BaseModel):
    jobs: list[JobRecord]
    next: str | None = Field(
        description="The next page's path and query; null once the listing is read out. A "
        "page may hold fewer jobs than the limit and still have a next one."
    )


TICKET_BODY = CappedBody(
    TicketIntake, TICKET_CAP, f"One ticket (its body at most {size_text(MAX_BODY_BYTES)})."
)
BATCH_BODY = CappedBody(
    BatchIntake, BATCH_CAP, f"A batch of 1 to {MAX_BATCH_TICKETS:,} tickets for one account."
)

router = APIRouter(prefix="/v1", responses=ERRORS)
Writer = Annotated[Principal, Depends(require(Scope.WRITE))]
Reader = Annotated[Principal, Depends(require(Scope.READ))]


def producer(request: Request) -> Producer:
    """The app's one producer (made and closed by the app's lifespan)."""
    made: Producer = request.app.state.producer
    return made


def job_store(request: Request) -> JobStore:
    return producer(request).store


Producing = Annotated[Producer, Depends(producer)]
Store = Annotated[JobStore, Depends(job_store)]


@router.post(
    "/tickets",
    status_code=202,
    summary="Queue one ticket",
    description="Validated, stored and queued in the interactive lane; answers once it is "
    f"stored. The request is at most {size_text(TICKET_CAP)}. An `Idempotency-Key` header "
    "names the job: the same key again (same account) answers the same job (`is_new` "
    "false), and one ticket is made.",
    responses=TOO_LARGE,
    openapi_extra=TICKET_BODY.openapi,
)
def post_ticket(
    _: Writer,
    intake: Annotated[TicketIntake, Depends(TICKET_BODY)],
    sender: Producing,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=MAX_ID_CHARS),
    ] = None,
) -> Accepted:
    try:
        handle = sender.submit(
            intake.account_id,
            intake.ticket,
            ref=intake.ref,
            idempotency_key=utf8_header("Idempotency-Key", one_header(request, idempotency_key)),
        )
    except InvalidJob as exc:
        raise ApiError(422, str(exc)) from None
    response.headers["Location"] = f"/v1/jobs/{handle.job_id}"
    return Accepted(job_id=handle.job_id, is_new=handle.is_new)


@router.post(
    "/batches",
    status_code=202,
    summary="Queue a batch of tickets",
    description="Every ticket is validated first: one invalid refuses the batch (422 naming "
    "`tickets[i].field`), and if Redis cannot store all of it, none of it stays. At most "
    f"{MAX_BATCH_TICKETS:,} tickets and {size_text(BATCH_CAP)}. Queued in the bulk lane, "
    "behind interactive jobs; a ticket whose idempotency key names a job already is that "
    "job.",
    responses=TOO_LARGE,
    openapi_extra=BATCH_BODY.openapi,
)
def post_batch(
    _: Writer,
    intake: Annotated[BatchIntake, Depends(BATCH_BODY)],
    sender: Producing,
    response: Response,
) -> BatchAccepted:
    repeated = repeated_key(intake.tickets)
    if repeated is not None:
        raise ApiError(422, repeated)
    try:
        batch = sender.submit_many(
            intake.account_id,
            [item.ticket for item in intake.tickets],
            refs=[item.ref for item in intake.tickets],
            idempotency_keys=[item.idempotency_key for item in intake.tickets],
        )
    except InvalidJob as exc:
        raise ApiError(422, str(exc)) from None
    response.headers["Location"] = f"/v1/batches/{batch.batch_id}"
    return BatchAccepted(batch_id=batch.batch_id, job_ids=batch.job_ids)


def one_header(request: Request, value: str | None) -> str | None:
    """The ``Idempotency-Key``, given once: of two, the first named the job silently, and
    a client that meant the other got another job's answer."""
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise ApiError(422, "Idempotency-Key: given more than once")
    return value


def utf8_header(name: str, value: str | None) -> str | None:
    """A header's value as the UTF-8 text its bytes are: Starlette reads header bytes as
    Latin-1, so ``é`` would name another job than the same key in a JSON body."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, f"{name}: not UTF-8 text") from None


def repeated_key(tickets: list[BatchTicket]) -> str | None:
    """The first ticket giving an idempotency key an earlier one gave: it would silently
    become that ticket's job, and its own ticket never be made."""
    first: dict[str, int] = {}
    for index, item in enumerate(tickets):
        key = item.idempotency_key
        if key is not None and first.setdefault(key, index) != index:
            return f"tickets[{index}].idempotency_key: tickets[{first[key]}] gave it already"
    return None


@router.get("/jobs/{job_id}", summary="One job", responses=NOT_FOUND)
def get_job(_: Reader, job_id: Id, store: Store) -> JobRecord:
    record = store.get(job_id)
    if record is None:
        raise ApiError(404, f"no job {job_id}")
    return record


@router.get(
    "/jobs",
    summary="Jobs by filter, a page at a time",
    description="Served by an index: `batch_id` (a batch's jobs in input order, with any "
    "other filter), `account_id` with `ref` (the latest job with that ref), or `state` "
    "`failed` (most recently failed first) or `queued`, `running`, `retrying` (soonest due "
    "first), each with `account_id` if you like. Anything else (all succeeded jobs, an "
    "account's jobs) is refused with 422 saying what to give. Follow `next` for more.",
)
def list_jobs(
    _: Reader,
    store: Store,
    request: Request,
    account_id: Filter = None,
    ref: Filter = None,
    state: JobState | None = None,
    batch_id: Filter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[int, Query(ge=0, le=MAX_CURSOR, description="From `next`; 0 starts.")] = 0,
) -> JobPage:
    query = JobQuery(account_id=account_id, ref=ref, state=state, batch_id=batch_id)
    try:
        page = Listing(store).page(query, cursor, limit)
    except Unserved as exc:
        raise ApiError(422, str(exc)) from None
    following = None
    if page.next_cursor is not None:
        given = {name: value for name, value in request.query_params.items() if name != "cursor"}
        following = f"{request.url.path}?{urlencode({**given, 'cursor': page.next_cursor})}"
    return JobPage(jobs=page.jobs, next=following)


@router.get("/batches/{batch_id}", summary="A batch and its progress", responses=NOT_FOUND)
def get_batch(_: Reader, batch_id: Id, store: Store) -> BatchStatus:
    summary = Batches(store).summary(batch_id, time.time())
    if summary is None:
        raise ApiError(404, f"no batch {batch_id}")
    return summary.status()


@router.get(
    "/stats",
    summary="The fleet's numbers",
    description="What the dashboard and `ticketq stats --json` show: jobs per lane and state, "
    "queue depth, the due index, throughput over the last hour, the rate limit's use, the "
    "API keys' health (by fingerprint) and the workers alive; times as ISO 8601.",
)
def get_stats(_: Reader, request: Request) -> Snapshot:
    return Stats(request.app.state.redis, request.app.state.settings).snapshot(time.time())
