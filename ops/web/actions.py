"""Admin actions under ``/v1``: replay and purge dead letters, cancel jobs or a batch.

Each does what its ``ticketq`` command does (``dead replay``, ``dead purge``, ``cancel``),
through the same store calls, and answers a typed result: how many jobs met each outcome,
and the jobs it could not act on, by id and why. Redis failing part way answers 503 saying
how far it got; running the same request again does the rest (every step is idempotent).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Literal

import redis
from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from ops.web.api import ERRORS, NOT_FOUND, TOO_LARGE, Id, job_store
from ops.web.auth import Principal, require
from ops.web.body import CappedBody
from ops.web.errors import ApiError, redis_failure
from worker.contract import ErrorKind, Identifier, Strict
from worker.queue.dispatch import replay_failed
from worker.settings import Scope
from worker.store.batches import Batches
from worker.store.deadletters import WHY, DeadLetters, Report, Selection
from worker.store.jobs import CancelCode, Cancelled, DeadLetterCode, JobStore

ACTION_CAP = 1024 * 1024
MAX_JOB_IDS = 10_000  # ids one request names
CANCEL_PAGE = 500  # jobs given to cancel_many at once
CODE_OF = {why: code for code, why in WHY.items()}

JobIds = Annotated[list[Identifier], Field(min_length=1, max_length=MAX_JOB_IDS)]


class DeadLetterRequest(Strict):
    """Failed jobs by id, or with ``all`` every failed job the filters admit. A rule broken
    is a PydanticCustomError, so the 422 says it without pydantic's "Value error" prefix."""

    job_ids: JobIds | None = None
    all: bool = False
    account_id: Identifier | None = Field(None, description="With all: this account's only.")
    reason: ErrorKind | None = Field(None, description="With all: errors of this kind only.")

    @model_validator(mode="after")
    def _ids_or_all(self) -> DeadLetterRequest:
        """The CLI's rule: ids, or ``all`` with filters; never both, never neither."""
        if self.all and self.job_ids is not None:
            raise PydanticCustomError("selection", "give job_ids or all, not both")
        if not self.all and self.job_ids is None:
            raise PydanticCustomError("selection", "give job_ids, or all: true")
        if not self.all and self.selection() != Selection():
            raise PydanticCustomError(
                "selection", "account_id, reason and failed_before select jobs for all only"
            )
        return self

    def selection(self) -> Selection:
        return Selection(account_id=self.account_id, reason=self.reason)


class ReplayRequest(DeadLetterRequest):
    send_anyway: bool = Field(
        False,
        description="You checked the customer's tool and the ticket does not exist: send "
        "without reconciling. With job_ids only.",
    )

    @model_validator(mode="after")
    def _anyway_by_id(self) -> ReplayRequest:
        """A person checks particular jobs' candidates; a blanket send-anyway would risk a
        duplicate for every job whose ticket may exist."""
        if self.send_anyway and self.all:
            raise PydanticCustomError(
                "selection", "send_anyway takes the job_ids you checked, not all"
            )
        return self


class PurgeRequest(DeadLetterRequest):
    failed_before: AwareDatetime | None = Field(
        None, description="With all: failed before this (with its time zone)."
    )

    def selection(self) -> Selection:
        before = None if self.failed_before is None else self.failed_before.timestamp()
        return Selection(account_id=self.account_id, reason=self.reason, failed_before=before)


class CancelRequest(Strict):
    job_ids: JobIds


class SkippedJob(BaseModel):
    job_id: str
    why: DeadLetterCode = Field(description="missing, not_failed or has_ticket.")
    detail: str | None = Field(None, description="Its state, or its ticket id.")


class DeadLetterResult(BaseModel):
    action: Literal["replay", "purge"]
    done: int = Field(description="Jobs replayed (queued again) or purged.")
    skipped: dict[DeadLetterCode, int] = Field(description="Jobs left as they were, by why.")
    skipped_jobs: list[SkippedJob]
    sent: bool = Field(
        True,
        description="False: the replayed jobs are queued but could not be sent now; a "
        "worker sends them after TICKETQ_REQUEUE_AFTER.",
    )


class CancelledJob(BaseModel):
    job_id: str
    outcome: CancelCode
    detail: str | None = Field(None, description="final: its state; other_batch: the batch.")


class CancelResult(BaseModel):
    counts: dict[CancelCode, int] = Field(
        description="Jobs by outcome: ok (cancelled), in_flight (its attempt finishes; "
        "cancelled then unless it made the ticket), final (already), missing, other_batch "
        "(an earlier batch's job: cancel it by id)."
    )
    final: dict[str, int] = Field(description="The already final jobs, by state.")
    jobs: list[CancelledJob] = Field(description="Every job not cancelled nor final.")


