"""The Lua script registry: every script speaks only names its prelude defines (made from
the Python enums), loads and runs in a real (private) Redis, and comes back after Redis
forgets it."""

from __future__ import annotations

import re
import time
from importlib.resources import files
from typing import Any, cast

import pytest
import redis

from worker.contract import ErrorKind, JobError, JobSpec, JobState
from worker.store.jobs import Claim, JobStore, retrying, spec_from_claim
from worker.store.keys import DUE_INDEX, FAILED_INDEX, QUEUES, job_key
from worker.store.scripts import (
    ADMIT,
    CANCEL,
    CLAIM,
    CREATE,
    DUE,
    PAUSE,
    PURGE,
    RELEASE,
    RENEW,
    REPLAY,
    SCRIPTS,
    SENT,
    SLOTS,
    SWEEP,
    TRANSITION,
    UNCREATE,
    Call,
    CancelCode,
    ClaimCode,
    DeadLetterCode,
    Recorded,
    RenewCode,
    Script,
    run,
)

REDIS_GLOBALS = {"KEYS", "ARGV"}


def names_used(source: str) -> set[str]:
    """UPPER_CASE names in Lua code, leaving out comments and string literals."""
    code = re.sub(r"--[^\n]*", "", source)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    return set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|\b[A-Z]{2,}\b", code))


def names_defined(prelude: str) -> set[str]:
    return set(re.findall(r"^local (\w+) =", prelude, flags=re.MULTILINE))


def test_every_lua_file_is_declared_once_in_the_registry() -> None:
    on_disk = sorted(
        entry.name
        for entry in files("worker.store").joinpath("lua").iterdir()
        if entry.name.endswith(".lua")
    )

    assert sorted(script.file for script in SCRIPTS) == on_disk


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.file)
def test_a_script_uses_only_names_its_prelude_defines(script: Script) -> None:
    undefined = names_used(script.source) - names_defined(script.prelude) - REDIS_GLOBALS

    assert undefined == set()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda script: script.file)
def test_a_script_spells_no_state_or_error_kind_itself(script: Script) -> None:
    spelled = {f'"{state}"' for state in JobState} | {'"poison"', '"uncertain"'}

    assert [word for word in spelled if word in script.source] == []


def test_the_prelude_is_made_from_the_python_enums() -> None:
    prelude = CLAIM.prelude

    assert 'local STATE_FAILED = "failed"' in prelude
    assert 'local KIND_POISON = "poison"' in prelude
    assert 'local CLAIM_NOT_DUE = "not_due"' in prelude
    assert "local REASON_PROBE = 6" in ADMIT.prelude
    assert PAUSE.prelude.count("\n") == 1  # a script that speaks no enum gets none


@pytest.mark.parametrize("state", list(JobState))
def test_is_final_in_lua_agrees_with_python(redis_client: redis.Redis, state: JobState) -> None:
    final = redis_client.eval(f"{CLAIM.prelude}return is_final(ARGV[1])", 0, state.value)

    assert (final == 1) is state.is_final


def test_a_misspelt_name_fails_loudly_instead_of_reading_nil(redis_client: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="CLAIM_MISING"):
        redis_client.eval(f"{CLAIM.prelude}return CLAIM_MISING", 0)


