"""``ticketq batch``, ``batches``, ``export`` and ``cancel`` as a person runs them, against
real workers and the stand-in API: a batch followed and listed, its correlation report in
input order, a slow batch cancelled half way, and outside text shown as it is."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack, StackConfig
from producers import BatchHandle, JobState, Producer
from tests.integration.support import FAST_RETRIES, ticketq
from worker.store.batches import Batches

pytestmark = pytest.mark.integration

ESCAPES = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\\x07\x9b31m"
SHOWN_ESCAPES = "\\x1b]8;;http://evil.example\\x1b\\click"
MARKUP_MESSAGE = "Field [/oops] is [link=http://evil.example]invalid[/link]"
SUMMARY_KEYS = {
    "batch_id",
    "account_id",
    "source",
    "opened_at",
    "finished_at",
    "rows",
    "accepted",
    "already_known",
    "rejected",
    "total",
    "done",
    "final",
    "counts",
    "rate",
}
STATES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled", "missing"]
IN_FLIGHT = "its attempt finishes; cancelled then unless it made the ticket"
CANCEL_SUMMARY = re.compile(
    r"^cancelled (\d+), in flight (\d+), already final (\d+)( \([^)]*\))?, not found (\d+)$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Workers held to 4 requests a second, few jobs a delivery: a batch of 40 stays queued
    (or handed back, retrying) long enough to be cancelled half way."""
    settings_env = {**FAST_RETRIES, "TICKETQ_RATE_LIMIT": "240/min", "TICKETQ_BULK_BATCH": "5"}
    config = StackConfig(
        run_dir=tmp_path_factory.mktemp("slow-stack"),
        worker_concurrency=2,
        settings_env=settings_env,
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def slow_api(slow_stack: LocalStack) -> Iterator[FakeApiControl]:
    control = FakeApiControl(slow_stack.fake_api_url)
    control.configure(latency_ms=200)
    yield control
    control.close()


@pytest.fixture
def account(title: str) -> str:
    """An account of this test alone, so its batches are the only ones listed."""
    return f"acct-{title.rsplit(' ', 1)[-1]}"


def run(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    result = ticketq(stack, *args)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert stack.config.api_key not in output
    return result


def as_json(stack: LocalStack, *args: str) -> Any:
    result = run(stack, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def watch(stack: LocalStack, batch_id: str) -> subprocess.Popen[str]:
    """``ticketq batch --watch`` left running (no terminal: a line per change), taking
    Ctrl-C as a command started from a terminal does."""
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli.app", "batch", batch_id, "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stack.child_env(),
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    """SIGINT as a terminal leaves it: a shell runs a background job (a CI run started with
    ``&``, say) with SIGINT ignored, and its children inherit that, so the watcher went on
    to the batch's end and exited 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def finished_batch(producer: Producer, account: str, title: str) -> BatchHandle:
    """Four rows: two succeed, one is refused by the API, one is invalid (left out)."""
    tickets: list[dict[str, Any]] = [
        {"title": f"{title} #0"},
        {"title": f"{title} #1"},
        {"titel": "not a field"},
        {"title": f"{title} #3"},
    ]
    refs = ["plain", 'comma, "quoted"\nand [/b] markup', "rejected", "last"]
    batch = producer.submit_many(account, tickets, refs=refs, skip_invalid=True)
    assert batch.wait(timeout=30) == {JobState.SUCCEEDED: 2, JobState.FAILED: 1}
    return batch


def test_batch_shows_a_finished_batch_and_batches_lists_it_newest_first(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str, account: str
) -> None:
    fake_api.script(f"{title} #1", {"status": 422, "message": "Project is archived"})
    older = producer.submit_many(account, [{"title": f"{title} older"}])
    older.wait(timeout=30)
    batch = finished_batch(producer, account, title)

    shown = as_json(stack, "batch", batch.batch_id)

    assert set(shown) == SUMMARY_KEYS
    assert list(shown["counts"]) == STATES
    assert shown["counts"] == {**dict.fromkeys(STATES, 0), "succeeded": 2, "failed": 1}
    assert (shown["batch_id"], shown["account_id"], shown["source"]) == (
        batch.batch_id,
        account,
        None,
    )
    assert (shown["rows"], shown["accepted"], shown["already_known"], shown["rejected"]) == (
        4,
        3,
        0,
        1,
    )
    assert (shown["total"], shown["done"], shown["final"]) == (3, 3, True)
    opened, finished = (datetime.fromisoformat(shown[f]) for f in ("opened_at", "finished_at"))
    assert shown["finished_at"].endswith("Z")  # ISO 8601 in UTC, as the web API answers
    assert opened <= finished <= datetime.now(UTC)
    assert shown["rate"] > 0
    listed = as_json(stack, "batches", "--account-id", account)
    assert [item["batch_id"] for item in listed] == [batch.batch_id, older.batch_id]
    assert listed[0] == {**shown, "rate": listed[0]["rate"]}
    assert [
        i["batch_id"] for i in as_json(stack, "batches", "--account-id", account, "--limit", "1")
    ] == [batch.batch_id]

    human = run(stack, "batch", batch.batch_id)
    assert human.returncode == 0, human.stderr
    assert re.search(
        r"^rows\s+4 read: 3 accepted, 0 already known, 1 rejected$", human.stdout, re.M
    )
    assert re.search(r"^succeeded\s+2$", human.stdout, re.M)
    assert re.search(r"^jobs\s+3 of 3 done$", human.stdout, re.M)
    table = run(stack, "batches", "--account-id", account)
    assert table.returncode == 0 and batch.batch_id in table.stdout and "3/3" in table.stdout


def test_export_gives_every_row_in_input_order_with_the_ticket_it_became(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str, account: str
) -> None:
    fake_api.script(f"{title} #1", {"status": 422, "message": MARKUP_MESSAGE})
    batch = finished_batch(producer, account, title)
    records = [producer.get(job_id) for job_id in batch.job_ids]

    as_csv = run(stack, "export", batch.batch_id)
    as_jsonl = run(stack, "export", batch.batch_id, "--format", "jsonl")

    assert as_csv.returncode == 0 and as_jsonl.returncode == 0, as_csv.stderr + as_jsonl.stderr
    table = list(csv.reader(io.StringIO(as_csv.stdout, newline="")))
    assert table[0] == [
        "line",
        "ref",
        "job_id",
        "state",
        "ticket_id",
        "remote_id",
        "error_kind",
        "error_message",
        "attempts",
    ]
    lines = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
    assert [row["line"] for row in lines] == [0, 1, 3]  # row 2 was left out, invalid
    assert [row["ref"] for row in lines] == ["plain", 'comma, "quoted"\nand [/b] markup', "last"]
    assert [row["job_id"] for row in lines] == batch.job_ids
    for row, record in zip(lines, records, strict=True):
        assert record is not None and row["state"] == record.state
        assert row["ticket_id"] == (record.ticket.id if record.ticket else None)
        assert row["remote_id"] == (record.ticket.remote_id if record.ticket else None)
        assert row["attempts"] == record.attempts
    assert (lines[1]["error_kind"], lines[1]["error_message"]) == ("terminal", MARKUP_MESSAGE)
    assert table[1:] == [
        ["" if value is None else str(value) for value in row.values()] for row in lines
    ]


def test_export_writes_a_file_and_refuses_to_overwrite_one_without_force(
    stack: LocalStack, producer: Producer, title: str, account: str, tmp_path: Path
) -> None:
    batch = producer.submit_many(account, [{"title": title}])
    batch.wait(timeout=30)
    target = tmp_path / "report.jsonl"
    target.write_text("keep me")

    refused = run(stack, "export", batch.batch_id, "-o", str(target))
    forced = run(stack, "export", batch.batch_id, "-o", str(target), "--force")

    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == f"error: {target}: exists (pass --force to overwrite)"
    assert forced.returncode == 0 and forced.stdout == ""
    assert forced.stderr.strip() == f"wrote 1 rows to {target}"
    (row,) = [json.loads(line) for line in target.read_text().splitlines()]  # .jsonl: JSON
    assert row["job_id"] == batch.job_ids[0] and row["state"] == "succeeded"
    assert [p.name for p in tmp_path.iterdir()] == ["report.jsonl"]  # no partial file left


def test_an_unknown_batch_is_one_line_and_status_1_like_an_unknown_job(
    stack: LocalStack,
) -> None:
    for args in (["batch", "nope"], ["export", "nope"], ["cancel", "--batch", "nope", "--yes"]):
        result = run(stack, *args)
        assert result.returncode == 1, args
        assert result.stdout == "" and result.stderr == "error: no batch nope\n", args


def test_cancel_of_unknown_and_finished_jobs_says_what_each_is(
    stack: LocalStack, producer: Producer, title: str
) -> None:
    done = producer.submit("acct-cancel", {"title": title})
    done.wait(timeout=30)

    result = run(stack, "cancel", done.job_id, f"[/x]{ESCAPES}")

    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{done.job_id}: already final (succeeded)",
        f"[/x]{SHOWN_ESCAPES}\\x1b]8;;\\x1b\\\\x07\\x9b31m: not found",
        "cancelled 0, in flight 0, already final 1 (1 succeeded), not found 1",
    ]
    finished_only = run(stack, "cancel", done.job_id)
    assert finished_only.returncode == 0  # nothing left that could be sent


def test_cancel_needs_job_ids_or_a_batch_and_not_both(stack: LocalStack) -> None:
    neither = run(stack, "cancel")
    both = run(stack, "cancel", "j", "--batch", "b")

    assert neither.returncode == 2 and both.returncode == 2
    assert neither.stderr == "error: give the JOB_IDs of the jobs to cancel, or --batch BATCH_ID\n"
    assert both.stderr == "error: give JOB_IDs or --batch, not both\n"


def test_outside_text_in_a_batch_is_shown_as_it_is(
    stack: LocalStack, producer: Producer, title: str
) -> None:
    account = f"[bold]acct-{title.rsplit(' ', 1)[-1]}"
    batch = producer.submit_many(account, [{"title": title}])
    batch.wait(timeout=30)
    source = f"[/b]{ESCAPES}.csv"
    Batches(producer.store).open(batch.batch_id, at=time.time(), account_id=account, source=source)

    shown = run(stack, "batch", batch.batch_id)
    listed = run(stack, "batches", "--account-id", account)

    assert shown.returncode == 0 and listed.returncode == 0
    assert re.search(rf"^account\s+{re.escape(account)}$", shown.stdout, re.M)
    assert re.search(rf"^source\s+{re.escape(f'[/b]{SHOWN_ESCAPES}')}", shown.stdout, re.M)
    assert account in listed.stdout
    for output in (shown.stdout, listed.stdout):
        assert not any(char in output for char in "\x1b\x07\x9b"), output


def test_a_slow_batch_cancelled_half_way_ends_part_succeeded_part_cancelled_never_sent(
    slow_stack: LocalStack, slow_api: FakeApiControl, title: str, account: str
) -> None:
    producer = Producer(slow_stack.settings())
    titles = [f"{title} #{n}" for n in range(40)]
    batch = producer.submit_many(account, [{"title": t} for t in titles])
    watching = watch(slow_stack, batch.batch_id)
    until(lambda: batch.progress()[JobState.SUCCEEDED] >= 4, 30, "the first tickets")

    unconfirmed = run(slow_stack, "cancel", "--batch", batch.batch_id)
    assert unconfirmed.returncode == 1
    assert unconfirmed.stderr.endswith("error: nothing cancelled (confirm, or pass --yes)\n")
    result = run(slow_stack, "cancel", "--batch", batch.batch_id, "--yes")

    assert result.returncode in (0, 1), result.stderr  # 1: some were in flight
    summary = CANCEL_SUMMARY.search(result.stdout)
    assert summary is not None, result.stdout
    cancelled, in_flight = int(summary[1]), int(summary[2])
    assert cancelled >= 10 and (result.returncode == 1) == (in_flight > 0)
    assert result.stdout.count(f"in flight: {IN_FLIGHT}") == in_flight
    counts = batch.wait(timeout=60)
    # A job in flight is cancelled too if its delivery hands it back (held by the rate).
    assert cancelled <= counts[JobState.CANCELLED] <= cancelled + in_flight
    assert counts[JobState.SUCCEEDED] + counts[JobState.CANCELLED] == 40
    created = {t: slow_api.created(t) for t in titles}
    assert sum(created.values()) == counts[JobState.SUCCEEDED]
    states = [producer.get(job_id) for job_id in batch.job_ids]
    for record, ticket_title in zip(states, titles, strict=True):
        assert record is not None
        if record.state == JobState.CANCELLED:
            assert slow_api.arrivals(ticket_title) == []  # never sent
        else:
            assert created[ticket_title] == 1

    out, err = watching.communicate(timeout=30)
    assert watching.returncode == 0, err
    assert "Traceback" not in out + err
    assert re.search(rf"^cancelled\s+{counts[JobState.CANCELLED]}$", out, re.M)
    assert re.search(r"^\d+/40 done: .*jobs/s", out, re.M)
    exported = run(slow_stack, "export", batch.batch_id, "--format", "jsonl")
    assert [json.loads(line)["line"] for line in exported.stdout.splitlines()] == list(range(40))


def test_ctrl_c_stops_watching_with_status_130_and_leaves_the_batch_running(
    slow_stack: LocalStack, slow_api: FakeApiControl, title: str, account: str
) -> None:
    producer = Producer(slow_stack.settings())
    batch = producer.submit_many(account, [{"title": f"{title} #{n}"} for n in range(20)])
    watching = watch(slow_stack, batch.batch_id)
    assert watching.stdout is not None
    first = watching.stdout.readline()  # watching now

    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=30)

    assert "/20 done: " in first
    assert watching.returncode == 130, (first, out, err)
    assert err == "stopped watching; the batch goes on\n"
    assert "Traceback" not in out + err
    progress = batch.progress()
    assert progress[JobState.QUEUED] + progress[JobState.RETRYING] > 0  # it goes on
    run(slow_stack, "cancel", "--batch", batch.batch_id, "--yes")
    batch.wait(timeout=60)
