"""The producer's message sender: nothing put is lost, and a busy producer sends fewer,
fuller messages."""

from __future__ import annotations

import logging
import threading

import pytest

from producers.publisher import Publisher


class Recorder:
    """A send that keeps every call, optionally held until released or failing."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.failures_left = 0

    def __call__(self, ids: list[str]) -> None:
        self.entered.set()
        assert self.release.wait(5)
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("broker away")
        self.calls.append(list(ids))


def test_an_idle_producer_sends_each_job_at_once_on_its_own() -> None:
    send = Recorder()
    publisher = Publisher(send)
    publisher.put("a")
    assert publisher.flush(5)
    publisher.put("b")
    assert publisher.flush(5)
    assert send.calls == [["a"], ["b"]]
    publisher.close()


def test_jobs_put_while_a_send_is_in_flight_go_out_together_next() -> None:
    send = Recorder()
    send.release.clear()
    publisher = Publisher(send)
    publisher.put("first")
    assert send.entered.wait(5)
    for job_id in ("x", "y", "z"):
        publisher.put(job_id)
    send.release.set()
    assert publisher.flush(5)
    assert send.calls == [["first"], ["x", "y", "z"]]
    publisher.close()


def test_a_failed_send_is_tried_again_with_nothing_lost() -> None:
    send = Recorder()
    send.failures_left = 2
    publisher = Publisher(send)
    publisher.put("a")
    publisher.put("b")
    assert publisher.flush(10)
    assert sorted(job for call in send.calls for job in call) == ["a", "b"]
    publisher.close()


def test_close_sends_what_is_pending_and_the_publisher_can_be_used_again() -> None:
    send = Recorder()
    publisher = Publisher(send)
    publisher.put("a")
    publisher.close()
    assert send.calls == [["a"]]
    publisher.put("b")
    publisher.close()
    assert send.calls == [["a"], ["b"]]


def test_close_gives_up_after_its_timeout_and_says_how_many_stay_unsent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send = Recorder()
    send.failures_left = 10**6
    publisher = Publisher(send)
    publisher.put("a")
    with caplog.at_level(logging.WARNING, logger="ticketq.producer"):
        publisher.close(timeout=0.3)
    assert send.calls == []
    assert "1 job messages not sent within 0.3s; workers will send them later" in caplog.text
