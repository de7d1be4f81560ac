"""The producing side: ``producers.submit(account_id, ticket, ref=..., idempotency_key=...)``
for one interactive ticket, ``producers.submit_many(account_id, tickets, refs=...)`` for bulk.

Everything a caller passes to these calls or gets back from them is exported here, so that
nobody has to reach into ``worker``: ``Settings`` to point a ``Producer`` somewhere,
``TicketCreate`` to build a body, ``JobRecord``/``JobState``/``JobError``/``ErrorKind``/
``TicketIds`` to read a result; ``InvalidJob``, ``JobNotFound``, ``BrokerError`` and
``BrokerUnavailable`` for what can go wrong. Importing this package reads no settings and
connects to nothing; a ``Producer`` does that when it is made.
"""

from producers.client import (
    BatchHandle,
    BatchNotFound,
    BrokerError,
    BrokerUnavailable,
    InvalidJob,
    JobHandle,
    JobNotFound,
    Producer,
    Rejected,
    submit,
    submit_many,
)
from worker.contract import ErrorKind, JobError, JobRecord, JobState, TicketCreate, TicketIds
from worker.settings import Settings

__all__ = [
    "BatchHandle",
    "BatchNotFound",
    "BrokerError",
    "BrokerUnavailable",
    "ErrorKind",
    "InvalidJob",
    "JobError",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "Producer",
    "Rejected",
    "Settings",
    "TicketCreate",
    "TicketIds",
    "submit",
    "submit_many",
]
