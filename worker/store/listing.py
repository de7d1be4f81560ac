"""Jobs listed by filter (``GET /v1/jobs``): which index serves a query, and a page of it.

No index lists every job, nor every job of an account: a job is found by its id, by its
account and ref (the latest with that ref), among its batch's members, in the failed
index, or in the due index while it is not final. A query none of these serves is refused
with what to give instead, rather than served by scanning every record in Redis.

A page reads at most ``SCAN`` index entries, whatever the filters admit, so one request
never holds Redis long: a page may hold fewer jobs than asked and still have a next one.
The failed and due indexes move while they are read (a job fails, a retry comes due): a
job moving meanwhile may be missed or listed twice, as in ``ticketq dead list``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from worker.contract import JobRecord, JobState
from worker.store.batches import Batches
from worker.store.jobs import JobStore

SCAN = 2_000  # index entries one page reads at most
# The states the due index holds: every job not final.
UNFINISHED = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)
SERVED = "give batch_id, account_id and ref, or state failed, queued, running or retrying"


class Source(StrEnum):
    """The index a query is read from."""

    BATCH = "batch"  # the batch's members, in input order
    REF = "ref"  # the latest job with an account's ref: one job at most
    FAILED = "failed"  # failed jobs, most recently failed first
    DUE = "due"  # jobs not final, soonest due first


class Unserved(ValueError):
    """A query no index serves; the message names the field and says what to give."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class JobQuery:
    """What ``GET /v1/jobs`` filters on; None matches every value."""

    account_id: str | None = None
    ref: str | None = None
    state: JobState | None = None
    batch_id: str | None = None

    def admits(self, record: JobRecord) -> bool:
        """Whether a job read from the query's index matches its other filters (a batch's
        member is the batch's, even when an earlier batch made it)."""
        return (
            (self.account_id is None or record.account_id == self.account_id)
            and (self.ref is None or record.ref == self.ref)
            and (self.state is None or record.state == self.state)
        )


def source_of(query: JobQuery) -> Source:
    """The index that serves ``query``; ``Unserved`` says what to give instead."""
    if query.ref is not None and query.account_id is None:
        raise Unserved("ref", "give account_id with it: a ref names a job within its account")
    if query.batch_id is not None:
        return Source.BATCH
    if query.ref is not None:
        return Source.REF
    if query.state is JobState.FAILED:
        return Source.FAILED
    if query.state in UNFINISHED:
        return Source.DUE
    if query.state is not None:
        raise Unserved(
            "state",
            f"no index lists {query.state} jobs across batches: give batch_id with it (a "
            "batch's jobs), or account_id and ref",
        )
    if query.account_id is not None:
        raise Unserved("account_id", f"no index lists an account's jobs alone: {SERVED}")
    raise Unserved("query", SERVED)


@dataclass(frozen=True)
class Page:
    """Jobs a page found, and where the next page starts (None: the index is read out)."""

    jobs: list[JobRecord]
    next_cursor: int | None


class Listing:
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def page(self, query: JobQuery, cursor: int = 0, limit: int = 100) -> Page:
        """Up to ``limit`` jobs matching ``query``, from the ``cursor``-th index entry on,
        reading at most ``SCAN`` entries (a job whose record expired is left out)."""
        source = source_of(query)
        if source is Source.REF:
            assert query.account_id is not None and query.ref is not None
            record = self.store.find(query.account_id, query.ref)
            return Page([record] if record and query.admits(record) else [], None)
        read = self._reader(source, query)
        found: list[JobRecord] = []
        position = cursor
        while position - cursor < SCAN:
            ids = read(position, min(limit, SCAN - (position - cursor)))
            if not ids:
                return Page(found, None)
            for record in self.store.get_many(ids):
                position += 1
                if record is not None and query.admits(record):
                    found.append(record)
                    if len(found) == limit:
                        return Page(found, position)
        return Page(found, position)

    def _reader(self, source: Source, query: JobQuery) -> Callable[[int, int], list[str]]:
        """How to read ``count`` job ids of the index from its ``start``-th entry."""
        if source is Source.BATCH:
            assert query.batch_id is not None
            batch_id = query.batch_id
            return lambda start, count: Batches(self.store).members(batch_id, start, count)
        if source is Source.FAILED:
            return lambda start, count: self.store.failed_ids(count, start=start)
        return lambda start, count: self.store.due_ids(start, count)
