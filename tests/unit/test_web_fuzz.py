"""The intake fuzzed from the app's own OpenAPI document (schemathesis, on hypothesis):
valid and invalid bodies and headers for ``POST /v1/tickets`` and ``POST /v1/batches``,
against a real private Redis. No answer is a 500, every answer fits the document, and
after every request the store is whole: each job record complete and readable, each index
entry (ref, idempotency key, batch member, batch record, due, failed) naming a record.

Bounded: a fixed number of examples per operation, derandomized, so it runs in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from ops.redis_server import RedisServer
from ops.web.app import create_app
from worker.contract import JobState
from worker.settings import Settings
from worker.store.jobs import Claim, spec_from_claim
from worker.store.keys import COMPACT_FIELDS, DUE_INDEX, FAILED_INDEX, PREFIX, job_key

TOKEN = "fuzz-writer-token-0123456789"
EXAMPLES = 40  # per operation
BASE_URL = "http://testserver"
# A queued record as create.lua writes it: state, account_id, created_at and the body's first
# part under their compact names (keys.py COMPACT_FIELDS); an interactive lane unsaid.
RECORD_FIELDS = {"state", COMPACT_FIELDS["account_id"], COMPACT_FIELDS["created_at"], "0"}


@pytest.fixture(scope="module")
def fuzz_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(Path(tmp_path_factory.mktemp("fuzz")) / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def client(fuzz_redis: RedisServer) -> Iterator[TestClient]:
    app = create_app(Settings(redis_url=fuzz_redis.url, web_tokens=f"svc:write:{TOKEN}"))
    with TestClient(app, base_url=BASE_URL) as started:
        yield started


# The document does not depend on where Redis is: read from an app never started.
DOCUMENT = create_app(Settings(redis_url="redis://127.0.0.1:1")).openapi()
# A body over the endpoint's cap is refused whole, unread, with 413: a rejection of invalid
# data too (schemathesis's list leaves it out; a generated body past 512 KiB failed a run).
DEFAULTS = SchemathesisConfig().projects.default.checks.negative_data_rejection
REJECTED = [*DEFAULTS.expected_statuses, "413"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).include(
    method="POST", path_regex=r"^/v1/(tickets|batches)$"
)
# Every request carries our write token (``as_httpx``): the fuzzing is of the intake's
# input, not of its auth, which test_web_api.py covers.
schema.config.generation.update(with_security_parameters=False)
AUTH_CHECKS = [schemathesis.checks.ignored_auth, schemathesis.checks.missing_required_header]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_intake_never_answers_500_and_never_leaves_a_half_written_job(
    case: schemathesis.Case[Any], client: TestClient, fuzz_redis: RedisServer
) -> None:
    store = redis.Redis.from_url(fuzz_redis.url, decode_responses=True)
    store.flushdb()  # each example on its own, so the check after it stays quick
    sent = case.as_transport_kwargs(BASE_URL)
    response = client.request(**as_httpx(sent))

    assert response.status_code < 500, response.text
    case.validate_response(response, transport_kwargs=sent, excluded_checks=AUTH_CHECKS)
    store_is_whole(store)


def as_httpx(sent: dict[str, Any]) -> dict[str, Any]:
    """The case's request for httpx, with our token in place of any auth it made up."""
    request = {name: value for name, value in sent.items() if value != {} and name != "data"}
    headers = {k: v for k, v in sent["headers"].items() if k.lower() != "authorization"}
    request["headers"] = {**headers, "Authorization": f"Bearer {TOKEN}"}
    if "data" in sent:
        request["content"] = sent["data"]
    return request


def store_is_whole(client: redis.Redis) -> None:
    """Every job record complete and readable as the worker reads it; every index entry
    naming a record that exists."""
    jobs: set[str] = set()
    named: dict[str, str] = {}  # job id -> the index entry naming it
    for key in map(str, client.scan_iter(f"{PREFIX}:*", count=1000)):
        if key.startswith(f"{PREFIX}:job:"):
            job_id = key.removeprefix(f"{PREFIX}:job:")
            record = cast(dict[str, str], client.hgetall(key))
            assert set(record) >= RECORD_FIELDS, (key, sorted(record))
            assert JobState(record["state"])
            assert spec_from_claim(as_claimed(job_id, record))  # the worker can read it
            jobs.add(job_id)
        elif key.startswith((f"{PREFIX}:refs:", f"{PREFIX}:idems:")):
            named |= dict.fromkeys(cast(dict[str, str], client.hgetall(key)).values(), key)
        elif key.startswith(f"{PREFIX}:batch:"):
            named |= dict.fromkeys(members(client, key), key)
            info = key.replace(f"{PREFIX}:batch:", f"{PREFIX}:batchinfo:", 1)
            assert client.exists(info), f"{key} has no record"
        elif key in (DUE_INDEX, FAILED_INDEX):
            named |= dict.fromkeys(members(client, key), key)
    for job_id, entry in named.items():
        assert job_id in jobs, f"{entry} names {job_id}, which has no record ({job_key(job_id)})"


def as_claimed(job_id: str, record: dict[str, str]) -> Claim:
    """The claim claim.lua makes of a queued record: its body (parts "0", "1", ...) as the
    spec's ticket, the spec's other fields from the record's own."""
    body = "".join(record[str(n)] for n in range(len(record)) if str(n) in record)
    spec_fields = ("account_id", "ref", "idempotency_key", "batch_id")
    apart = tuple(
        (name, record[COMPACT_FIELDS[name]])
        for name in spec_fields
        if COMPACT_FIELDS[name] in record
    )
    spec_json = '{"ticket":' + body + "}"
    return Claim(job_id, "token", spec_json, attempts=0, uncertain_since=None, apart=apart)


def members(client: redis.Redis, key: str) -> list[str]:
    return cast(list[str], client.zrange(key, 0, -1))


@pytest.mark.parametrize("path", ["/v1/tickets", "/v1/batches"])
def test_a_body_over_the_cap_refused_with_413_counts_as_invalid_data_rejected(path: str) -> None:
    for phase in ("examples", "coverage", "fuzzing"):
        checks = schema.config.checks_config_for(operation=schema[path]["POST"], phase=phase)
        assert "413" in checks.negative_data_rejection.expected_statuses
        assert "400" in checks.negative_data_rejection.expected_statuses
