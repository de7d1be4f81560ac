"""Put job messages on the queue: the one way producers and the scheduler both send.

A message carries only job ids: one for an interactive job, so it is never held up by
others, and up to ``bulk_batch`` for bulk jobs, so that a worker pays Celery's per-message
cost once for many tickets and sends them concurrently. After sending, the jobs are
confirmed sent: their outbox entry in the due index becomes a later watch (see
``sent.lua``). A sender that dies before confirming leaves the outbox entry, and the
scheduler sends them itself (a duplicate message is harmless: only one delivery can claim
a job).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from celery import Celery

from worker.celery_app import TASK_NAME
from worker.jobstore import Due, JobStore, Lane
from worker.keys import QUEUES


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
    for job in jobs:
        if job.lane == "interactive":
            yield "interactive", [job.job_id]
    bulk = [job.job_id for job in jobs if job.lane == "bulk"]
    for start in range(0, len(bulk), bulk_batch):
        yield "bulk", bulk[start : start + bulk_batch]
