"""The Lua scripts, each declared once with the Python enums it speaks, and the one way to
run them.

A script never spells a state, an error kind or a result code itself: each gets a short
prelude generated from the enums below (``local STATE_FAILED = "failed"``, ``local
CLAIM_MISSING = "missing"``, and ``is_final(state)`` from ``JobState.is_final``), so Python
and Lua cannot drift apart, and a misspelt name fails loudly (Redis 7 refuses to read an
undefined global). Each script has one vocabulary of result codes, as BullMQ's ``ErrorCode``.

A script that moves jobs also gets ``lua/lib/moves.lua`` in its prelude: ``moved(...)``
keeps the fleet's counters (worker/store/stats.py) in the same atomic step as the move, so
every script keeps them one way; the key names it writes come from ``keys.py``. A script
that reads or writes the job indexes gets ``lua/lib/indexes.lua`` (``index_get``,
``index_set``, ``index_drop``, ``index_move``, ``live``) and ``JOB_PREFIX``. A script that
reads or writes a record's own fields or body by name (create.lua writes them compactly,
versions before wrote full names) gets ``lua/lib/records.lua`` and ``COMPACT``, the
compact names from ``keys.py``. A script that puts jobs in an API key's fair lines gets
``lua/lib/lines.lua`` (``join_line``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from enum import Enum, IntEnum, StrEnum
from functools import cached_property
from importlib.resources import files
from typing import Any, NamedTuple

import redis
from redis.exceptions import NoScriptError

from worker.contract import ErrorKind, JobState
from worker.store.keys import (
    COMPACT_FIELDS,
    COUNTS,
    JOB_PREFIX,
    MINUTE_PREFIX,
    MINUTE_TTL,
    QUEUED_PREFIX,
    SPEC_FIELDS,
)


class ClaimCode(StrEnum):
    """claim.lua: the job is claimed (OK), or why a delivery may not attempt it."""

    OK = "ok"
    MISSING = "missing"  # no record: never created, purged, or expired
    FINAL = "final"  # succeeded or failed already (detail: which)
    LEASED = "leased"  # another delivery holds it (detail: until when)
    NOT_DUE = "not_due"  # a retry not due yet (detail: when it is)
    LINED = "lined"  # not claimed: it joined its lane's fair line (detail: µs it may wait)


class Recorded(StrEnum):
    """transition.lua: the outcome is recorded (OK), or why it was not."""

    OK = "ok"
    MISSING = "missing"
    LOST_LEASE = "lost_lease"  # another delivery took the job over
    SUCCEEDED = "succeeded"  # the job succeeded meanwhile (another delivery's outcome)
    FAILED = "failed"  # the job failed meanwhile
    TAKEN = "taken"  # the ticket is another job's (it created or adopted it first)
    CANCEL_ASKED = "cancel_asked"  # recorded as retrying; a person asked to cancel it


class CancelCode(StrEnum):
    """cancel.lua: the job is cancelled (OK), or why not."""

    OK = "ok"
    MISSING = "missing"
    IN_FLIGHT = "in_flight"  # a delivery is attempting it: it finishes
    FINAL = "final"  # detail: the state it ended in
    OTHER_BATCH = "other_batch"  # not asked of cancel.lua: an older batch's job; detail: it


class RenewCode(StrEnum):
    """renew.lua: the lease is extended (OK), or another delivery took the job over."""

    OK = "ok"
    LOST_LEASE = "lost_lease"


class DeadLetterCode(StrEnum):
    """replay.lua and purge.lua: done (OK), or why the job was left as it was."""

    OK = "ok"
    MISSING = "missing"
    NOT_FAILED = "not_failed"  # detail: its state
    HAS_TICKET = "has_ticket"  # replay only; detail: the ticket id


class Reason(IntEnum):
    """admit.lua: why a request may (ADMITTED, PROBE) or may not go to StackOne now."""

    ADMITTED = 0
    LINE = 1  # the rate holds it back longer than it may wait: it joined its lane's line
    KEY_PAUSED = 2
    ACCOUNT_PAUSED = 3
    ACCOUNT_BUSY = 4
    KEY_REFUSED = 5
    PROBE = 6  # admitted, as the one request that finds out whether the key works again
    OUTAGE = 7  # StackOne is failing for the key: every request waits for the probe
    RESERVED = 8  # its moment is set: it goes then without asking again
    # Its account is at its cap, and it goes on the slot of a request of its account admitted
    # in the same round, once that one is answered (and not before its moment): the rate
    # counted it; its delivery chains the two on the one slot.
    FOLLOWS = 9


class Standing(StrEnum):
    """admit.lua: where a request stands towards its lane's line when it asks."""

    FRESH = "fresh"  # joins the line if anyone is in it (unless the line let it out)
    PASSED = "passed"  # let past the line earlier in its delivery: it passes again
    MOMENT = "moment"  # its reserved moment has come: only pauses, a probe and the cap apply


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")


