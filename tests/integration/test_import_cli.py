"""``ticketq import`` as a person runs it, on real files written here, against real workers
and the stand-in: a CSV with bad rows checked, refused, then imported without them and
not twice; JSONL envelopes; broken files, each said in one line with its exit status."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from ops.fakeapi_client import FakeApiControl
from ops.redis_server import RedisServer
from ops.stack import LocalStack
from producers.client import Producer
from tests.integration.support import ticketq
from worker.store.keys import BATCH_INDEX, JOB_PREFIX

pytestmark = pytest.mark.integration

REFUSED = "nothing was queued (fix them, or give --skip-invalid --rejects FILE to queue the rest)"
PRIORITY_REFUSED = (
    "ticket.priority.value: Input should be 'lowest', 'low', 'medium', 'high', 'highest' or "
    "'unmapped_value'"
)
JSON_KEYS = {"batch_id", "rows", "accepted", "rejected", "already_known"}


def run_import(stack: LocalStack, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = ticketq(stack, "import", *map(str, args))
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert stack.config.api_key not in output
    return result


@pytest.fixture
def account(title: str) -> str:
    return f"acct-{title.rsplit(' ', 1)[-1]}"


def csv_rows(title: str) -> list[list[str]]:
    """Twelve rows (lines 2 to 13): three of them bad, on lines 4, 8 and 11."""
    rows = [[f"{title} {n}", f"row {n}, imported", "high", f"R-{n}"] for n in range(1, 13)]
    rows[2][2] = "urgent"
    rows[6][0] = "x" * 1001
    rows[9] = rows[9][:2]
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["title", "description", "priority", "ref"])
        writer.writerows(rows)
    return path


def good_titles(title: str) -> list[str]:
    return [f"{title} {n}" for n in range(1, 13) if n not in (3, 7, 10)]


def test_a_csv_with_bad_rows_is_checked_refused_imported_without_them_and_never_twice(
    stack: LocalStack,
    producer: Producer,
    fake_api: FakeApiControl,
    title: str,
    account: str,
    tmp_path: Path,
) -> None:
    path = write_csv(tmp_path / "tickets.csv", csv_rows(title))
    rejects = tmp_path / "rejects.csv"
    bad_lines = [
        f"line 4: {PRIORITY_REFUSED}",
        "line 8: ticket.title: String should have at most 1000 characters",
        "line 11: 2 cells where the header has 4 columns",
    ]

    dry = run_import(stack, path, "--account-id", account, "--dry-run")
    assert dry.returncode == 2
    assert dry.stderr.splitlines() == bad_lines
    assert dry.stdout == "dry run: rows 12: valid 9, rejected 3; nothing was queued\n"

    refused = run_import(stack, path, "--account-id", account)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [*bad_lines, f"error: bad rows: 3 of 12; {REFUSED}"]
    assert producer.find(account, "R-1") is None

    imported = run_import(
        stack, path, "--account-id", account, "--skip-invalid", "--rejects", rejects, "--wait"
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stderr.splitlines() == bad_lines
    summary, final, batch_id = imported.stdout.splitlines()
    assert summary == f"rows 12: accepted 9, already known 0, rejected 3 (written to {rejects})"
    assert final == "jobs 9: succeeded 9, failed 0, cancelled 0"
    assert len(batch_id) == 32
    assert [fake_api.created(name) for name in good_titles(title)] == [1] * 9
    with rejects.open(newline="") as written:
        rejected = list(csv.reader(written))
    assert rejected[0] == ["line", "reason", "title", "description", "priority", "ref"]
    assert [(row[0], row[1], row[-1]) for row in rejected[1:]] == [
        ("4", PRIORITY_REFUSED, "R-3"),
        ("8", "ticket.title: String should have at most 1000 characters", "R-7"),
        ("11", "2 cells where the header has 4 columns", "row 10, imported"),
    ]

    again = run_import(
        stack, path, "--account-id", account, "--skip-invalid", "--rejects", rejects, "--wait"
    )
    assert again.returncode == 0, again.stderr
    summary, final, second_batch = again.stdout.splitlines()
    assert summary == f"rows 12: accepted 0, already known 9, rejected 3 (written to {rejects})"
    assert final == "jobs 9: succeeded 9, failed 0, cancelled 0"
    assert second_batch != batch_id
    assert [len(fake_api.arrivals(name)) for name in good_titles(title)] == [1] * 9


def test_jsonl_bodies_and_envelopes_are_imported_and_json_reports_them(
    stack: LocalStack,
    producer: Producer,
    fake_api: FakeApiControl,
    title: str,
    account: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "tickets.jsonl"
    other = f"{account}-other"
    rows: list[dict[str, Any]] = [
        {"title": f"{title} body", "tags": ["a", "b"]},
        {"ticket": {"title": f"{title} envelope"}, "ref": "E-1", "idempotency_key": "key-e1"},
        {"ticket": {"title": f"{title} elsewhere"}, "ref": "E-2", "account_id": other},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    waited = run_import(stack, path, "--account-id", account, "--wait", "--json")

    assert waited.returncode == 0, waited.stderr
    report = json.loads(waited.stdout)
    assert set(report) == {*JSON_KEYS, "states"}
    assert (report["rows"], report["accepted"], report["rejected"]) == (3, 3, 0)
    assert report["already_known"] == 0 and report["states"] == {"succeeded": 3}
    enveloped = producer.find(account, "E-1")
    assert enveloped is not None and enveloped.idempotency_key == "key-e1"
    assert enveloped.batch_id == report["batch_id"] and enveloped.state == "succeeded"
    elsewhere = producer.find(other, "E-2")
    assert elsewhere is not None and elsewhere.state == "succeeded"
    for row in ("body", "envelope", "elsewhere"):
        assert fake_api.created(f"{title} {row}") == 1

    again = run_import(stack, path, "--account-id", account, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "batch_id": json.loads(again.stdout)["batch_id"],
        "rows": 3,
        "accepted": 0,
        "rejected": 0,
        "already_known": 3,
    }

    checked = run_import(stack, path, "--account-id", account, "--dry-run", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {
        "batch_id": None,
        "rows": 3,
        "accepted": 0,
        "rejected": 0,
        "already_known": 0,
    }


def test_waiting_on_a_batch_where_a_job_failed_exits_3(
    stack: LocalStack, fake_api: FakeApiControl, title: str, account: str, tmp_path: Path
) -> None:
    fake_api.script(f"{title} refused", {"status": 422, "message": "Project is archived"})
    path = tmp_path / "tickets.jsonl"
    path.write_text(f'{{"title": "{title} fine"}}\n{{"title": "{title} refused"}}\n')

    result = run_import(stack, path, "--account-id", account, "--wait")

    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[1] == "jobs 2: succeeded 1, failed 1, cancelled 0"


def test_standard_input_is_imported_once_whichever_way_it_comes(
    stack: LocalStack, fake_api: FakeApiControl, title: str, account: str, tmp_path: Path
) -> None:
    text = json.dumps({"title": f"{title} piped"}) + "\n"
    path = tmp_path / "piped.jsonl"
    path.write_text(text)

    piped = ticketq(stack, "import", "-", "--format", "jsonl", "--account-id", account, "--wait",
                    stdin=text)  # fmt: skip
    from_file = run_import(stack, path, "--account-id", account)

    assert piped.returncode == 0, piped.stderr
    assert from_file.stdout.startswith("rows 1: accepted 0, already known 1, rejected 0\n")
    assert fake_api.created(f"{title} piped") == 1


@pytest.mark.parametrize(
    ("name", "content", "rows"),
    [
        ("bom.csv", "\ufefftitle,description\n{title} 1,with a BOM\n", 1),
        ("crlf.csv", 'title,description\r\n{title} 1,"two\r\nlines"\r\n{title} 2,x\r\n', 2),
        ("blank-lines.jsonl", '\n{{"title": "{title} 1"}}\n\n\n{{"title": "{title} 2"}}\n\n', 2),
    ],
)
def test_a_bom_crlf_line_ends_and_blank_lines_are_read_as_usual(
    stack: LocalStack,
    fake_api: FakeApiControl,
    title: str,
    account: str,
    tmp_path: Path,
    name: str,
    content: str,
    rows: int,
) -> None:
    path = tmp_path / name
    path.write_bytes(content.format(title=title).encode())

    result = run_import(stack, path, "--account-id", account, "--wait")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"rows {rows}: accepted {rows}, already known 0")
    assert [fake_api.created(f"{title} {n}") for n in range(1, rows + 1)] == [1] * rows


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        (
            "not-utf8.csv",
            b"title\nok\ncaf\xe9\n",
            ["line 3: not UTF-8 text (byte 4)", f"error: bad rows: 1 of 2; {REFUSED}"],
        ),
        (
            "quote.csv",
            b'title,description\nA,"never closed\nB,x\n',
            ["error: {path}: line 2: a quote opened in the record starting here is never closed"],
        ),
        (
            "after-quote.csv",
            b'title\n"A"x\nB\n',
            [
                "line 2: not valid CSV: ',' expected after '\"'",
                f"error: bad rows: 1 of 2; {REFUSED}",
            ],
        ),
        (
            "broken.jsonl",
            b'{"title": "a"}\n{"title": \n',
            [
                "line 2: not valid JSON (column 11: Expecting value)",
                f"error: bad rows: 1 of 2; {REFUSED}",
            ],
        ),
        (
            "wrong-type.jsonl",
            b'{"title": "a", "tags": "checkout"}\n',
            [
                "line 1: ticket.tags: Input should be a valid list",
                "error: no valid row among 1; nothing was queued",
            ],
        ),
        (
            "oversized.csv",
            b"title,description\nA," + b"x" * 100_001 + b"\n",
            [
                "line 2: ticket.content.0.plain: String should have at most 100000 characters",
                "error: no valid row among 1; nothing was queued",
            ],
        ),
        (
            "no-header.csv",
            b"Checkout is down,high\nRefund,low\n",
            ["error: {path}: line 1: unknown column 'Checkout is down', 'high'"],
        ),
        (
            "header-not-utf8.csv",
            b"titl\xe9\nok\n",
            ["error: {path}: line 1: the header row cannot be read: not UTF-8 text (byte 5)"],
        ),
        (
            "array.jsonl",
            b'[{"title": "a"}]\n',
            [
                "error: {path}: line 1: not JSONL, one JSON object a line: expected a JSON "
                "object, not an array"
            ],
        ),
        ("empty.jsonl", b"", ["error: {path}: no rows: the file holds nothing to import"]),
    ],
)
def test_a_broken_file_is_said_in_one_line_per_problem_and_nothing_is_queued(
    stack: LocalStack, tmp_path: Path, name: str, content: bytes, said: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    result = run_import(stack, path, "--account-id", "acct-broken")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line.format(path=path) for line in said]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["{tmp}/missing.csv"], "error: {tmp}/missing.csv: No such file or directory"),
        (["{tmp}", "--format", "csv"], "error: {tmp}: Is a directory"),
        (["{tmp}/tickets.json"], "error: '{tmp}/tickets.json': cannot tell its format"),
        (["-"], "error: standard input has no name to tell its format by: give csv or jsonl"),
        (["{tmp}/t.csv", "--format", "xml"], "error: unknown format 'xml': csv or jsonl"),
        (
            ["{tmp}/t.csv", "--skip-invalid"],
            "error: --skip-invalid needs --rejects FILE, where the rows left out are written",
        ),
        (["{tmp}/t.csv", "--dry-run", "--wait"], "error: --dry-run queues nothing for --wait"),
        (["{tmp}/t.csv", "--rejects", "{tmp}/t.csv"], "error: --rejects names the input file"),
        (["{tmp}/t.csv", "--account-id", "my acct"], "error: --account-id: String should match"),
    ],
)
def test_a_file_that_cannot_be_opened_or_a_bad_option_is_one_line_and_exit_2(
    stack: LocalStack, tmp_path: Path, args: list[str], said: str
) -> None:
    (tmp_path / "t.csv").write_text("title\nA\n")

    result = run_import(stack, *(arg.format(tmp=tmp_path) for arg in args))

    assert result.returncode == 2
    assert result.stderr.startswith(said.format(tmp=tmp_path))
    assert len(result.stderr.splitlines()) == 1
    assert (tmp_path / "t.csv").read_text() == "title\nA\n"


def test_a_ctrl_c_part_way_says_how_many_rows_were_queued_and_the_same_command_finishes(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Against a Redis of its own with no worker (20,000 jobs would hold up the shared
    stack's bulk lane for minutes): Ctrl-C once the batch is opened."""
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(f'{{"title": "ticket {n}"}}\n' for n in range(20_000)))
    command = [sys.executable, "-m", "ops.cli.app", "import", str(path), "--account-id", "a"]
    env = {**os.environ, "TICKETQ_REDIS_URL": redis_server.url}
    running = subprocess.Popen(
        command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while not redis_client.zcard(BATCH_INDEX) and time.monotonic() < deadline:
        time.sleep(0.01)
    running.send_signal(signal.SIGINT)
    out, err = running.communicate(timeout=30)

    assert running.returncode == 130 and out == "", err
    said = re.fullmatch(
        r"error: interrupted after ([\d,]+) rows were queued; run the same command again to "
        r"queue the rest \(rows already queued are not queued twice\)\n",
        err,
    )
    assert said is not None, err
    queued = int(said[1].replace(",", ""))
    assert 0 < queued < 20_000 and queued % 2_000 == 0  # whole chunks
    assert len(list(redis_client.scan_iter(f"{JOB_PREFIX}*"))) == queued

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == (
        f"rows 20,000: accepted {20_000 - queued:,}, already known {queued:,}, rejected 0"
    )
