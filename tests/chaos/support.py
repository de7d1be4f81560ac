"""What the chaos scenarios share: short timings, bounded waits, counting tickets, the report.

Every number a scenario asserts comes from outside the worker: job records read from Redis,
what the StackOne stand-in says it received and created, and the worker logs.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu.transport.redis import Channel

from ops.fakeapi_client import FakeApiControl
from ops.processes import ManagedProcess
from ops.stack import LocalStack
from producers.client import JobHandle, Producer
from worker.contract import JobRecord, JobState
from worker.delivery.runner import RESENT

ACCOUNT = "acct-chaos"
TICKETS_PATH = "/unified/ticketing/tickets"

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
INPROCESS_MAX_DELAY = 0.5
LEASE_SECONDS = math.ceil(CONNECT_TIMEOUT + READ_TIMEOUT + INPROCESS_MAX_DELAY + 5)  # 9
VISIBILITY_TIMEOUT = 30  # must exceed two leases
SCHEDULER_INTERVAL = 0.5
AUTH_PAUSE = 3.0
MAX_LOST_ATTEMPTS = 3
REQUEUE_AFTER = 15.0

# Short timings, so that faults play out in seconds; everything else is what a user gets.
RECONCILE_SETTLE = 4.0
CHAOS_ENV = {
    "TICKETQ_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
    "TICKETQ_READ_TIMEOUT": str(READ_TIMEOUT),
    "TICKETQ_INPROCESS_MAX_DELAY": str(INPROCESS_MAX_DELAY),
    "TICKETQ_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "TICKETQ_SCHEDULER_INTERVAL": str(SCHEDULER_INTERVAL),
    "TICKETQ_BACKOFF_BASE": "0.2",
    "TICKETQ_BACKOFF_MAX": "3",
    "TICKETQ_AUTH_PAUSE": str(AUTH_PAUSE),
    "TICKETQ_MAX_LOST_ATTEMPTS": str(MAX_LOST_ATTEMPTS),
    "TICKETQ_REQUEUE_AFTER": str(REQUEUE_AFTER),
    # The stand-in lists a ticket at once unless told to lag; a lost attempt that created
    # nothing need not wait the production default (300 s) before it is sent again.
    "TICKETQ_RECONCILE_SETTLE": str(RECONCILE_SETTLE),
}

# kombu's Redis transport gives a dead consumer's unacknowledged messages back only when a
# live worker sweeps for them: every ``unacked_restore_interval`` seconds, and then only on
# every ``unacked_restore_throttle``-th tick (10 x 10 s by default), plus once at start-up.
KOMBU_RESTORE_SWEEP = float(Channel.unacked_restore_interval * Channel.unacked_restore_throttle)

# Worker log lines the scenarios count (worker/delivery/runner.py, worker/limits/keyhealth.py).
RESENT_AFTER_RECONCILE = RESENT
KEY_REFUSED = "refused API key"
KEY_ACCEPTED = "accepts API key"


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    """Poll ``check`` until true; returns the seconds it took, or fails the test on timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not {what} after {timeout:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


def records(producer: Producer, job_ids: Iterable[str]) -> dict[str, JobRecord]:
    found: dict[str, JobRecord] = {}
    for job_id in job_ids:
        record = producer.get(job_id)
        assert record is not None, f"job {job_id} has no record"
        found[job_id] = record
    return found


def all_final(producer: Producer, job_ids: Iterable[str]) -> bool:
    return all(r.state.is_final for r in records(producer, job_ids).values())


def wait_final(
    producer: Producer, job_ids: list[str], timeout: float, poll: float = 0.2
) -> dict[str, JobRecord]:
    """The jobs' records once all are final, or as they stand when ``timeout`` runs out.

    Does not fail by itself: a scenario counts what never finished as lost and reports it.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = records(producer, job_ids)
        if all(r.state.is_final for r in current.values()) or time.monotonic() > deadline:
            return current
        time.sleep(poll)


def states(found: Mapping[str, JobRecord]) -> dict[str, int]:
    return dict(Counter(str(r.state) for r in found.values()))


def not_final(found: Mapping[str, JobRecord]) -> list[str]:
    return [job_id for job_id, r in found.items() if not r.state.is_final]


def submit_titled(producer: Producer, titles: Iterable[str]) -> dict[str, str]:
    """One job per title; job id by title."""
    return {title: producer.submit(ACCOUNT, {"title": title}).job_id for title in titles}


def task_args(raw_message: bytes | str) -> Any:
    """The positional arguments of a task message as kombu's Redis transport stores it
    (JSON, its body base64-encoded JSON of ``[args, kwargs, embed]``)."""
    envelope = json.loads(raw_message)
    return json.loads(base64.b64decode(envelope["body"]))[0]


def handle(producer: Producer, job_id: str) -> JobHandle:
    return JobHandle(job_id=job_id, is_new=True, store=producer.store)


def duplicates(created_by_title: Mapping[str, int], titles: Iterable[str]) -> int:
    """Tickets beyond the first for each of these titles."""
    return sum(max(0, created_by_title.get(title, 0) - 1) for title in titles)


def tickets_by_title(stack: LocalStack, account: str = ACCOUNT) -> dict[str, list[str]]:
    """Every ticket the stand-in holds for the account, ids grouped by title, oldest first.

    Read back through the ticketing API itself, the way reconciliation reads StackOne.
    """
    found: dict[str, list[str]] = {}
    for ticket in listed_tickets(stack, account):
        found.setdefault(str(ticket["title"]), []).append(str(ticket["id"]))
    return found


def listed_tickets(stack: LocalStack, account: str = ACCOUNT) -> list[dict[str, Any]]:
    """Every ticket the stand-in lists for the account, oldest first, as its current
    ``list_style`` and ``list_lag_ms`` show them."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    with httpx.Client(
        base_url=stack.fake_api_url,
        auth=(stack.config.api_key, ""),
        headers={"x-account-id": account, "User-Agent": "ticketq-chaos-tests"},
        timeout=5,
    ) as client:
        while True:
            params = {"page_size": "100", **({"next": cursor} if cursor else {})}
            response = client.get(TICKETS_PATH, params=params)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            found.extend(body["data"])
            cursor = body["next"]
            if cursor is None:
                return found


