"""A worker process's account slots handed on without a round trip: a semaphore with
waiters, within the process.

Every request holds a slot of its account's cap (``admit.lua``'s in-flight set). A job
the cap holds back may instead follow a slot this process holds (``Reason.FOLLOWS``: the
rate counted it; it took no slot of its own). The moment a request is answered with a
ticket, the next follower of its account whose moment has come goes out on its slot, from
whichever delivery of the process it is; recording the answered job's outcome then passes
the slot to the follower in Redis (``transition.lua``) instead of freeing it. So the
account's in-flight set always holds at least as many entries as it has requests out.

The pool lives on the process's event loop (``loop.py``): everything but ``held`` and
``hold`` runs there. A slot counts as held here from the moment it is admitted (``hold``,
on the delivery's thread), not from when the loop starts its request: a round of another
delivery in between would otherwise see the account full in Redis and no slot here to
follow. Each delivery has an ``Inbox`` through which its jobs come back to its thread:
answered (with the job that followed on the slot, if any) or unsent.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from worker.delivery.decisions import Job
from worker.stackone.answers import Answer, TicketCreated
from worker.store.jobs import Claim


class Answered(NamedTuple):
    """A job sent, its answer, the seconds it took, and the job that then went on its
    slot (its outcome passes the slot on), if any."""

    job: Job
    answer: Answer
    latency: float
    successor: Claim | None


class Unsent(NamedTuple):
    """A follower that did not go (its moment lapsed, or its account's slots here came
    free first), with the seconds to its moment."""

    job: Job
    wait: float


Arrival = Answered | Unsent


class Inbox:
    """One delivery's jobs out on the event loop, and what comes back from them."""

    def __init__(self) -> None:
        self._arrivals: queue.SimpleQueue[Arrival] = queue.SimpleQueue()
        self.out = 0  # jobs handed to the loop not yet come back (the delivery's count)

    def put(self, arrival: Arrival) -> None:
        self._arrivals.put(arrival)

    def take(self, timeout: float) -> list[Arrival]:
        """What has come, waiting up to ``timeout`` seconds for the first if nothing has."""
        try:
            if timeout <= 0:
                arrivals = [self._arrivals.get_nowait()]
            else:
                wait = None if math.isinf(timeout) else timeout
                arrivals = [self._arrivals.get(timeout=wait)]
        except queue.Empty:
            return []
        while not self._arrivals.empty():
            arrivals.append(self._arrivals.get_nowait())
        self.out -= len(arrivals)
        return arrivals


@dataclass(order=True)
class Follower:
    """A job admitted to follow a slot of its account (at ``due``, Unix seconds)."""

    due: float
    job: Job = field(compare=False)
    inbox: Inbox = field(compare=False)


Send = Callable[[Job], Awaitable[tuple[Answer, float]]]


class SlotPool:
    """The slots the process has requests out on, per account, and the followers waiting
    for them."""

    def __init__(self, send: Send, stopping: threading.Event) -> None:
        self._send = send
        self._stopping = stopping
        self._chains: Counter[str] = Counter()  # slots admitted or with a request out
        self._counting = threading.Lock()  # counted by deliveries' threads and the loop
        self._waiting: dict[str, list[Follower]] = {}  # by account, soonest moment first
        self._tasks: set[asyncio.Task[None]] = set()

    def held(self, account_id: str) -> int:
        """How many of the account's slots the process has requests out on (read from any
        thread: a count, possibly a moment old)."""
        return self._chains[account_id]

    def hold(self, first: list[Job]) -> None:
        """Count the slots these admitted jobs took, before ``launch`` sends them."""
        with self._counting:
            self._chains.update(job.spec.account_id for job in first)

    async def launch(self, first: list[Job], followers: list[Follower], inbox: Inbox) -> None:
        """Send the admitted jobs, each on the slot of its own ``hold`` counted, and queue
        the followers for the slots of their accounts; a follower whose account has no slot
        out here goes back at once."""
        for job in first:
            task = asyncio.get_running_loop().create_task(self._chain(job, inbox))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        now = time.time()
        for follower in followers:
            account = follower.job.spec.account_id
            if self._chains[account]:
                bisect.insort(self._waiting.setdefault(account, []), follower)
            else:
                inbox.put(Unsent(follower.job, max(follower.due - now, 0.0)))

    async def _chain(self, job: Job, inbox: Inbox) -> None:
        """One slot: its request, then each follower that goes on it once the one before
        is answered with a ticket (any other answer may mean the account or the key must
        wait)."""
        account = job.spec.account_id
        try:
            while True:
                answer, latency = await self._send(job)
                follower = None
                if isinstance(answer, TicketCreated) and not self._stopping.is_set():
                    follower = self._next(account, time.time())
                inbox.put(Answered(job, answer, latency, follower.job.claim if follower else None))
                if follower is None:
                    return
                job, inbox = follower.job.sent(time.time(), probe=False), follower.inbox
        finally:
            self._ended(account)

    def _next(self, account_id: str, now: float) -> Follower | None:
        """The account's first follower whose moment has come and is still good; those
        whose moments lapsed go back."""
        waiting = self._waiting.get(account_id, [])
        while waiting and waiting[0].due <= now:
            follower = waiting.pop(0)
            if follower.job.reserved(now):
                return follower
            follower.inbox.put(Unsent(follower.job, 0.0))
        return None

    def _ended(self, account_id: str) -> None:
        """A slot of the account came free here; with none left, its followers go back."""
        with self._counting:
            self._chains[account_id] -= 1
            if self._chains[account_id]:
                return
            del self._chains[account_id]
        now = time.time()
        for follower in self._waiting.pop(account_id, []):
            follower.inbox.put(Unsent(follower.job, max(follower.due - now, 0.0)))