class Script:
    """One Lua file and the enums it speaks, each under a prefix: ``STATE=JobState``
    defines ``STATE_QUEUED`` and so on (and ``is_final`` for ``JobState``)."""

    def __init__(
        self,
        file: str,
        *,
        moves: bool = False,
        indexes: bool = False,
        records: bool = False,
        lines: bool = False,
        **vocabulary: type[Enum],
    ) -> None:
        self.file = file
        self.moves = moves  # it moves jobs: the counters' helpers (needs STATE=JobState)
        self.indexes = indexes  # it reads or writes the job indexes (lua/lib/indexes.lua)
        self.records = records  # it reads a record's fields by name (lua/lib/records.lua)
        self.lines = lines  # it puts jobs in a key's fair lines (lua/lib/lines.lua)
        self.vocabulary = vocabulary

    def __repr__(self) -> str:
        return f"Script({self.file!r})"

    @cached_property
    def prelude(self) -> str:
        lines = ["-- Generated from the Python enums (worker/store/scripts.py)."]
        for prefix, enum in self.vocabulary.items():
            lines += [f"local {prefix}_{member.name} = {_lua(member)}" for member in enum]
            if enum is JobState:
                finals = [f"state == {prefix}_{s.name}" for s in JobState if s.is_final]
                lines += [
                    "local function is_final(state)",
                    f"  return {' or '.join(finals)}",
                    "end",
                ]
        if self.moves:
            lines += [f"local {name} = {_plain(value)}" for name, value in COUNTERS.items()]
            lines.append(files("worker.store").joinpath("lua", "lib", "moves.lua").read_text())
        if self.indexes:
            lines.append(f"local JOB_PREFIX = {_plain(JOB_PREFIX)}")
            lines.append(files("worker.store").joinpath("lua", "lib", "indexes.lua").read_text())
        if self.records:
            lines.append(_compact_names())
            lines.append(files("worker.store").joinpath("lua", "lib", "records.lua").read_text())
        if self.lines:
            lines.append(files("worker.store").joinpath("lua", "lib", "lines.lua").read_text())
        return "\n".join(lines) + "\n"

    @cached_property
    def source(self) -> str:
        """The file as written, without the prelude."""
        return files("worker.store").joinpath("lua", self.file).read_text()

    @cached_property
    def text(self) -> str:
        """What Redis runs: the prelude, then the file."""
        return self.prelude + self.source

    @cached_property
    def sha(self) -> str:
        return hashlib.sha1(self.text.encode()).hexdigest()


# The names lua/lib/moves.lua writes to, from keys.py.
COUNTERS: dict[str, str | int] = {
    "COUNTS_KEY": COUNTS,
    "QUEUED_PREFIX": QUEUED_PREFIX,
    "MINUTE_PREFIX": MINUTE_PREFIX,
    "MINUTE_TTL": MINUTE_TTL,
}


def _compact_names() -> str:
    """``COMPACT`` (a full name -> its compact one) and ``SPEC_FIELDS`` (in order), as Lua
    tables."""
    pairs = ", ".join(f"{name} = {_plain(short)}" for name, short in COMPACT_FIELDS.items())
    spec = ", ".join(_plain(name) for name in SPEC_FIELDS)
    return f"local COMPACT = {{{pairs}}}\nlocal SPEC_FIELDS = {{{spec}}}"


