"""Put job messages on the queue: the one way producers and the scheduler both send.

A message carries only job ids, so that a worker pays Celery's per-message cost once for
several tickets and sends them concurrently: up to ``bulk_batch`` bulk jobs, and up to
``INTERACTIVE_BATCH`` interactive ones (as many as were sent together: one, when nothing
else was waiting), few enough that every worker of a fleet gets its share at once.

After sending, the jobs are confirmed sent: their outbox entry in the due index becomes a
later watch (see ``sent.lua``). A sender that dies before confirming leaves the outbox
entry, and the scheduler sends them itself (a duplicate message is harmless: only one
delivery can claim a job).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from worker.queue.app import TASK_NAME
from worker.store.deadletters import DeadLetters, Report
from worker.store.jobs import Due, JobStore, Lane
from worker.store.keys import QUEUES

INTERACTIVE_BATCH = 10
NAMED_IDS = 2  # the job ids a message's argsrepr names
# What a failed send raises: kombu's error for the broker, redis's for confirm_sent.
SEND_ERRORS = (OperationalError, redis.RedisError)

log = logging.getLogger(__name__)


def dispatch(app: Celery, store: JobStore, jobs: Sequence[Due], bulk_batch: int) -> None:
    with app.producer_or_acquire() as producer:
        for lane, ids in _messages(jobs, bulk_batch):
            app.send_task(
                TASK_NAME,
                args=[ids],
                queue=QUEUES[lane],
                producer=producer,
                argsrepr=argsrepr(ids),
            )
    store.confirm_sent([job.job_id for job in jobs])


def dispatch_stored(
    app: Celery, store: JobStore, jobs: Sequence[Due], bulk_batch: int
) -> Exception | None:
    """Send jobs whose records and outbox entries are already stored: they are accepted
    whatever happens here, so a failure to send is not the caller's failure. It is logged
    and returned (None when all went); the scheduler sends them after requeue_after."""
    if not jobs:
        return None
    try:
        dispatch(app, store, jobs, bulk_batch)
    except SEND_ERRORS as exc:
        log.warning(
            "%d stored jobs could not be sent now (%s); they will be sent by a worker after "
            "TICKETQ_REQUEUE_AFTER",
            len(jobs),
            exc,
        )
        return exc
    return None


def replay_failed(
    app: Celery,
    dead: DeadLetters,
    job_ids: Iterable[str],
    bulk_batch: int,
    *,
    reconcile: bool = True,
) -> Report:
    """Failed jobs back on the queue, as a person asked (``reconcile``: see
    ``JobStore.replay``). Requeued first, then sent: if sending fails, they wait in the
    outbox and the scheduler sends them (the report says so in ``unsent``). A Redis failure
    part way stops the requeueing; the report says how far it got (``interrupted``)."""
    requeued = dead.requeue(job_ids, reconcile=reconcile)
    unsent = dispatch_stored(app, dead.store, requeued.due, bulk_batch)
    return requeued.report(unsent)


def argsrepr(ids: Sequence[str]) -> str:
    """What Flower shows as a message's arguments: its first job ids in full (to look up
    with ``ticketq status``) and how many more, e.g. ``[a1…, c3…, +48 more]``: enough to
    tell messages apart, where Celery's default would repeat every id in the headers and
    ``[50 job ids]`` told none apart."""
    named = list(ids[:NAMED_IDS])
    more = [f"+{len(ids) - NAMED_IDS} more"] if len(ids) > NAMED_IDS else []
    return f"[{', '.join(named + more)}]"


def _messages(jobs: Sequence[Due], bulk_batch: int) -> Iterator[tuple[Lane, list[str]]]:
    lane: Lane
    for lane, size in (("interactive", INTERACTIVE_BATCH), ("bulk", bulk_batch)):
        ids = [job.job_id for job in jobs if job.lane == lane]
        for start in range(0, len(ids), size):
            yield lane, ids[start : start + size]
