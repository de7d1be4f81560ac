"""The producing side: ``producers.submit(account_id, ticket, ref=..., idempotency_key=...)``
for one interactive ticket, ``producers.submit_many(account_id, tickets, refs=...)`` for bulk.
"""

from producers.client import (
    BatchHandle,
    InvalidJob,
    JobHandle,
    JobNotFound,
    Producer,
    submit,
    submit_many,
)

__all__ = [
    "BatchHandle",
    "InvalidJob",
    "JobHandle",
    "JobNotFound",
    "Producer",
    "submit",
    "submit_many",
]
