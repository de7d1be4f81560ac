"""Ambiguous outcomes, where StackOne may have created the ticket but ticketq never heard: a
connection dropped after creating, an answer held past the read timeout, a 408. Each of
``TICKETQ_ON_AMBIGUOUS``'s policies gets its own stack and meets each of them.

What each policy promises (README, "Job states"):
- ``reconcile`` finds the ticket among the account's recent ones and adopts it, else sends
  again: one ticket, and it is the job's;
- ``retry`` sends again: a second ticket whenever the first attempt did create one;
- ``park`` stops: the job fails with kind ``uncertain`` for a person to decide.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack
from producers.client import Producer
from tests.chaos.conftest import StackFactory
from tests.chaos.support import (
    ACCOUNT,
    READ_TIMEOUT,
    Row,
    duplicates,
    tickets_by_title,
    wait_final,
)
from worker.contract import ErrorKind, JobState
from worker.delivery.runner import ADOPTED

pytestmark = pytest.mark.chaos

FAULTS: dict[str, dict[str, Any]] = {
    "drop": {"create_then_drop": True},
    "hang": {"create_then_hang_ms": 5000},  # well past the 2 s read timeout
    "408": {"status": 408, "retry_after": "1"},  # StackOne gave up: nothing was created
}
CREATES_FIRST_TIME = {"drop": True, "hang": True, "408": False}


@dataclass
class PolicyStack:
    policy: str
    stack: LocalStack
    producer: Producer
    fake: FakeApiControl


@pytest.fixture(scope="module", params=["reconcile", "retry", "park"])
def policy_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicyStack]:
    policy: str = request.param
    factory = StackFactory(tmp_path_factory.mktemp(f"ambiguous-{policy}"))
    try:
        stack = factory(workers=1, env={"TICKETQ_ON_AMBIGUOUS": policy})
        fake = factory.fake_api(stack)
        yield PolicyStack(policy, stack, Producer(stack.settings()), fake)
    finally:
        factory.stop_all()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_an_ambiguous_outcome_ends_as_the_policy_says(
    policy_stack: PolicyStack,
    fault: str,
    report: Callable[[Row], None],
    request: pytest.FixtureRequest,
) -> None:
    policy, stack, producer, fake = (
        policy_stack.policy,
        policy_stack.stack,
        policy_stack.producer,
        policy_stack.fake,
    )
    title = f"ambiguous-{policy}-{fault}-{uuid.uuid4().hex[:8]}"
    fake.script(title, FAULTS[fault])
    started = time.monotonic()
    job_id = producer.submit(ACCOUNT, {"title": title}).job_id
    found = wait_final(producer, [job_id], timeout=30)
    seconds = time.monotonic() - started

    record = found[job_id]
    tickets = tickets_by_title(stack).get(title, [])
    created = fake.stats()["created_by_title"]
    requests = len(fake.arrivals(title))
    log = "\n".join(w.log_text() for w in stack.workers)
    adopted = f"job {job_id}: {ADOPTED}" in log
    report(
        Row.of(
            f"ambiguous, {policy}",
            f"{fault}: {json.dumps(FAULTS[fault])}",
            found,
            tickets=len(tickets),
            duplicates=duplicates(created, [title]),
            adopted_uncertain=(
                "adopted 1"
                if adopted
                else "uncertain 1"
                if record.error and record.error.kind == ErrorKind.UNCERTAIN
                else f"sent {requests}x"
            ),
            seconds=seconds,
            nodeid=request.node.nodeid,
        )
    )

    assert record.state.is_final, f"{record}; logs in {stack.config.run_dir}"
    assert created.get(title, 0) == len(tickets)  # the stand-in's count and its listing agree
    first_created = CREATES_FIRST_TIME[fault]
    if policy == "park":
        assert record.state == JobState.FAILED, record
        assert record.error is not None and record.error.kind == ErrorKind.UNCERTAIN
        assert record.ticket is None
        assert requests == 1
        assert len(tickets) == (1 if first_created else 0)
        return
    assert record.state == JobState.SUCCEEDED, f"{record}; logs in {stack.config.run_dir}"
    assert record.ticket is not None
    if policy == "reconcile":
        # Found and adopted when it exists; sent again only when it does not.
        assert len(tickets) == 1 and record.ticket.id == tickets[0]
        assert adopted == first_created
        assert requests == (1 if first_created else 2)
    else:  # retry: sent again blindly, so a created first attempt became a duplicate
        assert requests == 2
        assert len(tickets) == (2 if first_created else 1)
        assert record.ticket.id == tickets[-1]  # the job holds the second; the first is orphaned
    if fault == "hang":
        assert seconds >= READ_TIMEOUT  # the client really waited for its read timeout
