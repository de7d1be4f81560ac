"""Files imported as one batch against a real (private) Redis: every row validated before
any is queued, the same file twice queues nothing twice, and a run that Redis cut short is
finished by running it again."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import redis

from ops.redis_server import RedisServer
from producers import Producer, Settings
from producers.files import BadRow, FileProblem, Format
from producers.imports import (
    NO_ACCOUNT,
    ImportInterrupted,
    ImportOptions,
    Stage,
    check_file,
    import_file,
)
from worker.store.batches import Batches
from worker.store.keys import BATCH_INDEX, JOB_PREFIX

ACCOUNT = "acct-1"
OPTIONS = ImportOptions(account_id=ACCOUNT)
PRIORITY_REFUSED = (
    "ticket.priority.value: Input should be 'lowest', 'low', 'medium', 'high', 'highest' or "
    "'unmapped_value'"
)


@pytest.fixture
def producer(redis_server: RedisServer) -> Producer:
    return Producer(Settings(redis_url=redis_server.url))


@pytest.fixture
def batches(producer: Producer) -> Batches:
    return Batches(producer.store)


def jsonl(tmp_path: Path, *rows: dict[str, Any] | str, name: str = "tickets.jsonl") -> Path:
    """A JSONL file of these rows (a str is written as it is: a broken line)."""
    path = tmp_path / name
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def titled(count: int) -> list[dict[str, Any]]:
    return [{"title": f"ticket {n}"} for n in range(1, count + 1)]


def job_keys(client: redis.Redis) -> list[str]:
    return list(client.scan_iter(f"{JOB_PREFIX}*"))


def idempotency_keys(producer: Producer, batches: Batches, batch_id: str | None) -> list[str]:
    assert batch_id is not None
    records = [producer.store.get(job_id) for job_id in batches.job_ids(batch_id)]
    return [record.idempotency_key or "" for record in records if record is not None]


def test_a_row_s_idempotency_key_is_its_own_else_the_file_s_hash_and_its_line(
    producer: Producer, batches: Batches, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path,
        {"title": "one"},
        {"ticket": {"title": "two"}, "idempotency_key": "mine-2"},
        {"title": "three"},
    )
    prefix = "import-" + hashlib.sha256(path.read_bytes()).hexdigest()[:24]

    report = import_file(producer, path, "jsonl", OPTIONS)

    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (report.rows, report.accepted, report.already_known, report.rejected) == (3, 3, 0, 0)
    keys = idempotency_keys(producer, batches, report.batch_id)
    assert keys == [f"{prefix}-1", "mine-2", f"{prefix}-3"]


def test_the_same_file_imported_again_queues_nothing_and_every_row_is_already_known(
    producer: Producer, batches: Batches, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, *titled(3))

    first = import_file(producer, path, "jsonl", OPTIONS)
    again = import_file(producer, path, "jsonl", OPTIONS)

    assert first.batch_id != again.batch_id and again.batch_id is not None
    assert (again.accepted, again.already_known) == (0, 3)
    assert idempotency_keys(producer, batches, again.batch_id) == idempotency_keys(
        producer, batches, first.batch_id
    )
    assert len(job_keys(redis_client)) == 3
    info = batches.info(again.batch_id)
    assert info is not None
    assert (info.rows, info.accepted, info.already_known, info.source) == (3, 0, 3, str(path))


def test_with_skip_invalid_the_valid_rows_are_queued_and_the_bad_ones_reported_and_written(
    producer: Producer, batches: Batches, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path,
        {"title": "one"},
        {"title": "two", "priority": {"value": "urgent"}},
        {"title": "three"},
        '{"title": "four",',
    )
    rejects = io.StringIO()
    seen: list[BadRow] = []

    report = import_file(
        producer,
        path,
        "jsonl",
        ImportOptions(account_id=ACCOUNT, skip_invalid=True),
        rejects=rejects,
        on_reject=seen.append,
    )

    assert [(bad.line, bad.reason) for bad in seen] == [
        (2, PRIORITY_REFUSED),
        (4, "not valid JSON (column 18: Expecting property name enclosed in double quotes)"),
    ]
    written = [json.loads(line) for line in rejects.getvalue().splitlines()]
    assert [(row["line"], row["row"]) for row in written] == [
        (2, {"title": "two", "priority": {"value": "urgent"}}),
        (4, '{"title": "four",'),
    ]
    assert (report.rows, report.valid, report.accepted, report.rejected) == (4, 2, 2, 2)
    assert report.batch_id is not None
    assert [line for page in batches.pages(report.batch_id) for line, _ in page] == [1, 3]
    info = batches.info(report.batch_id)
    assert info is not None and (info.rows, info.accepted, info.rejected) == (4, 2, 2)


def test_without_skip_invalid_one_bad_row_queues_nothing_and_every_bad_row_is_reported(
    producer: Producer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path,
        {"title": "one", "priority": {"value": "urgent"}},
        *titled(3),
        {"title": "x" * 1001},
    )
    seen: list[BadRow] = []

    report = import_file(producer, path, "jsonl", OPTIONS, on_reject=seen.append)

    assert report.batch_id is None
    assert (report.rows, report.valid, report.rejected, report.accepted) == (5, 3, 2, 0)
    assert [bad.line for bad in seen] == [1, 5]
    assert seen[1].reason == "ticket.title: String should have at most 1000 characters"
    assert job_keys(redis_client) == [] and redis_client.zcard(BATCH_INDEX) == 0


def test_a_check_validates_the_whole_file_without_a_producer(tmp_path: Path) -> None:
    path = jsonl(tmp_path, *titled(2), {"ticket": {"title": "3"}, "account_id": "has space"})
    seen: list[BadRow] = []

    report = check_file(path, "jsonl", OPTIONS, on_reject=seen.append)

    assert (report.batch_id, report.rows, report.valid, report.rejected) == (None, 3, 2, 1)
    assert [bad.reason for bad in seen] == [
        "account_id: String should match pattern '^[\\x21-\\x7e]+$'"
    ]


def test_rows_naming_several_accounts_make_a_batch_of_no_one_account(
    producer: Producer, batches: Batches, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path,
        {"ticket": {"title": "one"}, "account_id": "acct-a"},
        {"ticket": {"title": "two"}, "account_id": "acct-b"},
        {"title": "no account"},
    )
    seen: list[BadRow] = []

    report = import_file(
        producer, path, "jsonl", ImportOptions(skip_invalid=True), on_reject=seen.append
    )

    assert [(bad.line, bad.reason) for bad in seen] == [(3, NO_ACCOUNT)]
    assert report.batch_id is not None
    info = batches.info(report.batch_id)
    assert info is not None and info.account_id is None
    records = [producer.store.get(job_id) for job_id in batches.job_ids(report.batch_id)]
    assert [record.account_id for record in records if record] == ["acct-a", "acct-b"]


def test_a_batch_whose_rows_name_one_account_is_that_account_s_over_the_default(
    producer: Producer, batches: Batches, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, *({"ticket": row, "account_id": "acct-a"} for row in titled(2)))

    report = import_file(producer, path, "jsonl", OPTIONS)

    assert report.batch_id is not None
    info = batches.info(report.batch_id)
    assert info is not None and info.account_id == "acct-a"


def test_rows_are_queued_a_chunk_at_a_time_in_their_order_and_counted_on_the_batch(
    producer: Producer, batches: Batches, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, *titled(7))
    queued: list[tuple[int, int | None]] = []

    def progress(stage: Stage, done: int, total: int | None) -> None:
        if stage is Stage.QUEUEING:
            queued.append((done, total))

    report = import_file(
        producer,
        path,
        "jsonl",
        ImportOptions(account_id=ACCOUNT, chunk_rows=3),
        on_progress=progress,
    )

    assert queued == [(3, 7), (6, 7), (7, 7)]
    assert report.batch_id is not None
    assert [line for page in batches.pages(report.batch_id) for line, _ in page] == list(
        range(1, 8)
    )
    info = batches.info(report.batch_id)
    assert info is not None and (info.rows, info.accepted) == (7, 7)


@pytest.fixture
def piped(tmp_path: Path) -> Iterator[tuple[Path, BinaryIO]]:
    """A file, and the same bytes coming down a pipe (which cannot be read twice)."""
    path = jsonl(tmp_path, *titled(3))
    read_end, write_end = os.pipe()

    def feed() -> None:
        with open(write_end, "wb") as writer:
            writer.write(path.read_bytes())

    feeder = threading.Thread(target=feed)
    feeder.start()
    with open(read_end, "rb") as stream:
        yield path, stream
    feeder.join()


def test_a_stream_is_spooled_and_names_the_same_jobs_as_the_file_it_came_from(
    producer: Producer, piped: tuple[Path, BinaryIO]
) -> None:
    path, stream = piped
    assert not stream.seekable()

    from_stream = import_file(producer, stream, "jsonl", OPTIONS)
    from_file = import_file(producer, path, "jsonl", OPTIONS)

    assert from_stream.sha256 == from_file.sha256
    assert (from_stream.accepted, from_file.already_known) == (3, 3)


def test_redis_failing_part_way_says_how_far_it_got_and_running_again_queues_the_rest(
    producer: Producer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = jsonl(tmp_path, *titled(6))
    options = ImportOptions(account_id=ACCOUNT, chunk_rows=2)

    def fill_redis(stage: Stage, done: int, total: int | None) -> None:
        if stage is Stage.QUEUEING:
            redis_client.config_set("maxmemory", 1)  # every write refused from now on

    with pytest.raises(ImportInterrupted) as caught:
        import_file(producer, path, "jsonl", options, on_progress=fill_redis)

    assert (caught.value.queued, caught.value.valid) == (2, 6)
    assert "2 of 6 rows were queued" in str(caught.value)
    assert "Run the same import again to queue the rest" in str(caught.value)
    assert len(job_keys(redis_client)) == 2
    redis_client.config_set("maxmemory", 0)

    again = import_file(producer, path, "jsonl", options)

    assert (again.accepted, again.already_known) == (4, 2)
    assert len(job_keys(redis_client)) == 6


@pytest.mark.parametrize(
    ("fmt", "content"), [("jsonl", b""), ("jsonl", b"\n\n"), ("csv", b"title,description\n")]
)
def test_a_file_with_no_rows_is_a_file_problem(tmp_path: Path, fmt: Format, content: bytes) -> None:
    path = tmp_path / f"empty.{fmt}"
    path.write_bytes(content)

    with pytest.raises(FileProblem, match="no rows: the file holds nothing to import"):
        check_file(path, fmt, OPTIONS)


def test_a_key_the_file_gives_twice_refuses_the_later_row_naming_the_first(
    producer: Producer, tmp_path: Path
) -> None:
    path = jsonl(
        tmp_path,
        {"ticket": {"title": "A"}, "idempotency_key": "k1"},
        {"ticket": {"title": "B"}, "idempotency_key": "k1"},
        {"ticket": {"title": "B elsewhere"}, "idempotency_key": "k1", "account_id": "acct-2"},
        {"ticket": {"title": "C"}, "idempotency_key": "k2"},
    )
    seen: list[BadRow] = []

    report = import_file(
        producer,
        path,
        "jsonl",
        ImportOptions(account_id=ACCOUNT, skip_invalid=True),
        on_reject=seen.append,
    )

    assert [(bad.line, bad.reason) for bad in seen] == [
        (2, "idempotency_key: 'k1' was given on line 1 already")
    ]
    assert (report.accepted, report.already_known, report.rejected) == (3, 0, 1)
