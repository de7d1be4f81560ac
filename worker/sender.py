"""One request to StackOne, as the limits shared by every worker allow.

Before each request the limiter must admit it: the key's rate, the account's cap on
requests in flight, and any pause a 429 asked for. A short wait is spent here; a long one
is handed back (``NotAdmitted``) so that no worker slot sleeps for long, and the job waits
in the due index instead. A 429 is not the job's failure: it pauses the scope it names for
every worker (the account when the provider is limiting, else the key), the attempt is
taken back, and the job waits its turn like any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from worker.contract import JobSpec, TicketCreate
from worker.jobstore import Claim, JobStore
from worker.ratelimit import Limiter, Reason
from worker.stackone import Failed, Outcome

# StackOne documents Retry-After on every 429; if one ever comes without, wait this long.
DEFAULT_429_PAUSE = 10.0


class TicketCreator(Protocol):
    def create_ticket(self, account_id: str, ticket: TicketCreate) -> Outcome: ...


class NotAdmitted(Exception):
    """Sending must wait longer than a worker slot should: try again after ``wait``."""

    def __init__(self, wait: float, reason: Reason, status: int | None = None) -> None:
        super().__init__(f"{reason.name.lower().replace('_', ' ')}: wait {wait:.1f}s")
        self.wait = wait
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Sent:
    outcome: Outcome
    started_at: float  # when the request left; an ambiguous outcome is uncertain from here


class Sender:
    def __init__(
        self,
        api: TicketCreator,
        store: JobStore,
        limiter: Limiter,
        max_wait: float,
        stopping: threading.Event,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self._store = store
        self._limiter = limiter
        self._max_wait = max_wait
        self._stopping = stopping
        self._sleep = sleep

    def send(self, claim: Claim, spec: JobSpec, *, settled: bool = False) -> Sent:
        """Admit, count and send one request; raises ``NotAdmitted`` to hand the job back."""
        self._admit(claim, spec)
        self._store.count_attempt(claim, settled=settled)
        started = time.time()
        try:
            outcome = self._api.create_ticket(spec.account_id, spec.ticket)
        finally:
            self._limiter.release(spec.account_id, claim.token)
        if isinstance(outcome, Failed) and outcome.status == 429:
            pause = outcome.retry_after if outcome.retry_after is not None else DEFAULT_429_PAUSE
            if outcome.provider_errors:
                self._limiter.pause_account(spec.account_id, pause)
            else:
                self._limiter.pause_key(pause)
            self._store.take_back_attempt(claim)
            raise NotAdmitted(pause, Reason.RATE, status=429)
        return Sent(outcome, started)

    def _admit(self, claim: Claim, spec: JobSpec) -> None:
        while True:
            admission = self._limiter.admit(spec.account_id, claim.lane, claim.token)
            if admission.admitted:
                return
            if admission.wait > self._max_wait or self._stopping.is_set():
                raise NotAdmitted(admission.wait, admission.reason)
            self._sleep(admission.wait)
