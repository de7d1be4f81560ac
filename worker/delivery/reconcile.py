"""Find the tickets an uncertain attempt may have created, before a job is sent again.

StackOne has no idempotency key, and a 408, a read timeout or a worker lost mid-request
leaves us not knowing whether the ticket exists. Its API lists an account's tickets
updated after a moment (there is no filter by title or field), so the uncertain jobs of a
delivery share one read of each account's tickets since the earliest of their attempts,
and each listed ticket is judged against each job (``worker/delivery/matching.py``).
Tickets another job of ours owns are left out; the caller adopts one of a job's
candidates atomically (``transition.lua`` claims the ticket with the outcome), and if
another job took it meanwhile, tries the next.

What it cannot see: a ticket the provider does not list yet (the decisions wait for it,
``TICKETQ_RECONCILE_SETTLE``), and one beyond ``TICKETQ_RECONCILE_PAGES`` pages of
tickets updated in the window (``complete`` is then False).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_random_exponential

from worker.contract import JobSpec, TicketIds
from worker.delivery.matching import CLOCK_SKEW_SECONDS, Marker, Verdict, created_at, judge
from worker.stackone.answers import Failure, TicketPage, as_id
from worker.store.jobs import JobStore

PAGE_READS = 3


class TicketLister(Protocol):
    async def list_tickets(
        self, account_id: str, updated_after: float, cursor: str | None = None
    ) -> TicketPage | Failure: ...


@dataclass(frozen=True)
class Lookup:
    """A job whose attempt since ``since`` (Unix seconds) may have created its ticket."""

    job_id: str
    spec: JobSpec
    since: float


@dataclass(frozen=True)
class Candidates:
    """What the listing holds for one job: tickets that are the same as the job's (any one
    may be adopted: their content is identical), ids of tickets only a person can tell
    from the job's, and whether the listing was read to its end."""

    same: tuple[TicketIds, ...] = ()
    maybe: tuple[str, ...] = ()
    complete: bool = True

    def without(self, ticket_id: str) -> Candidates:
        """The candidates once another job has taken ``ticket_id``."""
        return replace(self, same=tuple(t for t in self.same if t.id != ticket_id))


Found = Candidates | Failure  # a Failure: the listing could not be read


@dataclass(frozen=True)
class _Listing:
    tickets: list[dict[str, Any]]
    complete: bool


async def find_candidates(
    api: TicketLister,
    store: JobStore,
    lookups: Sequence[Lookup],
    max_pages: int,
    marker: Marker | None,
) -> dict[str, Found]:
    """Each job's candidates (by job id), one listing per account."""
    by_account: defaultdict[str, list[Lookup]] = defaultdict(list)
    for lookup in lookups:
        by_account[lookup.spec.account_id].append(lookup)
    found: dict[str, Found] = {}
    for account_id, jobs in by_account.items():
        since = min(job.since for job in jobs) - CLOCK_SKEW_SECONDS
        listing = await _list(api, account_id, since, max_pages)
        if isinstance(listing, Failure):
            found.update((job.job_id, listing) for job in jobs)
            continue
        owners = _owners(store, account_id, listing.tickets)
        for job in jobs:
            found[job.job_id] = _sort(job, listing, owners, marker)
    return found


def _owners(
    store: JobStore, account_id: str, tickets: list[dict[str, Any]]
) -> dict[str, str | None]:
    ids = [ticket_id for ticket in tickets if (ticket_id := as_id(ticket.get("id")))]
    return dict(zip(ids, store.owners_of(account_id, ids), strict=True))


def _sort(
    job: Lookup, listing: _Listing, owners: Mapping[str, str | None], marker: Marker | None
) -> Candidates:
    """The job's candidates among the listed tickets no other job owns, the earliest
    created first (the job's own, when a twin with identical content came later)."""
    same: list[tuple[float, TicketIds]] = []
    maybe: list[str] = []
    for ticket in listing.tickets:
        ticket_id = as_id(ticket.get("id"))
        if ticket_id is None or owners.get(ticket_id) not in (None, job.job_id):
            continue
        verdict = _verdict(job, ticket, marker)
        if verdict is Verdict.SAME:
            ids = TicketIds(id=ticket_id, remote_id=as_id(ticket.get("remote_id")))
            same.append((created_at(ticket) or math.inf, ids))
        elif verdict is Verdict.MAYBE:
            maybe.append(ticket_id)
    same.sort(key=lambda found: found[0])
    return Candidates(tuple(ids for _, ids in same), tuple(maybe), listing.complete)


def _verdict(job: Lookup, ticket: dict[str, Any], marker: Marker | None) -> Verdict:
    """The marker decides where the listing shows it; a ticket without it is compared on
    its contents but, with marking on, is at most a candidate for a person (an unmarked
    ticket with identical contents may be someone else's)."""
    marked = marker.judge(ticket, job.job_id) if marker else None
    if marked is not None:
        return marked
    verdict = judge(job.spec.ticket, ticket, job.since - CLOCK_SKEW_SECONDS)
    if marker is not None and verdict is Verdict.SAME:
        return Verdict.MAYBE
    return verdict


async def _list(
    api: TicketLister, account_id: str, updated_after: float, max_pages: int
) -> _Listing | Failure:
    """The account's tickets updated after the moment, up to ``max_pages`` pages."""
    tickets: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(max_pages):
        page = await _read_page(api, account_id, updated_after, cursor)
        if isinstance(page, Failure):
            return page
        tickets.extend(page.tickets)
        if page.next is None:
            return _Listing(tickets, complete=True)
        cursor = page.next
    return _Listing(tickets, complete=False)


async def _read_page(
    api: TicketLister, account_id: str, updated_after: float, cursor: str | None
) -> TicketPage | Failure:
    """A page, read again after a short wait if reading failed: a read changes nothing, and
    a job stays uncertain (and waits) only if StackOne keeps failing to answer."""
    retrying = AsyncRetrying(
        retry=retry_if_result(lambda read: isinstance(read, Failure)),
        wait=wait_random_exponential(multiplier=0.2, max=2.0),
        stop=stop_after_attempt(PAGE_READS),
        # Out of reads: the last failure is the answer.
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    page: TicketPage | Failure = await retrying(api.list_tickets, account_id, updated_after, cursor)
    return page
