"""Names of everything ticketq keeps in Redis, and its Lua scripts.

Job store, limiter and key health share one prefix and one way of quoting caller-chosen
values into key names, so no account id or ref can forge another's key.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from typing import Any
from urllib.parse import quote

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

PREFIX = "ticketq"
JOB_PREFIX = f"{PREFIX}:job:"
FAILED_INDEX = f"{PREFIX}:failed"
DUE_INDEX = f"{PREFIX}:due"
# The Celery queues (Redis lists) of the two lanes, interactive first: workers read them in
# this order, and the scheduler looks at their length.
QUEUES = {"interactive": "ticketq.interactive", "bulk": "ticketq.bulk"}


def segment(value: str) -> str:
    return quote(value, safe="")


def lua_script(name: str) -> str:
    return files("worker").joinpath("lua", name).read_text()


def job_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def ref_key(account_id: str, ref: str) -> str:
    return f"{PREFIX}:ref:{segment(account_id)}:{segment(ref)}"


def idempotency_key(account_id: str, key: str) -> str:
    return f"{PREFIX}:idem:{segment(account_id)}:{segment(key)}"


def batch_key(batch_id: str) -> str:
    return f"{PREFIX}:batch:{segment(batch_id)}"


def ticket_key(account_id: str, ticket_id: str) -> str:
    """Which job owns a StackOne ticket, so reconciliation never adopts another job's."""
    return f"{PREFIX}:ticket:{segment(account_id)}:{segment(ticket_id)}"


def inflight_key(account_id: str) -> str:
    """Requests in flight for an account (holder -> lease end), for its concurrency cap."""
    return f"{PREFIX}:inflight:{segment(account_id)}"


ScriptCall = tuple[Script, Sequence[str], Sequence[str | int | float]]


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run many Lua script calls in one round trip.

    redis-py's own pipelined scripts ask Redis whether each script is loaded before every
    pipeline, a second round trip each time; here they are sent as EVALSHA straight away,
    and loaded only when Redis says it lost them (after a restart), then sent again. A
    pipeline that met NOSCRIPT ran none of its calls, so sending it again is safe.
    """
    for _ in range(2):
        with client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return list(pipe.execute())
            except NoScriptError:
                for script in {id(call[0]): call[0] for call in calls}.values():
                    client.script_load(script.script)
    raise NoScriptError("Lua scripts could not be loaded")
