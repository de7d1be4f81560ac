"""The web service's JSON API through FastAPI's TestClient, over a real private Redis and
no worker: intake, reads, listings, admin actions, caps, tokens and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ops.redis_server import RedisServer
from ops.web.api import BATCH_CAP, MAX_BATCH_TICKETS, TICKET_CAP
from ops.web.app import create_app
from ops.web.body import size_text
from ops.web.errors import UNREACHABLE
from worker.contract import AttemptEntry, ErrorKind, JobError, JobSpec, Outcome
from worker.settings import Settings
from worker.store.batches import Batches
from worker.store.jobs import Claim, JobStore, Recorded, failed
from worker.store.keys import JOB_PREFIX, QUEUES
from worker.store.listing import SCAN
from worker.store.stats import Stats

READ = "reader-token-0123456789"
WRITE = "writer-token-0123456789"
ADMIN = "admin-token-0123456789ab"
TOKENS = f"ops:read:{READ},svc:write:{WRITE},boss:admin:{ADMIN}"
ACCOUNT = "acct-1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return Settings(redis_url=redis_server.url, web_tokens=TOKENS)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers=bearer(ADMIN)) as made:
        yield made


@pytest.fixture
def store(settings: Settings) -> JobStore:
    return JobStore.from_settings(settings, ride_out_restarts=False)


def post_ticket(client: TestClient, title: str = "t", **extra: Any) -> Any:
    headers = extra.pop("headers", {})
    body = {"account_id": ACCOUNT, "ticket": {"title": title}, **extra}
    return client.post("/v1/tickets", json=body, headers=headers)


def job_keys(client: redis.Redis) -> list[str]:
    return [str(key) for key in client.scan_iter(f"{JOB_PREFIX}*")]


def failed_job(store: JobStore, account_id: str = ACCOUNT) -> str:
    """A job claimed and failed through the store, as a worker fails one."""
    spec = JobSpec.model_validate({"account_id": account_id, "ticket": {"title": "f"}})
    claim = store.claim(store.create(spec, "interactive").job_id)
    assert isinstance(claim, Claim)
    error = JobError(kind=ErrorKind.TERMINAL, message="refused")
    assert store.fail(claim, spec, error) is Recorded.OK
    return claim.job_id


# intake


def test_a_posted_ticket_is_stored_queued_and_located_with_its_status(
    client: TestClient, store: JobStore, redis_client: redis.Redis
) -> None:
    posted = post_ticket(client, ref="alert-1")

    assert posted.status_code == 202
    job_id = posted.json()["job_id"]
    assert posted.json() == {"job_id": job_id, "is_new": True}
    assert posted.headers["Location"] == f"/v1/jobs/{job_id}"
    status = client.get(posted.headers["Location"])
    record = store.get(job_id)
    assert record is not None and status.json() == record.public()  # the CLI's --json
    assert status.json()["state"] == "queued" and status.json()["lane"] == "interactive"
    assert status.json()["created_at"].endswith("Z")
    assert isinstance(client.app, FastAPI)
    client.app.state.producer.flush()
    assert redis_client.llen(QUEUES["interactive"]) == 1  # its message went out


def test_the_same_idempotency_key_answers_the_same_job_marked_not_new_and_stores_one(
    client: TestClient, redis_client: redis.Redis
) -> None:
    key = {"Idempotency-Key": "order-77"}
    first = post_ticket(client, headers=key).json()
    again = post_ticket(client, title="changed", headers=key).json()
    other_account = client.post(
        "/v1/tickets", json={"account_id": "acct-2", "ticket": {"title": "t"}}, headers=key
    ).json()

    assert first["is_new"] and not again["is_new"]
    assert again["job_id"] == first["job_id"] != other_account["job_id"]
    assert len(job_keys(redis_client)) == 2
    record = client.get(f"/v1/jobs/{first['job_id']}").json()
    assert record["idempotency_key"] == "order-77"


def test_a_batch_is_taken_whole_and_answers_every_job_id_in_order(
    client: TestClient, store: JobStore
) -> None:
    tickets = [
        {"ticket": {"title": "a"}, "ref": "r-a"},
        {"ticket": {"title": "b"}, "idempotency_key": "k-b"},
        {"ticket": {"title": "c"}},
    ]

    posted = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets})

    assert posted.status_code == 202
    batch_id, job_ids = posted.json()["batch_id"], posted.json()["job_ids"]
    assert posted.headers["Location"] == f"/v1/batches/{batch_id}"
    assert Batches(store).job_ids(batch_id) == job_ids
    records = [store.get(job_id) for job_id in job_ids]
    assert [(r.ref, r.idempotency_key, r.lane) for r in records if r] == [
        ("r-a", None, "bulk"),
        (None, "k-b", "bulk"),
        (None, None, "bulk"),
    ]
    shown = client.get(f"/v1/batches/{batch_id}").json()
    summary = Batches(store).summary(batch_id, 0.0)
    assert summary is not None
    assert shown == {**summary.public(), "rate": shown["rate"]}  # ticketq batch --json
    assert shown["counts"]["queued"] == 3 and shown["opened_at"].endswith("Z")


def test_one_invalid_ticket_refuses_the_batch_naming_it_and_stores_nothing(
    client: TestClient, redis_client: redis.Redis
) -> None:
    tickets = [
        {"ticket": {"title": "fine"}},
        {"ticket": {"title": "x", "priority": {"value": "urgent"}}},
        {"ticket": {"titel": "y"}},
    ]

    refused = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets})

    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert message.startswith("tickets[1].ticket.priority.value: Input should be")
    assert "tickets[2].ticket.titel: unknown field" in message
    assert job_keys(redis_client) == [] and redis_client.dbsize() == 0


def test_a_batch_giving_one_idempotency_key_twice_is_refused_naming_the_later_ticket(
    client: TestClient, redis_client: redis.Redis
) -> None:
    tickets = [{"ticket": {"title": t}, "idempotency_key": "same"} for t in ("a", "b")]

    refused = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets})

    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == (
        "tickets[1].idempotency_key: tickets[0] gave it already"
    )
    assert job_keys(redis_client) == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"ticket": {"title": "t"}}, "account_id: Field required"),
        ({"account_id": "a b", "ticket": {}}, "account_id: String should match pattern"),
        ({"account_id": ACCOUNT, "ticket": {"title": "t"}, "extra": 1}, "extra: unknown field"),
        ({"account_id": ACCOUNT, "ticket": {"title": "x" * 1001}}, "ticket.title: String"),
    ],
)
def test_an_invalid_ticket_is_refused_with_422_naming_the_field(
    client: TestClient, redis_client: redis.Redis, body: dict[str, Any], named: str
) -> None:
    refused = client.post("/v1/tickets", json=body)

    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(named)
    assert job_keys(redis_client) == []


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"[" * 100_000, "nested deeper than 32 levels"),
        (
            b'{"account_id": "a", "ticket": {"priority": {"source_value": NaN}}}',
            "ticket.priority.source_value: NaN is not a JSON number",
        ),
        (b'{"account_id": "a",', "body: not JSON (line 1, column 20"),
        (b"\xff\xfe{}", "body: not UTF-8 text (byte 0)"),
        (b"  ", "body: empty; a JSON object is expected"),
        (b'["a list"]', "body: Input should be a valid dictionary"),
    ],
)
def test_a_body_the_worker_could_not_read_is_refused_naming_where(
    client: TestClient, raw: bytes, named: str
) -> None:
    refused = client.post("/v1/tickets", content=raw)

    assert refused.status_code == 422
    assert named in refused.json()["error"]["message"]


def test_the_idempotency_key_header_is_checked_as_the_producer_checks_its_key(
    client: TestClient, redis_client: redis.Redis
) -> None:
    refused = post_ticket(client, headers={"Idempotency-Key": "k" * 257})

    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("Idempotency-Key: String should have")
    assert job_keys(redis_client) == []


# caps


def chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), as a stream of parts."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize(("path", "cap"), [("/v1/tickets", TICKET_CAP), ("/v1/batches", BATCH_CAP)])
def test_a_body_over_its_cap_is_refused_with_413_declared_or_chunked(
    client: TestClient, redis_client: redis.Redis, path: str, cap: int
) -> None:
    # JSON the parser would accept, were it read: only its size is wrong.
    over = b'{"account_id": "a", "ticket": {"title": "' + b" " * cap + b'"}}'

    declared = client.post(path, content=over, headers={"Content-Type": "application/json"})
    streamed = client.post(path, content=chunked(over))

    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["error"]["message"].startswith(f"body over {size_text(cap)}")
    assert "transfer-encoding" not in {k.lower() for k in declared.request.headers}
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert job_keys(redis_client) == []


def test_a_ticket_just_under_the_cap_is_read_and_judged_on_its_fields(client: TestClient) -> None:
    # 400 KiB: under the request's cap, over the ticket body's own 256 KiB limit.
    body = {"account_id": ACCOUNT, "ticket": {"content": [{"plain": "x" * 100_000}] * 4}}

    answer = client.post("/v1/tickets", json=body)

    assert answer.status_code == 422
    assert "ticket: Value error, ticket body is" in answer.json()["error"]["message"]


def test_a_batch_of_more_tickets_than_its_cap_is_refused_naming_tickets(
    client: TestClient,
) -> None:
    tickets = [{"ticket": {"title": "t"}}] * (MAX_BATCH_TICKETS + 1)

    refused = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets})

    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(
        f"tickets: List should have at most {MAX_BATCH_TICKETS}"
    )


# tokens and scopes


def test_no_token_or_an_unknown_one_is_401_and_the_body_is_never_read(
    client: TestClient, redis_client: redis.Redis
) -> None:
    over = b"x" * (TICKET_CAP + 1)
    for headers in ({"Authorization": ""}, bearer("not-a-token-of-ours")):
        answer = client.post("/v1/tickets", content=over, headers=headers)

        assert answer.status_code == 401  # not 413: who asks is known before the body
        assert answer.json() == {
            "error": {"status": 401, "message": "a valid bearer token is required"}
        }
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert job_keys(redis_client) == []


@pytest.mark.parametrize(
    ("token", "method", "path", "needed"),
    [
        (READ, "POST", "/v1/tickets", "write"),
        (READ, "POST", "/v1/batches", "write"),
        (WRITE, "POST", "/v1/jobs/cancel", "admin"),
        (WRITE, "POST", "/v1/dead-letters/replay", "admin"),
        (WRITE, "POST", "/v1/dead-letters/purge", "admin"),
        (WRITE, "POST", "/v1/batches/b/cancel", "admin"),
    ],
)
def test_a_token_of_a_lesser_scope_is_403_naming_the_scope_needed(
    client: TestClient, token: str, method: str, path: str, needed: str
) -> None:
    answer = client.request(method, path, json={}, headers=bearer(token))

    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == f"this needs the {needed} scope"


def test_each_scope_does_what_it_includes(client: TestClient) -> None:
    job_id = post_ticket(client, headers=bearer(WRITE)).json()["job_id"]

    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(READ)).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(WRITE)).status_code == 200
    cancelled = client.post("/v1/jobs/cancel", json={"job_ids": [job_id]}, headers=bearer(ADMIN))
    assert cancelled.json()["counts"] == {"ok": 1}


# reads


def test_a_job_answers_its_requests_with_iso_8601_times(
    client: TestClient, store: JobStore
) -> None:
    spec = JobSpec.model_validate({"account_id": ACCOUNT, "ticket": {"title": "f"}})
    claim = store.claim(store.create(spec, "interactive").job_id)
    assert isinstance(claim, Claim)
    refused = AttemptEntry(
        at=1_764_564_622.5,
        status=422,
        latency_ms=41.6,
        outcome=Outcome.FAILED,
        kind=ErrorKind.TERMINAL,
        error="Project is archived",
    )
    error = JobError(kind=ErrorKind.TERMINAL, message="Project is archived", status=422)
    assert store.apply([replace(failed(claim, spec, error, 1), tried=(refused,))]) == [Recorded.OK]

    record = client.get(f"/v1/jobs/{claim.job_id}").json()

    assert record["attempt_log"] == [
        {
            "at": "2025-12-01T04:50:22.500000Z",
            "status": 422,
            "latency_ms": 41.6,
            "outcome": "failed",
            "kind": "terminal",
            "error": "Project is archived",
        }
    ]


def test_an_unknown_job_or_batch_is_404_as_json(client: TestClient) -> None:
    for path, named in (("/v1/jobs/nope", "no job nope"), ("/v1/batches/nope", "no batch nope")):
        answer = client.get(path)

        assert answer.status_code == 404
        assert answer.json() == {"error": {"status": 404, "message": named}}


def test_a_batch_is_listed_page_by_page_in_input_order_following_next(
    client: TestClient,
) -> None:
    tickets = [{"ticket": {"title": f"t{n}"}} for n in range(7)]
    job_ids = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets}).json()
    batch_id = job_ids["batch_id"]

    seen: list[str] = []
    following: str | None = f"/v1/jobs?batch_id={batch_id}&limit=3"
    pages = 0
    while following is not None:
        page = client.get(following).json()
        seen += [job["job_id"] for job in page["jobs"]]
        following = page["next"]
        pages += 1

    assert seen == job_ids["job_ids"]
    assert pages == 3  # 3, 3, then the last 1 with next null


def test_a_listing_filters_by_state_within_a_batch(client: TestClient) -> None:
    tickets = [{"ticket": {"title": f"t{n}"}} for n in range(4)]
    posted = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets}).json()
    client.post("/v1/jobs/cancel", json={"job_ids": posted["job_ids"][1:3]})

    cancelled = client.get(f"/v1/jobs?batch_id={posted['batch_id']}&state=cancelled").json()
    queued = client.get(f"/v1/jobs?batch_id={posted['batch_id']}&state=queued").json()

    assert [job["job_id"] for job in cancelled["jobs"]] == posted["job_ids"][1:3]
    assert [job["job_id"] for job in queued["jobs"]] == posted["job_ids"][::3]
    assert cancelled["next"] is None


def test_a_ref_lists_the_latest_job_with_it_and_the_indexes_serve_failed_and_unfinished(
    client: TestClient, store: JobStore
) -> None:
    post_ticket(client, ref="r-1")
    latest = post_ticket(client, ref="r-1").json()["job_id"]
    failed = failed_job(store)
    other_account = failed_job(store, "acct-2")

    by_ref = client.get(f"/v1/jobs?account_id={ACCOUNT}&ref=r-1").json()
    failed_ones = client.get(f"/v1/jobs?state=failed&account_id={ACCOUNT}").json()
    all_failed = client.get("/v1/jobs?state=failed").json()
    queued = client.get("/v1/jobs?state=queued").json()

    assert [job["job_id"] for job in by_ref["jobs"]] == [latest] and by_ref["next"] is None
    assert [job["job_id"] for job in failed_ones["jobs"]] == [failed]
    assert {job["job_id"] for job in all_failed["jobs"]} == {failed, other_account}
    assert len(queued["jobs"]) == 2 and {job["state"] for job in queued["jobs"]} == {"queued"}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("", "query: give batch_id, account_id and ref, or state failed"),
        ("state=succeeded", "state: no index lists succeeded jobs across batches"),
        (f"account_id={ACCOUNT}", "account_id: no index lists an account's jobs alone"),
        ("ref=r-1", "ref: give account_id with it"),
        ("state=lost", "state: Input should be 'queued'"),
        ("limit=0&state=failed", "limit: Input should be greater than or equal to 1"),
    ],
)
def test_a_listing_no_index_serves_is_refused_saying_what_to_give(
    client: TestClient, query: str, named: str
) -> None:
    answer = client.get(f"/v1/jobs?{query}")

    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith(named)


def test_a_page_reads_a_bounded_stretch_of_its_index_and_says_where_to_go_on(
    client: TestClient,
) -> None:
    tickets = [{"ticket": {"title": "t"}}] * MAX_BATCH_TICKETS
    for _ in range(3):
        client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets})
    assert SCAN < 3 * MAX_BATCH_TICKETS <= 2 * SCAN

    first = client.get("/v1/jobs?state=running").json()  # none of the 3,000 queued runs
    second = client.get(first["next"]).json()

    assert first == {"jobs": [], "next": f"/v1/jobs?state=running&cursor={SCAN}"}
    assert second == {"jobs": [], "next": None}


# actions


def test_replay_and_purge_answer_counts_per_outcome_and_the_jobs_skipped(
    client: TestClient, store: JobStore
) -> None:
    failed = [failed_job(store), failed_job(store)]
    queued = post_ticket(client).json()["job_id"]

    replayed = client.post("/v1/dead-letters/replay", json={"job_ids": [failed[0], queued, "x"]})
    purged = client.post("/v1/dead-letters/purge", json={"all": True, "account_id": ACCOUNT})

    assert replayed.status_code == 200
    assert replayed.json() == {
        "action": "replay",
        "done": 1,
        "skipped": {"not_failed": 1, "missing": 1},
        "skipped_jobs": [
            {"job_id": queued, "why": "not_failed", "detail": "queued"},
            {"job_id": "x", "why": "missing", "detail": None},
        ],
        "sent": True,
    }
    record = store.get(failed[0])
    assert record is not None and record.state == "queued" and record.replays == 1
    assert purged.json() == {
        "action": "purge",
        "done": 1,
        "skipped": {},
        "skipped_jobs": [],
        "sent": True,
    }
    assert store.get(failed[1]) is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "give job_ids, or all: true"),
        ({"job_ids": ["a"], "all": True}, "give job_ids or all, not both"),
        ({"job_ids": ["a"], "reason": "terminal"}, "select jobs for all only"),
        ({"all": True, "send_anyway": True}, "send_anyway takes the job_ids you checked"),
        ({"job_ids": []}, "job_ids: List should have at least 1 item"),
    ],
)
def test_a_replay_asked_wrongly_is_refused_saying_how_to_ask(
    client: TestClient, body: dict[str, Any], named: str
) -> None:
    answer = client.post("/v1/dead-letters/replay", json=body)

    assert answer.status_code == 422
    assert named in answer.json()["error"]["message"]


def test_cancelling_a_batch_answers_counts_per_outcome(client: TestClient, store: JobStore) -> None:
    tickets = [{"ticket": {"title": f"t{n}"}} for n in range(3)]
    posted = client.post("/v1/batches", json={"account_id": ACCOUNT, "tickets": tickets}).json()
    client.post("/v1/jobs/cancel", json={"job_ids": posted["job_ids"][:1]})

    answer = client.post(f"/v1/batches/{posted['batch_id']}/cancel")
    unknown = client.post("/v1/batches/nope/cancel")

    assert answer.json() == {"counts": {"ok": 2, "final": 1}, "final": {"cancelled": 1}, "jobs": []}
    assert store.states(posted["job_ids"]) == ["cancelled"] * 3
    assert unknown.status_code == 404


# errors and the document


def test_redis_out_of_reach_is_a_503_with_one_message_and_no_url_or_password(
    redis_server: RedisServer,
) -> None:
    password = "hunter2-secret-password"
    url = f"redis://:{password}@127.0.0.1:1/0"  # nothing listens on port 1
    settings = Settings(redis_url=url, web_tokens=TOKENS)
    with TestClient(create_app(settings), headers=bearer(ADMIN)) as down:
        answers = [
            post_ticket(down),
            down.post("/v1/batches", json={"account_id": "a", "tickets": [{"ticket": {}}]}),
            down.get("/v1/jobs/x"),
            down.get("/v1/jobs?state=failed"),
            down.get("/v1/batches/x"),
            down.post("/v1/jobs/cancel", json={"job_ids": ["x"]}),
            down.post("/v1/dead-letters/purge", json={"job_ids": ["x"]}),
        ]

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"error": {"status": 503, "message": UNREACHABLE}}
        assert password not in answer.text and "127.0.0.1:1" not in answer.text
        assert answer.headers["Retry-After"] == "5"


def test_the_openapi_document_names_the_bearer_scheme_bodies_caps_and_error_model(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()

    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    intake = document["paths"]["/v1/tickets"]["post"]
    body = intake["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TicketIntake"}
    assert "At most 512 KiB" in intake["requestBody"]["description"]
    batches = document["paths"]["/v1/batches"]["post"]
    assert "At most 8 MiB" in batches["requestBody"]["description"]
    assert f"At most {MAX_BATCH_TICKETS:,} tickets" in batches["description"]
    for status in ("401", "403", "413", "422", "503"):
        error = intake["responses"][status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
    ok = intake["responses"]["202"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Accepted"}
    schemas = document["components"]["schemas"]
    assert {"TicketIntake", "BatchIntake", "TicketCreate", "JobRecord", "BatchStatus"} <= set(
        schemas
    )
    created_at = schemas["JobRecord"]["properties"]["created_at"]
    assert created_at == {"format": "date-time", "title": "Created At", "type": "string"}
    json.dumps(document)  # whole and serializable


def test_stats_answer_the_snapshot_the_cli_prints(client: TestClient, settings: Settings) -> None:
    post_ticket(client)

    shown = client.get("/v1/stats", headers=bearer(READ))

    assert shown.status_code == 200
    expected = Stats(redis.Redis.from_url(settings.redis_url, decode_responses=True), settings)
    snapshot = expected.snapshot(time.time()).public()
    assert set(shown.json()) == set(snapshot)
    assert shown.json()["jobs"] == snapshot["jobs"]
    assert shown.json()["jobs"]["interactive"]["queued"] == 1
    assert shown.json()["at"].endswith("Z")


def test_purge_all_failed_before_a_time_leaves_the_later_ones_and_wants_a_time_zone(
    client: TestClient, store: JobStore
) -> None:
    failed = failed_job(store)
    earlier = {"all": True, "failed_before": "2000-01-01T00:00:00Z"}
    later = {"all": True, "failed_before": "2999-01-01T00:00:00+02:00"}

    kept = client.post("/v1/dead-letters/purge", json=earlier).json()
    naive = client.post("/v1/dead-letters/purge", json={**later, "failed_before": "2999-01-01"})
    purged = client.post("/v1/dead-letters/purge", json=later).json()

    assert kept["done"] == 0 and naive.status_code == 422
    assert naive.json()["error"]["message"].startswith("failed_before: Input should have timezone")
    assert purged["done"] == 1 and store.get(failed) is None


def test_an_idempotency_key_given_twice_is_refused_and_nothing_is_stored(
    client: TestClient, redis_client: redis.Redis
) -> None:
    body = {"account_id": ACCOUNT, "ticket": {"title": "t"}}
    refused = client.post(
        "/v1/tickets", json=body, headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    )

    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == "Idempotency-Key: given more than once"
    assert job_keys(redis_client) == []


def test_every_answer_tells_browsers_not_to_sniff_its_type(client: TestClient) -> None:
    answers = [
        post_ticket(client),
        client.get("/v1/jobs/nope"),
        client.get("/v1/stats", headers=bearer("not-a-token-0123456789")),
        client.get("/openapi.json"),
        client.post("/v1/tickets", content=b"x" * (TICKET_CAP + 1)),
    ]

    assert [answer.headers.get("x-content-type-options") for answer in answers] == [
        "nosniff"
    ] * len(answers)
