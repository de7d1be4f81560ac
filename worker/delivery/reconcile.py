"""Find the ticket an ambiguous attempt may have created, before sending the job again.

StackOne has no idempotency key, and a 408, a read timeout or a worker lost mid-request
leaves us not knowing whether the ticket exists. Its API can list an account's tickets
updated after a moment (there is no filter by title), so we read the tickets updated since
the uncertain attempt began, and adopt one whose title matches the job's, unless another
job of ours already owns it.

What it cannot tell apart: a ticket with the same title that someone else created in that
window (it would be adopted), and a ticket the provider has not listed yet (the job is sent
again). A job without a title cannot be matched and is sent again.
"""

from __future__ import annotations

from typing import Protocol

from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_random_exponential

from worker.contract import JobSpec, TicketIds
from worker.stackone.answers import Failure, TicketPage, as_id
from worker.store.jobs import JobStore

# StackOne's clock and ours differ; look a little further back than the attempt began.
CLOCK_SKEW_SECONDS = 60.0
PAGE_READS = 3


class TicketLister(Protocol):
    async def list_tickets(
        self, account_id: str, updated_after: float, cursor: str | None = None
    ) -> TicketPage | Failure: ...


async def find_created(
    api: TicketLister, store: JobStore, job_id: str, spec: JobSpec, since: float, max_pages: int
) -> TicketIds | Failure | None:
    """The job's ticket if StackOne lists it, None if not (send again), Failure if unknown."""
    title = spec.ticket.title
    if not title:
        return None
    cursor: str | None = None
    for _ in range(max_pages):
        page = await _read_page(api, spec.account_id, since - CLOCK_SKEW_SECONDS, cursor)
        if isinstance(page, Failure):
            return page
        for ticket in page.tickets:
            ticket_id = as_id(ticket.get("id"))
            if ticket.get("title") != title or ticket_id is None:
                continue
            if store.owner_of(spec.account_id, ticket_id) in (None, job_id):
                return TicketIds(id=ticket_id, remote_id=as_id(ticket.get("remote_id")))
        if page.next is None:
            return None
        cursor = page.next
    return None


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
