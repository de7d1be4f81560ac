"""Getting a job to a worker: the Celery app factory, the broker transport, dispatch and
the scheduler that re-sends due jobs."""
