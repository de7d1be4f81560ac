"""``ticketq`` against an adversarial user: outside text printed as it is (never as markup
or terminal escapes), input that is not a ticket body, a Redis that is not there and
settings that cannot work each end in one unwrapped line and the right exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import redis

from ops.fakeapi_client import FakeApiControl
from ops.redis_server import RedisServer, free_port
from ops.stack import LocalStack
from producers import BrokerError, BrokerUnavailable, Producer, Settings
from producers.client import JobHandle

pytestmark = pytest.mark.integration

ESCAPES = "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\\x07\x9b31m"
SHOWN_ESCAPES = "\\x1b]8;;http://evil.example\\x1b\\click"
MARKUP_MESSAGE = "Field [/oops] is [link=http://evil.example]invalid[/link]"


def run(env: Mapping[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """``ticketq`` with raw bytes in, its output decoded so that stray escapes stay visible."""
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli.app", *args],
        input=stdin,
        capture_output=True,
        env=dict(env),
        timeout=60,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "backslashreplace"),
        done.stderr.decode("utf-8", "backslashreplace"),
    )


def one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The single ``error:`` line a refused command prints, after the checks every one obeys."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def no_terminal_control(output: str) -> None:
    assert not any(char in output for char in "\x1b\x07\x9b"), output


# Case 2: outside text is printed as text


def test_markup_and_escapes_in_a_failed_job_print_as_plain_text_in_every_listing(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    account = f"[/acct]-{title.rsplit(' ', 1)[-1]}"
    ref = f"[/bold]{ESCAPES}"
    fake_api.script(title, {"status": 422, "message": f"{MARKUP_MESSAGE} {ESCAPES}"})
    odd = producer.submit(account, {"title": title}, ref=ref)
    plain_title = f"{title} plain"
    fake_api.script(plain_title, {"status": 422, "message": "Project is archived"})
    plain = producer.submit(account, {"title": plain_title})
    assert odd.wait(timeout=30).state == plain.wait(timeout=30).state == "failed"
    env = stack.child_env()

    listing = run(env, "dead", "list", "--account-id", account)
    shown = run(env, "status", odd.job_id)
    found = run(env, "find", "--account-id", account, "--ref", ref)

    for result in (listing, shown, found):
        assert result.returncode == 0, result.stderr
        assert "[/acct]" in result.stdout and "[/bold]" in result.stdout
        assert "[/oops]" in result.stdout and "[link=http://evil.example]" in result.stdout
        assert "\\x1b]8;;http://evil" in result.stdout
        no_terminal_control(result.stdout + result.stderr)
    assert odd.job_id in listing.stdout and plain.job_id in listing.stdout
    assert SHOWN_ESCAPES in shown.stdout


def test_markup_in_body_keys_and_file_names_prints_as_plain_text_in_submit_errors(
    stack: LocalStack, tmp_path: Path
) -> None:
    (tmp_path / "[").mkdir()
    body = tmp_path / "[" / "x]"
    body.write_text(json.dumps({"[/red]": "x"}))
    env = stack.child_env()

    refused = one_error_line(run(env, "submit", "--account-id", "a", str(body)), 2)
    missing = one_error_line(run(env, "submit", "--account-id", "a", f"{tmp_path}/{ESCAPES}"), 2)
    not_json = one_error_line(run(env, "submit", "--account-id", "[/a]", str(tmp_path)), 2)

    assert "ticket.[/red]: unknown field" in refused
    assert SHOWN_ESCAPES in missing and "No such file or directory" in missing
    assert "Is a directory" in not_json
    no_terminal_control(refused + missing + not_json)


def test_an_unknown_job_id_and_ref_are_echoed_as_plain_text(stack: LocalStack) -> None:
    env = stack.child_env()

    status = one_error_line(run(env, "status", f"[/x]{ESCAPES}"), 1)
    find = one_error_line(run(env, "find", "--account-id", "[/a]", "--ref", "[/b]"), 1)

    assert f"no job [/x]{SHOWN_ESCAPES}" in status
    assert "no job with ref '[/b]'" in find
    no_terminal_control(status)


# Case 7: input that is not a ticket body, long errors, Redis away, the Python API


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_input_that_is_not_utf8_is_refused_in_one_line_naming_it(
    stack: LocalStack, tmp_path: Path, where: str
) -> None:
    data = b'{"title": "caf\xe9"}'
    path = tmp_path / "latin1.json"
    path.write_bytes(data)
    args = [str(path)] if where == "file" else ["-"]

    result = run(stack.child_env(), "submit", "--account-id", "a", *args, stdin=data)

    line = one_error_line(result, 2)
    assert f"{path if where == 'file' else 'standard input'}: not UTF-8" in line


@pytest.mark.parametrize("where", ["/dev/zero", "stdin"])
def test_input_far_larger_than_a_body_is_refused_after_reading_a_mebibyte(
    stack: LocalStack, where: str
) -> None:
    args, stdin = ([where], b"") if where != "stdin" else (["-"], b" " * (3 << 20))

    started = time.monotonic()
    result = run(stack.child_env(), "submit", "--account-id", "a", *args, stdin=stdin)

    assert "more than 1024 KiB" in one_error_line(result, 2)
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[" * 100_000, "ticket.0.0.0."),
        ('{"unified_custom_fields": {"score": NaN}}', "ticket.unified_custom_fields.score: NaN"),
    ],
)
def test_json_nested_past_the_limit_or_holding_nan_is_refused_in_one_line(
    stack: LocalStack, body: str, named: str
) -> None:
    result = run(stack.child_env(), "submit", "--account-id", "a", "-", stdin=body.encode())

    assert named in one_error_line(result, 2)


def test_a_file_of_many_tickets_given_to_submit_points_to_import(stack: LocalStack) -> None:
    lines = b'{"title": "a"}\n{"title": "b"}\n'

    result = run(stack.child_env(), "submit", "--account-id", "a", "-", stdin=lines)

    assert one_error_line(result, 2) == (
        "error: standard input: ticket: not JSON (line 2, column 1: Extra data); one ticket "
        "per line is a file to import: ticketq import FILE\n"
    )


def test_a_long_error_is_one_unwrapped_line_when_output_is_not_a_terminal(
    stack: LocalStack,
) -> None:
    body = json.dumps({f"unknown_field_{n}": n for n in range(12)})

    result = run(stack.child_env(), "submit", "--account-id", "a", "-", stdin=body.encode())

    line = one_error_line(result, 2)
    assert len(line) > 200
    assert all(f"ticket.unknown_field_{n}: unknown field" in line for n in range(12))


def unreachable_redis_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TICKETQ_")}
    return {**env, "TICKETQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


# Every command that reads or writes Redis.
REDIS_COMMANDS = [
    ["submit", "--account-id", "a", "-"],
    ["status", "0" * 32],
    ["find", "--account-id", "a", "--ref", "r"],
    ["dead", "list"],
    ["dead", "replay", "--all"],
    ["dead", "purge", "--all", "--yes"],
]


@pytest.mark.parametrize("command", REDIS_COMMANDS)
def test_every_command_says_within_seconds_that_redis_cannot_be_reached(
    command: list[str],
) -> None:
    started = time.monotonic()
    result = run(unreachable_redis_env(), *command, stdin=b'{"title": "x"}')

    assert time.monotonic() - started < 8
    line = one_error_line(result, 1)
    assert "cannot reach Redis (TICKETQ_REDIS_URL)" in line and "refused" in line


def test_the_python_api_raises_producers_exceptions_that_name_the_cause(
    tmp_path: Path,
) -> None:
    unreachable = Settings(redis_url=unreachable_redis_env()["TICKETQ_REDIS_URL"])
    producer = Producer(unreachable, ride_out_restarts=False)  # the test need not wait
    handle = JobHandle(job_id="0" * 32, is_new=True, store=producer.store)
    calls: dict[str, Callable[[], object]] = {
        "submit": lambda: producer.submit("a", {"title": "x"}),
        "submit_many": lambda: producer.submit_many("a", [{"title": "x"}]),
        "get": lambda: producer.get("0" * 32),
        "find": lambda: producer.find("a", "r"),
        "wait": lambda: handle.wait(timeout=1),
    }
    for name, call in calls.items():
        with pytest.raises(BrokerUnavailable, match=r"cannot reach Redis.*refused") as raised:
            call()
        assert isinstance(raised.value.__cause__, redis.ConnectionError), name

    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        full = Producer(Settings(redis_url=server.url))
        full.store.redis.config_set("maxmemory", "1")
        with pytest.raises(BrokerError, match=r"Redis refused the request: .*OOM") as refused:
            full.submit("a", {"title": "x"})
    finally:
        server.stop()
    assert not isinstance(refused.value, BrokerUnavailable)
    assert isinstance(refused.value.__cause__, redis.ResponseError)


# Case 5, output side: a bad setting


BAD_SETTINGS = {"TICKETQ_MAX_ATTEMPTS": "many", "STACKONE_API_KEY": "sk-secret-never-shown"}


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        *(
            (command, BAD_SETTINGS)
            for command in [*REDIS_COMMANDS, ["worker"], ["fake-api"], ["demo"]]
        ),
        # Values that once ended in a traceback from lease arithmetic or redis-py instead.
        *(
            (
                ["status", "0" * 32],
                {variable: value, "STACKONE_API_KEY": BAD_SETTINGS["STACKONE_API_KEY"]},
            )
            for variable, value in [
                ("TICKETQ_CONNECT_TIMEOUT", "inf"),
                ("TICKETQ_INPROCESS_MAX_DELAY", "1e400"),
                ("TICKETQ_REDIS_URL", "redis://:sk-secret-never-shown@127.0.0.1:99999/0"),
                ("TICKETQ_REDIS_URL", "redis://127.0.0.1:6379/0?ssl_cert_reqs=bogus"),
                ("TICKETQ_REDIS_URL", "redis://127.0.0.1:6379/abc"),
            ]
        ),
    ],
)
def test_a_bad_setting_ends_every_command_with_one_line_naming_the_variable(
    command: list[str], bad: dict[str, str]
) -> None:
    result = run({**unreachable_redis_env(), **bad}, *command, stdin=b"{}")

    line = one_error_line(result, 2)
    assert next(iter(bad)) in line
    assert BAD_SETTINGS["STACKONE_API_KEY"] not in line


@pytest.mark.parametrize("command", [["--help"], ["dead", "--help"], ["submit", "--help"]])
def test_help_works_whatever_the_settings_say(command: list[str]) -> None:
    result = run({**unreachable_redis_env(), **BAD_SETTINGS}, *command)

    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


# Command-line arguments that are not UTF-8, and a record's fields on a pipe

NOT_UTF8 = os.fsdecode(b"\xff\xfe")  # as Python hands the bytes over: lone surrogates


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["status", NOT_UTF8], "JOB_ID"),
        (["find", "--account-id", "a1", "--ref", NOT_UTF8], "--ref"),
        (["find", "--account-id", NOT_UTF8, "--ref", "r"], "--account-id"),
        (["submit", "--account-id", NOT_UTF8, "-"], "--account-id"),
        (["submit", "--account-id", "a", "--ref", NOT_UTF8, "-"], "--ref"),
        (["submit", "--account-id", "a", "--idempotency-key", NOT_UTF8, "-"], "--idempotency-key"),
        (["dead", "list", "--account-id", NOT_UTF8], "--account-id"),
        (["dead", "replay", "0" * 32, NOT_UTF8], "JOB_ID"),
        (["dead", "replay", "--all", "--account-id", NOT_UTF8], "--account-id"),
        (["dead", "purge", NOT_UTF8], "JOB_ID"),
        (["dead", "purge", "--all", "--yes", "--account-id", NOT_UTF8], "--account-id"),
    ],
)
def test_an_argument_that_is_not_utf8_is_refused_in_one_line_naming_it(
    stack: LocalStack, args: list[str], named: str
) -> None:
    result = run(stack.child_env(), *args, stdin=b'{"title": "x"}')

    assert one_error_line(result, 2) == f"error: {named} is not valid UTF-8\n"


def test_a_record_prints_one_unwrapped_line_per_field_when_output_is_not_a_terminal(
    stack: LocalStack, producer: Producer, fake_api: FakeApiControl, title: str
) -> None:
    message = "Project is archived; " * 40
    fake_api.script(title, {"status": 422, "message": message})
    handle = producer.submit("acct-unwrapped", {"title": title})
    record = handle.wait(timeout=30)
    assert record.state == "failed"

    result = run(stack.child_env(), "status", handle.job_id)

    assert result.returncode == 0, result.stderr
    lines = dict(line.split(maxsplit=1) for line in result.stdout.splitlines())
    assert set(lines) == {name for name, value in record.public().items() if value is not None}
    assert json.loads(lines["error"]) == record.public()["error"]
    assert message.strip() in json.loads(lines["error"])["message"]
