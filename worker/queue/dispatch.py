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

from collections.abc import Iterable, Iterator, Sequence

from celery import Celery

from worker.queue.app import TASK_NAME
from worker.store.deadletters import DeadLetters, Report
from worker.store.jobs import Due, JobStore, Lane
from worker.store.keys import QUEUES

INTERACTIVE_BATCH = 10


def dispatch(app: Celery, store: JobStore, jobs: Sequence[Due], bulk_batch: int) -> None:
    with app.producer_or_acquire() as producer:
        for lane, ids in _messages(jobs, bulk_batch):
            # Celery would store a repr of every id in the message's headers as well.
            argsrepr = f"[{len(ids)} job ids]"
            app.send_task(
                TASK_NAME, args=[ids], queue=QUEUES[lane], producer=producer, argsrepr=argsrepr
            )
    store.confirm_sent([job.job_id for job in jobs])


def replay_failed(
    app: Celery, dead: DeadLetters, job_ids: Iterable[str], bulk_batch: int
) -> Report:
    """Failed jobs back on the queue, as a person asked. Requeued first, then sent: if
    sending fails, they wait in the outbox and the scheduler sends them."""
    requeued = dead.requeue(job_ids)
    if requeued.due:
        dispatch(app, dead.store, requeued.due, bulk_batch)
    return requeued.report()


def _messages(jobs: Sequence[Due], bulk_batch: int) -> Iterator[tuple[Lane, list[str]]]:
    lane: Lane
    for lane, size in (("interactive", INTERACTIVE_BATCH), ("bulk", bulk_batch)):
        ids = [job.job_id for job in jobs if job.lane == lane]
        for start in range(0, len(ids), size):
            yield lane, ids[start : start + size]
