"""Put job messages on the queue: the one way producers and the scheduler both send.

A message carries only the job id. After sending, the jobs are confirmed sent, which takes
them out of the scheduler's due index; a sender that dies before confirming leaves them
there, and the scheduler sends them again later (a duplicate message is harmless: only one
delivery can claim a job).
"""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from worker.celery_app import QUEUES, TASK_NAME
from worker.jobstore import Due, JobStore


def dispatch(app: Celery, store: JobStore, jobs: Sequence[Due]) -> None:
    with app.producer_or_acquire() as producer:
        for job in jobs:
            app.send_task(TASK_NAME, args=[job.job_id], queue=QUEUES[job.lane], producer=producer)
    store.confirm_sent([job.job_id for job in jobs])