REPLAY_BODY = CappedBody(ReplayRequest, ACTION_CAP, "Failed jobs to send again.")
PURGE_BODY = CappedBody(PurgeRequest, ACTION_CAP, "Failed jobs to delete for good.")
CANCEL_BODY = CappedBody(CancelRequest, ACTION_CAP, "Jobs to cancel, by id.")
router = APIRouter(prefix="/v1", responses=ERRORS)
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
Store = Annotated[JobStore, Depends(job_store)]


@router.post(
    "/dead-letters/replay",
    responses=TOO_LARGE,
    summary="Send failed jobs again",
    description="Attempts reset; a job whose ticket may exist is reconciled first (unless "
    "send_anyway); a job with a ticket is refused.",
    openapi_extra=REPLAY_BODY.openapi,
)
def replay(
    _: Admin, chosen: Annotated[ReplayRequest, Depends(REPLAY_BODY)], store: Store, request: Request
) -> DeadLetterResult:
    dead = DeadLetters(store)
    job_ids = _chosen(dead, chosen)
    celery = request.app.state.celery
    settings = request.app.state.settings
    report = replay_failed(
        celery, dead, job_ids, settings.bulk_batch, reconcile=not chosen.send_anyway
    )
    return _result("replay", report)


@router.post(
    "/dead-letters/purge",
    responses=TOO_LARGE,
    summary="Delete failed jobs",
    description="Their records and the ref and idempotency keys that still name them.",
    openapi_extra=PURGE_BODY.openapi,
)
def purge(
    _: Admin, chosen: Annotated[PurgeRequest, Depends(PURGE_BODY)], store: Store
) -> DeadLetterResult:
    dead = DeadLetters(store)
    return _result("purge", dead.purge(_chosen(dead, chosen)))


def _chosen(dead: DeadLetters, chosen: DeadLetterRequest) -> list[str]:
    return dead.matching(chosen.selection()) if chosen.all else list(chosen.job_ids or ())


def part_way(action: str, done: int, exc: Exception) -> ApiError:
    """Redis failed after ``done`` jobs were acted on: the 503 says so (every step is
    idempotent, so the same request again does the rest)."""
    failure = redis_failure(exc)
    if done == 0:
        return failure
    return ApiError(
        503,
        f"{action} stopped part way: {done:,} jobs done, then Redis failed; send the same "
        "request again for the rest",
        failure.headers,
    )


def _result(action: Literal["replay", "purge"], report: Report) -> DeadLetterResult:
    """The report as counts and skipped jobs; 503 saying how far it got if Redis failed."""
    if report.interrupted is not None:
        raise part_way(action, len(report.done) + len(report.skipped), report.interrupted)
    skipped = [
        SkippedJob(job_id=s.job_id, why=CODE_OF[s.why], detail=s.detail or None)
        for s in report.skipped
    ]
    return DeadLetterResult(
        action=action,
        done=len(report.done),
        skipped=dict(Counter(job.why for job in skipped)),
        skipped_jobs=skipped,
        sent=report.unsent is None,
    )


@router.post(
    "/jobs/cancel",
    responses=TOO_LARGE,
    summary="Cancel jobs not yet sent",
    description="Queued or retrying jobs end cancelled and are never sent; a job in flight "
    "finishes its attempt (and is cancelled then unless it made the ticket); a final job "
    "stays as it is.",
    openapi_extra=CANCEL_BODY.openapi,
)
def cancel_jobs(
    _: Admin, chosen: Annotated[CancelRequest, Depends(CANCEL_BODY)], store: Store
) -> CancelResult:
    return _cancel(store, [chosen.job_ids])


@router.post(
    "/batches/{batch_id}/cancel",
    summary="Cancel a batch's jobs not yet sent",
    description="As /v1/jobs/cancel for every job of the batch, page by page; jobs an "
    "earlier batch made (rows an import run again found known) are left to that batch.",
    responses=NOT_FOUND,
)
def cancel_batch(_: Admin, batch_id: Id, store: Store) -> CancelResult:
    batches = Batches(store)
    if batches.info(batch_id) is None:
        raise ApiError(404, f"no batch {batch_id}")
    pages = ([job_id for _, job_id in page] for page in batches.pages(batch_id))
    return _cancel(store, pages, of_batch=batch_id)


def _cancel(
    store: JobStore, pages: Iterable[list[str]], of_batch: str | None = None
) -> CancelResult:
    """Cancel page by page; 503 saying how far it got if Redis fails part way."""
    answers: list[Cancelled] = []
    try:
        for page in pages:
            for start in range(0, len(page), CANCEL_PAGE):
                answers += store.cancel_many(page[start : start + CANCEL_PAGE], of_batch=of_batch)
    except redis.RedisError as exc:
        raise part_way("cancel", len(answers), exc) from None
    final = Counter(a.detail for a in answers if a.code is CancelCode.FINAL)
    return CancelResult(
        counts=dict(Counter(a.code for a in answers)),
        final=dict(final),
        jobs=[
            CancelledJob(job_id=a.job_id, outcome=a.code, detail=a.detail or None)
            for a in answers
            if a.code not in (CancelCode.OK, CancelCode.FINAL)
        ],
    )