def _lua(member: Enum) -> str:
    """A Lua literal for an enum's value: a number, or a plain string."""
    return _plain(int(member) if isinstance(member, IntEnum) else str(member.value), member)


def _plain(value: str | int, named: object = None) -> str:
    """A Lua literal for a number or a plain string."""
    if isinstance(value, int):
        return str(value)
    if not _PLAIN.fullmatch(value):
        raise ValueError(f"{named or value!r} cannot be written into a Lua script as it is")
    return f'"{value}"'


CREATE = Script("create.lua", moves=True, indexes=True, records=True, STATE=JobState)
UNCREATE = Script("uncreate.lua", moves=True, indexes=True, STATE=JobState)
SENT = Script("sent.lua", STATE=JobState)
CLAIM = Script(
    "claim.lua",
    moves=True,
    records=True,
    lines=True,
    STATE=JobState,
    KIND=ErrorKind,
    CLAIM=ClaimCode,
)
RENEW = Script("renew.lua", STATE=JobState, RENEW=RenewCode)
TRANSITION = Script(
    "transition.lua", moves=True, indexes=True, records=True, STATE=JobState, RECORDED=Recorded
)
DUE = Script("due.lua", moves=True, STATE=JobState)
CANCEL = Script("cancel.lua", moves=True, indexes=True, STATE=JobState, CANCEL=CancelCode)
REPLAY = Script(
    "replay.lua", moves=True, records=True, STATE=JobState, KIND=ErrorKind, DEAD=DeadLetterCode
)
PURGE = Script("purge.lua", moves=True, indexes=True, STATE=JobState, DEAD=DeadLetterCode)
ADMIT = Script(
    "admit.lua", moves=True, lines=True, STATE=JobState, REASON=Reason, STANDING=Standing
)
PAUSE = Script("pause.lua")
RELEASE = Script("release.lua", STATE=JobState)
SLOTS = Script("slots.lua")
SWEEP = Script("sweep.lua", indexes=True)
SCRIPTS = (
    CREATE,
    SENT,
    CLAIM,
    RENEW,
    TRANSITION,
    DUE,
    CANCEL,
    REPLAY,
    PURGE,
    ADMIT,
    PAUSE,
    RELEASE,
    UNCREATE,
    SLOTS,
    SWEEP,
)


class Call(NamedTuple):
    script: Script
    keys: Sequence[str]
    args: Sequence[str | int | float]


def run(client: redis.Redis, calls: Sequence[Call]) -> list[Any]:
    """Run many Lua script calls in one round trip; each call's answer, in order. The first
    error a call met is raised, after every call ran (see ``run_each``)."""
    answers = run_each(client, calls)
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
    return answers


def run_each(client: redis.Redis, calls: Sequence[Call]) -> list[Any]:
    """Run many Lua script calls in one round trip; each call's answer, or the error Redis
    answered it with, in order, so a caller can take back what the calls that ran did.

    redis-py's own pipelined scripts ask Redis whether each script is loaded before every
    pipeline, a second round trip each time; here they are sent as EVALSHA straight away.
    A call Redis answers NOSCRIPT (it lost its scripts in a restart, or no one has run
    that script yet) ran nothing: its script is loaded and that call alone is sent again.
    The calls that did run are not, so each runs once even when another connection loaded
    the script while Redis was still reading this pipeline, as happens at every worker's
    start (sending the whole pipeline again recorded outcomes twice and claimed jobs twice).
    """
    answers = _pipeline(client, calls)
    lost = [i for i, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
    if lost:
        for script in {id(calls[i].script): calls[i].script for i in lost}.values():
            client.script_load(script.text)
        for i, answer in zip(lost, _pipeline(client, [calls[i] for i in lost]), strict=True):
            answers[i] = answer
    return answers


def _pipeline(client: redis.Redis, calls: Sequence[Call]) -> list[Any]:
    """One round trip; a call's error is its answer, in its place."""
    with client.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(pipe.execute(raise_on_error=False))


def run_one(
    client: redis.Redis, script: Script, keys: Sequence[str], args: Sequence[str | int | float]
) -> Any:
    """One call: a pipeline of one."""
    return run(client, [Call(script, keys, args)])[0]
