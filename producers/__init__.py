"""The producing side: ``producers.submit(account_id, ticket, ref=..., idempotency_key=...)``."""

from producers.client import InvalidJob, JobHandle, JobNotFound, Producer, submit

__all__ = ["InvalidJob", "JobHandle", "JobNotFound", "Producer", "submit"]
