"""The ops dashboard at ``/``: the fleet at a glance, batches, failures, a job's page,
dead letters with replay, and search, rendered on the server.

Each page's live part is also served alone under ``/parts/``; the page's script fetches
it every two seconds and swaps it in, so numbers and progress bars move without a
reload. Reading needs the read scope; replay and cancel need admin (the buttons are shown
to admins only, and the server checks the scope whatever was shown).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from ops.web import signin, views
from ops.web.html import (
    PageRoute,
    Refused,
    Viewer,
    Visitor,
    actor,
    redirect,
    render,
    settings_of,
    store_of,
)
from worker.contract import ATTEMPTS_KEPT, ErrorKind, JobRecord
from worker.queue.dispatch import replay_failed
from worker.settings import Scope
from worker.store.batches import Batches, BatchInfo, Progress
from worker.store.deadletters import DeadLetters, Selection
from worker.store.jobs import CancelCode
from worker.store.stats import Stats

RECENT_BATCHES = 6
RECENT_FAILURES = 8
DEAD_PAGE = 100
BATCH_ROWS = 100
STATIC = Path(__file__).parent / "static"

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Admin = Annotated[Visitor, Depends(actor(Scope.ADMIN))]

# What an action did, by the code its redirect carries (never text from the request).
NOTICES = {
    "replayed": "Replayed: the job is queued again (one whose ticket may exist is "
    "reconciled before it is sent).",
    "replayed-unsent": "Replayed and queued, but it could not be sent now: a worker "
    "sends it after TICKETQ_REQUEUE_AFTER.",
    "not-failed": "Not replayed: the job is not failed.",
    "has-ticket": "Not replayed: the job has a ticket already.",
    "cancelled": "Cancelled: it will not be sent.",
    "in-flight": "In flight: its attempt finishes; it is cancelled then unless it made the ticket.",
    "final": "Not cancelled: the job is final already.",
    "missing": "No such job.",
}
_SKIPPED = {"not found": "missing", "not failed": "not-failed", "has a ticket": "has-ticket"}
_CANCELLED = {
    CancelCode.OK: "cancelled",
    CancelCode.IN_FLIGHT: "in-flight",
    CancelCode.FINAL: "final",
    CancelCode.MISSING: "missing",
    CancelCode.OTHER_BATCH: "final",  # not asked of a single job
}


def install(app: FastAPI) -> None:
    """The dashboard's pages, its sign-in and its static files, on ``app``."""
    app.state.progress = ProgressCache()
    app.include_router(router)
    app.include_router(signin.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@dataclass(frozen=True)
class BatchLine:
    """A batch as the dashboard lists it: its record, where its jobs stand, its bar."""

    info: BatchInfo
    progress: Progress
    bar: list[views.Segment]


class ProgressCache:
    """Batches' progress, read at most once per ``views.reread_after`` in this process,
    whoever is looking: ``Batches.progress`` reads every job of a batch, and each open
    dashboard asks every two seconds."""

    KEPT = 100  # batches remembered; past that, those due for a read again are forgotten

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._found: dict[str, tuple[float, Progress]] = {}
        self._lock = threading.Lock()

    def get(self, batches: Batches, batch_id: str) -> Progress:
        with self._lock:
            until, progress = self._found.get(batch_id, (0.0, None))
        started = self._clock()
        if progress is not None and started < until:
            return progress
        progress = batches.progress(batch_id)
        done = self._clock()
        with self._lock:
            if len(self._found) >= self.KEPT:
                self._found = {b: kept for b, kept in self._found.items() if done < kept[0]}
            self._found[batch_id] = (done + views.reread_after(progress, done - started), progress)
        return progress


def _batch_line(request: Request, batches: Batches, info: BatchInfo) -> BatchLine:
    cache: ProgressCache = request.app.state.progress
    progress = cache.get(batches, info.batch_id)
    return BatchLine(info, progress, views.segments(progress.counts))


def _overview(request: Request) -> dict[str, Any]:
    now = time.time()
    store = store_of(request)
    snapshot = Stats(request.app.state.redis, settings_of(request)).snapshot(now)
    batches = Batches(store)
    return {
        "now": now,
        "snap": snapshot,
        "banners": views.banners(snapshot),
        "table": views.state_table(snapshot.jobs),
        "chart": views.chart(snapshot.throughput),
        "batches": [_batch_line(request, batches, info) for info in batches.recent(RECENT_BATCHES)],
        "failures": DeadLetters(store).recent(limit=RECENT_FAILURES),
    }


@router.get("/")
def overview(request: Request, who: Viewer) -> Response:
    return render(request, "overview.html", who, **_overview(request))


@router.get("/parts/overview")
def overview_part(request: Request, who: Viewer) -> Response:
    return render(request, "parts/overview.html", who, **_overview(request))


def _job(request: Request, job_id: str) -> dict[str, Any]:
    record = store_of(request).get(job_id)
    if record is None:
        raise Refused(404, f"No job {job_id}: it never existed, expired or was purged.")
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return {"now": time.time(), "job": record, "notice": notice, "kept": ATTEMPTS_KEPT}


@router.get("/jobs/{job_id}")
def job_page(request: Request, who: Viewer, job_id: str) -> Response:
    return render(request, "job.html", who, **_job(request, job_id))


@router.get("/parts/jobs/{job_id}")
def job_part(request: Request, who: Viewer, job_id: str) -> Response:
    return render(request, "parts/job.html", who, **_job(request, job_id))


def _job_url(job_id: str, notice: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}?notice={notice}"


@router.post("/jobs/{job_id}/replay")
def replay(request: Request, who: Admin, job_id: str) -> Response:
    """A failed job sent again, as ``ticketq dead replay`` does (reconciling first)."""
    store = store_of(request)
    report = replay_failed(
        request.app.state.celery, DeadLetters(store), [job_id], settings_of(request).bulk_batch
    )
    if report.interrupted is not None:
        raise report.interrupted
    if report.skipped:
        return redirect(_job_url(job_id, _SKIPPED[report.skipped[0].why]))
    return redirect(_job_url(job_id, "replayed-unsent" if report.unsent else "replayed"))


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, who: Admin, job_id: str) -> Response:
    """A job not yet sent, cancelled (one in flight is cancelled when its attempt ends)."""
    answer = store_of(request).cancel_many([job_id])[0]
    return redirect(_job_url(job_id, _CANCELLED[answer.code]))