def every_script_once() -> list[Call]:
    """A call of each script that touches nothing: a job that does not exist, no requests."""
    job = job_key("missing")
    return [
        Call(CREATE, [DUE_INDEX, ""], ["1", "1", "interactive", "", "0"]),
        Call(SENT, [DUE_INDEX], ["ticketq:job:", "1"]),
        Call(CLAIM, [job, DUE_INDEX, FAILED_INDEX], ["1", "2", "token", "missing", 3]),
        Call(RENEW, [job, DUE_INDEX], ["token", "1", "2", "missing"]),
        Call(
            TRANSITION,
            [job, FAILED_INDEX, "", "", DUE_INDEX, "", "", "", "", "", "", "", "", ""],
            [
                "token",
                "failed",
                "1",
                "0",
                "missing",
                "",
                "0",
                "",
                "",
                "10",
                "0",
                "1000",
                "",
                "",
                "",
            ],
        ),
        Call(DUE, [DUE_INDEX, *QUEUES.values()], ["1", "2", 10, "ticketq:job:"]),
        Call(CANCEL, [job, DUE_INDEX, "", "", "", "", "", ""], ["1", "missing", "0", "", ""]),
        Call(REPLAY, [job, FAILED_INDEX, DUE_INDEX], ["1", "2", "missing"]),
        Call(PURGE, [job, FAILED_INDEX, DUE_INDEX, "", "", "", "", ""], ["missing", "", ""]),
        Call(
            ADMIT,
            ["s", "p", "rp", "r", "pr", "o", "op", "li", "lb", "sh", "t", "is"],
            [1000, 0, 1000, 1000, 0, 0, 0],
        ),
        Call(PAUSE, ["ticketq:test:pause"], [1000]),
        Call(
            RELEASE,
            ["li", "lb", "sh", "t", "rel", "s", DUE_INDEX, "p", "rp", "r", "o", "pr", "op"],
            [1000, 1000, 10, 0, "1", "ticketq:job:"],
        ),
        Call(UNCREATE, [DUE_INDEX, "", job, "", "", "", ""], ["missing", "", "1", "", ""]),
        Call(SLOTS, ["ticketq:test:freed", "ticketq:test:wake"], [1, 1000]),
        Call(SWEEP, ["ticketq:test:bucket"], []),
    ]


def test_every_script_loads_and_runs_in_one_pipeline(redis_client: redis.Redis) -> None:
    calls = every_script_once()
    assert [call.script for call in calls] == list(SCRIPTS)

    answers = run(redis_client, calls)

    assert answers[:9] == [
        [],
        0,
        [ClaimCode.MISSING],
        RenewCode.LOST_LEASE,
        Recorded.MISSING,
        [],
        [CancelCode.MISSING],
        [DeadLetterCode.MISSING],
        [DeadLetterCode.MISSING],
    ]
    assert answers[9] == [] and answers[10] > 0 and answers[11] == 0 and answers[12] == 0
    assert all(redis_client.script_exists(*(script.sha for script in SCRIPTS)))


def test_scripts_redis_forgot_are_loaded_again_and_each_call_runs_once(
    redis_client: redis.Redis,
) -> None:
    run(redis_client, every_script_once())
    redis_client.script_flush()  # as after a restart
    job = job_key("j-1")
    create = Call(
        CREATE,
        [DUE_INDEX, "", job, "", "", "", ""],
        ["1", "1", "interactive", "", "0", "j-1", "acct", "{}", "", "", "0", "", ""],
    )

    answers = run(redis_client, [create, Call(PAUSE, ["ticketq:test:pause"], [60_000])])

    assert answers[0] == [["j-1", 1, ""]]
    assert redis_client.hget(job, "state") == "queued"
    assert redis_client.zcard(DUE_INDEX) == 1
    assert redis_client.pttl("ticketq:test:pause") > 59_000


def test_only_the_calls_whose_script_redis_forgot_are_sent_again(
    redis_client: redis.Redis,
) -> None:
    """After a restart one caller may have loaded a script again before another pipeline
    mixes it with one still missing: the loaded call ran already and must not run twice
    (a second claim of the same job would answer "leased" to the delivery that holds it)."""
    job = job_key("j-2")
    create = Call(
        CREATE,
        [DUE_INDEX, "", job, "", "", "", ""],
        ["1", "1", "interactive", "", "0", "j-2", "acct", "{}", "", "", "0", "", ""],
    )
    run(redis_client, [create])
    redis_client.script_flush()
    redis_client.script_load(CLAIM.text)  # loaded again; PAUSE is not
    claim = Call(CLAIM, [job, DUE_INDEX, FAILED_INDEX], ["2", "100", "token", "j-2", "3"])

    answers = run(redis_client, [claim, Call(PAUSE, ["ticketq:test:pause"], [60_000])])

    assert answers[0][0] == ClaimCode.OK
    assert redis_client.hget(job, "deliveries") == "1"


