"""Flower, started as a person would (``ticketq flower``), against the test stack's Redis and
its real workers: it lists the workers, measures ticketq's queues, answers its Broker tab
and shows a message as a task, named by its first job ids.

Flower runs with ``--enable-events=False`` (it would otherwise switch the workers' events
on itself), so the workers' heartbeats it waits for, and a task that reaches SUCCESS in
it, show the workers send events by default.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from ops.processes import ManagedProcess
from ops.redis_server import free_port
from ops.stack import LocalStack
from producers.client import Producer
from worker.queue.app import TASK_NAME
from worker.queue.dispatch import argsrepr
from worker.store.keys import QUEUES

pytestmark = pytest.mark.integration
ACCOUNT = "acct-flower"
T = TypeVar("T")


@pytest.fixture(scope="module")
def flower(stack: LocalStack) -> Iterator[httpx.Client]:
    """``ticketq flower`` on a free port of 127.0.0.1, with basic auth (Flower's API answers
    nobody without it); a client signed in to it."""
    port, password = free_port(), secrets.token_urlsafe(12)
    process = ManagedProcess.ticketq(
        "flower",
        ["flower", f"--port={port}", f"--basic-auth=ops:{password}", "--enable-events=False"],
        stack.config.run_dir / "flower.log",
        stack.child_env(),
    )
    base = f"http://127.0.0.1:{port}"
    process.start()
    try:
        with httpx.Client(base_url=base, auth=("ops", password), timeout=10) as client:
            process.wait_until(lambda: answers(client), timeout=30, what="answering")
            # Capturing events once every worker's heartbeat has come in: what is sent from
            # now on is seen.
            process.wait_until(
                lambda: alive(client) == len(stack.workers), timeout=30, what="seeing workers"
            )
            yield client
    finally:
        process.stop()


def answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthcheck").status_code == 200
    except httpx.HTTPError:
        return False


def alive(client: httpx.Client) -> int:
    """Workers alive by their heartbeat events."""
    status: dict[str, bool] = client.get("/api/workers", params={"status": 1}).json()
    return sum(status.values())


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 20) -> T:
    """``read()`` again until ``done`` says yes; the last answer, for the assertion."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value


def test_ticketq_flower_listens_on_127_0_0_1_when_no_address_is_given(
    flower: httpx.Client, stack: LocalStack
) -> None:
    log = (stack.config.run_dir / "flower.log").read_text()

    assert f"Visit me at {flower.base_url}".rstrip("/") in log


def test_flower_lists_every_worker_with_ticketqs_queues(
    flower: httpx.Client, stack: LocalStack
) -> None:
    def workers() -> dict[str, Any]:
        answer: dict[str, Any] = flower.get("/api/workers", params={"refresh": 1}).json()
        return answer

    names = [w.args[w.args.index("--hostname") + 1].split("@")[0] for w in stack.workers]
    found = eventually(workers, lambda found: len(found) == len(names))

    assert sorted(name.split("@")[0] for name in found) == sorted(names)
    for info in found.values():
        assert {q["name"] for q in info["active_queues"]} == set(QUEUES.values())
        assert info["stats"]["broker"]["transport"] == "redis"
    assert stack.config.api_key not in str(found)


def test_flower_measures_ticketqs_queues_on_the_redis_broker(flower: httpx.Client) -> None:
    answer = flower.get("/api/queues/length")

    assert answer.status_code == 200, answer.text
    lengths = answer.json()["active_queues"]
    assert {q["name"] for q in lengths} == set(QUEUES.values())
    assert all(isinstance(q["messages"], int) for q in lengths)


def test_flowers_broker_tab_shows_the_redis_url_without_its_password_and_the_queues(
    flower: httpx.Client, stack: LocalStack
) -> None:
    page = flower.get("/broker")

    assert page.status_code == 200, page.text[:500]
    # kombu writes a URL's password as ** whether or not there is one
    assert stack.redis_url.replace("redis://", "redis://:**@") in page.text
    assert all(queue in page.text for queue in QUEUES.values())


def test_a_message_shows_in_flower_as_a_task_named_by_its_first_job_ids(
    flower: httpx.Client, producer: Producer
) -> None:
    batch = producer.submit_many(ACCOUNT, [{"title": f"flower {n}"} for n in range(3)])
    batch.wait(timeout=30)
    expected = argsrepr(batch.job_ids)

    def ours() -> list[dict[str, Any]]:
        tasks = flower.get("/api/tasks", params={"taskname": TASK_NAME}).json()
        return [task for task in tasks.values() if task["args"] == expected]

    found = eventually(ours, lambda found: bool(found) and found[0]["state"] == "SUCCESS")

    assert [task["state"] for task in found] == ["SUCCESS"], found
    assert expected.endswith(", +1 more]")
    assert found[0]["worker"] and found[0]["received"] and found[0]["started"]