def in_flight(fake: FakeApiControl, done_at_least: int, in_flight_at_least: int) -> bool:
    """At least this many tickets created and this many requests waiting at the stand-in."""
    stats = fake.stats()
    waiting = stats["requests"] - sum(stats["by_status"].values()) - stats["dropped"]
    return bool(stats["created"] >= done_at_least and waiting >= in_flight_at_least)


def busiest_sender(stack: LocalStack, fake: FakeApiControl) -> ManagedProcess:
    """The worker with the most create requests in flight at the stand-in (matched by the
    ports its connections come from): a process may hold all of an account's slots, so
    killing another one might cut no request off."""
    ports = Counter(int(port) for port in fake.stats()["in_flight_from"])
    return max(stack.workers, key=lambda worker: sum(ports[p] for p in local_ports(worker.pid)))


def local_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP sockets (Linux: its fds' socket inodes, looked up
    in /proc/net/tcp and tcp6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def worker_logs(stack: LocalStack) -> str:
    return "\n".join(worker.log_text() for worker in stack.workers)


def log_count(stack: LocalStack, text: str) -> int:
    return worker_logs(stack).count(text)


def ticketq(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``ticketq`` command as an operator runs it, configured for ``stack``."""
    return subprocess.run(
        [sys.executable, "-m", "ops.cli.app", *args],
        capture_output=True,
        text=True,
        env=stack.child_env(),
        timeout=60,
        check=False,
    )


@dataclass
class Row:
    """One scenario's line in the end-of-session table."""

    scenario: str
    fault: str
    submitted: int
    succeeded: int
    failed: int
    tickets: int
    duplicates: int
    lost: int
    adopted_uncertain: str
    seconds: float
    nodeid: str
    result: str = field(default="?")
    # Reconciliation's scenarios also count tickets someone else created in the customer's
    # tool and jobs holding a ticket they did not create; None where a scenario has none.
    elsewhere: int | None = None
    wrong: int | None = None

    @classmethod
    def of(
        cls,
        scenario: str,
        fault: str,
        found: Mapping[str, JobRecord],
        *,
        tickets: int,
        duplicates: int,
        adopted_uncertain: str,
        seconds: float,
        nodeid: str,
        elsewhere: int | None = None,
        wrong: int | None = None,
    ) -> Row:
        count = Counter(r.state for r in found.values())
        return cls(
            scenario=scenario,
            fault=fault,
            submitted=len(found),
            succeeded=count[JobState.SUCCEEDED],
            failed=count[JobState.FAILED],
            tickets=tickets,
            duplicates=duplicates,
            lost=len(not_final(found)),
            adopted_uncertain=adopted_uncertain,
            seconds=seconds,
            nodeid=nodeid,
            elsewhere=elsewhere,
            wrong=wrong,
        )
