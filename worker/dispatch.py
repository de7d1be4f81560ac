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

from collections.abc import Iterator, Sequence

from celery import Celery

from worker.celery_app import TASK_NAME
from worker.jobstore import Due, JobStore, Lane
from worker.keys import QUEUES

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


def _messages(jobs: Sequence[Due], bulk_batch: int) -> Iterator[tuple[Lane, list[str]]]:
    lane: Lane
    for lane, size in (("interactive", INTERACTIVE_BATCH), ("bulk", bulk_batch)):
        ids = [job.job_id for job in jobs if job.lane == lane]
        for start in range(0, len(ids), size):
            yield lane, ids[start : start + size]