class ReadInTwoParts:
    """A pipeline that Redis reads in two parts, serving another worker's SCRIPT LOAD of
    ``script`` in between: Redis serves other connections between the reads of a long
    pipeline. At a worker's start no one has run claim.lua or transition.lua yet, so every
    thread's first pipeline meets NOSCRIPT, and the first thread to load the script does so
    while another's pipeline is being read."""

    def __init__(self, client: redis.Redis, script: Script) -> None:
        self._client = client
        self._script = script
        self._calls: list[tuple[Any, ...]] = []

    def __enter__(self) -> ReadInTwoParts:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def evalsha(self, *args: Any) -> None:
        self._calls.append(args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        half = len(self._calls) // 2
        first = self._send(self._calls[:half], raise_on_error)
        if not self._client.script_exists(self._script.sha)[0]:
            self._client.script_load(self._script.text)  # another worker, between two reads
        return first + self._send(self._calls[half:], raise_on_error)

    def _send(self, calls: list[tuple[Any, ...]], raise_on_error: bool) -> list[Any]:
        with self._client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.evalsha(*args)
            return list(pipe.execute(raise_on_error=raise_on_error))


class AnotherWorkerLoads:
    """A Redis client whose every pipeline is read in two parts (``ReadInTwoParts``)."""

    def __init__(self, client: redis.Redis, script: Script) -> None:
        self._client = client
        self._script = script

    def pipeline(self, transaction: bool = False) -> ReadInTwoParts:
        return ReadInTwoParts(self._client, self._script)

    def script_load(self, text: str) -> str:
        return self._client.script_load(text)


def starting_worker_store(redis_client: redis.Redis, script: Script) -> JobStore:
    """The job store of a worker whose pipelines of ``script`` meet another worker loading it."""
    client = cast(redis.Redis, AnotherWorkerLoads(redis_client, script))
    return JobStore(client, succeeded_ttl=60, lease_seconds=60)


def bulk_jobs(redis_client: redis.Redis, count: int) -> list[str]:
    store = JobStore(redis_client, succeeded_ttl=60, lease_seconds=60)
    spec = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": "t"}})
    return [stored.job_id for stored in store.create_many([spec] * count, "bulk")]


def test_a_batch_claimed_while_another_worker_loads_claim_lua_is_claimed_once_per_job(
    redis_client: redis.Redis,
) -> None:
    """The calls Redis read before the script was loaded met NOSCRIPT and ran nothing; the
    rest ran. Sending the whole pipeline again (as the registry did before 659b27c) claimed
    those a second time, answering "leased" to their own delivery: left unsent until their
    leases ran out, then taken over as uncertain."""
    job_ids = bulk_jobs(redis_client, 6)
    redis_client.script_flush()  # no worker has claimed anything yet

    claims = starting_worker_store(redis_client, CLAIM).claim_many(job_ids)

    assert [isinstance(claim, Claim) for claim in claims] == [True] * 6
    assert [redis_client.hget(job_key(job_id), "deliveries") for job_id in job_ids] == ["1"] * 6


def test_outcomes_recorded_while_another_worker_loads_transition_lua_are_recorded_once(
    redis_client: redis.Redis,
) -> None:
    """Issue 10's `outcome retrying not recorded: lost_lease` for 8 jobs within a second of
    a worker's start: the outcomes Redis read after another thread loaded transition.lua
    were recorded, and sending the whole pipeline again (as the registry did before
    659b27c) found them no longer running under the delivery's lease."""
    store = JobStore(redis_client, succeeded_ttl=60, lease_seconds=60)
    claims = store.claim_many(bulk_jobs(redis_client, 8))
    redis_client.script_flush()  # no worker has recorded an outcome yet
    error = JobError(kind=ErrorKind.RETRYABLE, message="waiting for the rate limit")
    due_at = time.time() + 60
    outcomes = [
        retrying(claim, spec_from_claim(claim), error, due_at=due_at, attempts=0)
        for claim in claims
        if isinstance(claim, Claim)
    ]

    recorded = starting_worker_store(redis_client, TRANSITION).apply(outcomes)

    assert recorded == [Recorded.OK] * 8
    assert {redis_client.hget(job_key(c.claim.job_id), "state") for c in outcomes} == {"retrying"}