def _batch(request: Request, batch_id: str) -> dict[str, Any]:
    batches = Batches(store_of(request))
    info = batches.info(batch_id)
    if info is None:
        raise Refused(404, f"No batch {batch_id}: it never existed or has expired.")
    first = next(batches.pages(batch_id), [])[:BATCH_ROWS]
    return {
        "now": time.time(),
        "batch": _batch_line(request, batches, info),
        "rows": batches.rows(first),
        "shown": BATCH_ROWS,
    }


@router.get("/batches/{batch_id}")
def batch_page(request: Request, who: Viewer, batch_id: str) -> Response:
    return render(request, "batch.html", who, **_batch(request, batch_id))


@router.get("/parts/batches/{batch_id}")
def batch_part(request: Request, who: Viewer, batch_id: str) -> Response:
    return render(request, "parts/batch.html", who, **_batch(request, batch_id))


def _dead(request: Request, account: str, reason: str) -> dict[str, Any]:
    kind = ErrorKind(reason) if reason in set(ErrorKind) else None
    selection = Selection(account_id=account or None, reason=kind)
    records: list[JobRecord] = DeadLetters(store_of(request)).recent(selection, DEAD_PAGE)
    return {
        "now": time.time(),
        "records": records,
        "account": account,
        "reason": kind,
        "reasons": list(ErrorKind),
        "limit": DEAD_PAGE,
    }


@router.get("/dead")
def dead_page(request: Request, who: Viewer, account: str = "", reason: str = "") -> Response:
    return render(request, "dead.html", who, **_dead(request, account, reason))


@router.get("/parts/dead")
def dead_part(request: Request, who: Viewer, account: str = "", reason: str = "") -> Response:
    return render(request, "parts/dead.html", who, **_dead(request, account, reason))


@router.get("/search")
def search(request: Request, who: Viewer, q: str = "", account: str = "") -> Response:
    """A job by its id, a batch by its id, or (with the account) a job by its ref or by
    the ticket it made; one found goes straight to its page."""
    q, account = q.strip(), account.strip()
    store = store_of(request)
    if q:
        if store.get(q) is not None:
            return redirect(f"/jobs/{quote(q, safe='')}")
        if Batches(store).info(q) is not None:
            return redirect(f"/batches/{quote(q, safe='')}")
    if q and account:
        found = store.find(account, q)
        owner = store.owners_of(account, [q])[0]
        job_id = found.job_id if found else owner
        if job_id:
            return redirect(f"/jobs/{quote(job_id, safe='')}")
    status = 404 if q else 200
    return render(request, "search.html", who, status, q=q, account=account)
