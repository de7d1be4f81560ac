"""The web API with real workers, the stand-in over HTTP and a real ``ticketq web``.

A ticket posted over HTTP is created once, also when it is posted again with the same
Idempotency-Key; and no web token or API key, raw or base64, appears in any answer, in the
service's or the workers' logs, or anywhere in Redis (key names, values, queued messages).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from ops.fakeapi_client import FakeApiControl
from ops.processes import ManagedProcess
from ops.redis_server import free_port
from ops.stack import LocalStack
from ops.web.app import create_app

pytestmark = pytest.mark.integration

ACCOUNT = "acct-web"
READ = "read-token-9f8e7d6c5b4a"
WRITE = "write-token-1a2b3c4d5e6f"
ADMIN = "admin-token-0z9y8x7w6v5u"


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_ticket_posted_over_http_twice_with_one_idempotency_key_is_created_once(
    stack: LocalStack, fake_api: FakeApiControl, title: str
) -> None:
    body = {"account_id": ACCOUNT, "ticket": {"title": title}, "ref": title}
    key = {"Idempotency-Key": f"http-{title}"}
    with TestClient(create_app(stack.settings()), base_url="http://127.0.0.1") as client:
        first = client.post("/v1/tickets", json=body, headers=key)
        again = client.post("/v1/tickets", json=body, headers=key)
        location = first.headers["Location"]
        until(lambda: client.get(location).json()["state"] == "succeeded", 30, "the ticket")
        after = client.post("/v1/tickets", json=body, headers=key)
        status = client.get(location).json()

    assert (first.status_code, again.status_code, after.status_code) == (202, 202, 202)
    assert [a.json()["is_new"] for a in (first, again, after)] == [True, False, False]
    assert {a.json()["job_id"] for a in (first, again, after)} == {first.json()["job_id"]}
    assert status["ticket"]["id"] and status["attempts"] == 1
    assert fake_api.created(title) == 1
    assert len(fake_api.arrivals(title)) == 1


# The scan for secrets


@pytest.fixture
def web(stack: LocalStack, tmp_path: Path) -> Iterator[tuple[ManagedProcess, str]]:
    """``ticketq web`` as a user runs it, with three tokens, its output captured."""
    port = free_port()
    env = {
        **stack.child_env(),
        "TICKETQ_WEB_TOKENS": f"ops:read:{READ},svc:write:{WRITE},boss:admin:{ADMIN}",
    }
    process = ManagedProcess.ticketq("web", ["web", "--port", str(port)], tmp_path / "web.log", env)
    url = f"http://127.0.0.1:{port}"
    process.start()
    try:
        process.wait_until(lambda: answers(url), 60, "serving")
        yield process, url
    finally:
        process.stop()


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def secret_forms(secret: str) -> set[str]:
    """The secret as it could leak: raw, and base64 (standard and URL-safe, padded or
    not) of it and of the Basic pair ``secret:`` a client would send."""
    forms = {secret}
    for text in (secret, f"{secret}:"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(text.encode()).decode()
            forms |= {encoded, encoded.rstrip("=")}
    return forms


def redis_texts(client: redis.Redis) -> Iterator[str]:
    """Every key name and value in Redis, queued messages decoded (their body is base64)."""
    for key in map(str, client.scan_iter(count=1000)):
        yield key
        kind = client.type(key)
        values: list[str] = (
            [v for pair in cast(dict[str, str], client.hgetall(key)).items() for v in pair]
            if kind == "hash"
            else cast(list[str], client.lrange(key, 0, -1))
            if kind == "list"
            else cast(list[str], client.zrange(key, 0, -1))
            if kind == "zset"
            else list(cast(set[str], client.smembers(key)))
            if kind == "set"
            else [str(client.get(key) or "")]
        )
        for value in values:
            yield value
            yield from decoded_message(value)


def decoded_message(value: str) -> Iterator[str]:
    try:
        envelope = json.loads(value)
        yield base64.b64decode(envelope["body"]).decode(errors="replace")
    except (ValueError, TypeError, KeyError, AttributeError):
        return


def replayed_and_final(status: dict[str, Any]) -> bool:
    return status["replays"] == 1 and status["state"] in ("succeeded", "failed")


def test_no_token_or_api_key_appears_in_answers_logs_or_redis(
    stack: LocalStack,
    fake_api: FakeApiControl,
    web: tuple[ManagedProcess, str],
    title: str,
) -> None:
    process, url = web
    seen: list[httpx.Response] = []

    def call(method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers |= kwargs.pop("headers", {})
        answer = httpx.request(method, f"{url}{path}", headers=headers, timeout=30, **kwargs)
        seen.append(answer)
        return answer

    failing = f"{title} refused"
    fake_api.script(failing, {"status": 422, "message": "Project is archived"})
    ticket = {"account_id": ACCOUNT, "ticket": {"title": title}}
    posted = call("POST", "/v1/tickets", WRITE, json=ticket, headers={"Idempotency-Key": title})
    refused = call("POST", "/v1/tickets", WRITE, json={**ticket, "ticket": {"title": failing}})
    batch = call(
        "POST",
        "/v1/batches",
        WRITE,
        json={
            "account_id": ACCOUNT,
            "tickets": [{"ticket": {"title": f"{title} b{n}"}} for n in range(3)],
        },
    )
    assert (posted.status_code, refused.status_code, batch.status_code) == (202, 202, 202)
    job = f"/v1/jobs/{refused.json()['job_id']}"
    until(lambda: call("GET", job, READ).json()["state"] == "failed", 30, "the refused job")
    # Every scope, every kind of answer, and tokens near ours.
    call("POST", "/v1/dead-letters/replay", ADMIN, json={"job_ids": [refused.json()["job_id"]]})
    call("POST", "/v1/jobs/cancel", ADMIN, json={"job_ids": batch.json()["job_ids"]})
    call("GET", f"/v1/batches/{batch.json()['batch_id']}", READ)
    call("GET", f"/v1/jobs?batch_id={batch.json()['batch_id']}", READ)
    call("GET", "/v1/jobs?state=failed", READ)
    call("GET", "/v1/jobs/nope", READ)
    call("POST", "/v1/tickets", READ, json=ticket)  # 403
    call("POST", "/v1/tickets", WRITE + "x", json=ticket)  # 401
    call("POST", "/v1/tickets", WRITE[:-1], json=ticket)  # 401
    call("POST", "/v1/tickets", None, headers={"Authorization": f"Basic {WRITE}"})  # 401
    call("POST", "/v1/tickets", WRITE, content=b"{" * 40)  # 422
    call("POST", "/v1/tickets", WRITE, content=b" " * (600 * 1024))  # 413
    call("GET", "/openapi.json", None)
    until(lambda: replayed_and_final(call("GET", job, READ).json()), 30, "the replayed job")

    assert {a.status_code for a in seen} >= {200, 202, 401, 403, 404, 413, 422}
    assert "POST /v1/tickets HTTP/1.1" in process.log_text()  # the log was captured
    texts = {
        "answers": [a.text + json.dumps(dict(a.headers)) for a in seen],
        "the web log": [process.log_text()],
        "the workers' logs": [worker.log_text() for worker in stack.workers],
        "Redis": list(redis_texts(redis.Redis.from_url(stack.redis_url, decode_responses=True))),
    }
    assert any(title in text for text in texts["Redis"])  # the scan reads the values
    for secret in (READ, WRITE, ADMIN, stack.config.api_key):
        for form in secret_forms(secret):
            for where, found in texts.items():
                assert not any(form in text for text in found), f"a secret in {where}"
