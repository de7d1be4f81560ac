"""The web service as an attacker and a careless client use it (FastAPI's test client, a
private Redis): another site's page in a local browser, a DNS name rebound to 127.0.0.1, a
session outliving its token's replacement, a cursor past any index, pages that would run
another site's scripts, an Idempotency-Key in UTF-8. Each test failed before its fix."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from ops.redis_server import RedisServer
from ops.web.api import utf8_header
from ops.web.app import create_app
from ops.web.errors import ApiError
from ops.web.sessions import COOKIE
from worker.settings import Settings
from worker.store.keys import JOB_PREFIX

ADMIN = "admin-token-adversarial-0123456789"
ROTATED = "admin-token-adversarial-rotated-987"
LOCAL = "http://127.0.0.1:8000"  # where a server without tokens is reached
TICKET = {"account_id": "acct-1", "ticket": {"title": "t"}}


def settings_for(server: RedisServer, tokens: str = "") -> Settings:
    return Settings(redis_url=server.url, web_tokens=tokens)


@pytest.fixture
def open_client(redis_server: RedisServer) -> Iterator[TestClient]:
    """A service without tokens, reached as a browser on this host reaches it."""
    app = create_app(settings_for(redis_server))
    with TestClient(app, base_url=LOCAL, follow_redirects=False) as client:
        yield client


def jobs_in(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(f"{JOB_PREFIX}*"))


def test_without_tokens_a_name_rebound_to_this_host_reaches_neither_api_nor_dashboard(
    open_client: TestClient, redis_client: redis.Redis
) -> None:
    """A page of evil.example whose name now resolves to 127.0.0.1 is same-origin with
    the service as the browser sees it; only the Host header tells it apart."""
    rebound = {"Host": "evil.example:8000"}
    assert open_client.get("/v1/stats", headers=rebound).status_code == 403
    assert open_client.post("/v1/tickets", json=TICKET, headers=rebound).status_code == 403
    page = open_client.get("/", headers=rebound)
    assert page.status_code == 403 and 'name="csrf"' not in page.text
    assert jobs_in(redis_client) == 0
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.1"):
        assert open_client.get("/v1/stats", headers={"Host": host}).status_code == 200, host


def test_without_tokens_another_sites_post_to_the_api_is_refused_and_does_nothing(
    open_client: TestClient, redis_client: redis.Redis
) -> None:
    """A form or a no-cors fetch from any site the local user visits sends a "simple"
    POST (text/plain, no preflight) with its own Origin."""
    evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    body = '{"account_id": "acct-1", "ticket": {"title": "t"}}'
    assert open_client.post("/v1/tickets", content=body, headers=evil).status_code == 403
    assert open_client.post("/v1/batches/b-1/cancel", headers=evil).status_code == 403
    assert jobs_in(redis_client) == 0
    same = {"Origin": LOCAL, "Content-Type": "application/json"}
    assert open_client.post("/v1/tickets", content=body, headers=same).status_code == 202


def test_a_session_ends_when_its_token_is_replaced_under_the_same_name_and_scope(
    redis_server: RedisServer,
) -> None:
    """Rotating a leaked token must end the sessions signed in with it."""
    leaked = settings_for(redis_server, f"alice:admin:{ADMIN}")
    with TestClient(create_app(leaked), follow_redirects=False) as client:
        assert client.post("/signin", data={"token": ADMIN}).status_code == 303
        session_id = client.cookies[COOKIE]
        assert client.get("/").status_code == 200
    rotated = settings_for(redis_server, f"alice:admin:{ROTATED}")
    with TestClient(create_app(rotated), follow_redirects=False) as restarted:
        restarted.cookies.set(COOKIE, session_id)
        answer = restarted.get("/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


def test_a_cursor_past_any_index_is_bad_input_not_a_redis_failure(
    open_client: TestClient,
) -> None:
    for cursor in (2**63 - 1, 2**63, 10**30):
        answer = open_client.get("/v1/jobs", params={"state": "queued", "cursor": cursor})
        assert answer.status_code == 422, cursor
        assert answer.json()["error"]["message"].startswith("cursor:")


def test_no_page_on_the_dashboards_origin_loads_another_sites_script(
    open_client: TestClient,
) -> None:
    """FastAPI's /docs and /redoc load their scripts from a CDN, unpinned: whoever
    serves them would run script beside the session cookie."""
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        answer = open_client.get(path)
        assert not re.search(r"<script[^>]+src=\"https?://", answer.text), path
    assert open_client.get("/openapi.json").status_code == 200


def test_a_utf8_idempotency_key_names_the_same_job_in_its_header_and_in_a_batch(
    open_client: TestClient,
) -> None:
    """HTTP carries header bytes; a key in UTF-8 must be the key a JSON body gives."""
    key = "commande-été"
    single = open_client.post(
        "/v1/tickets", json=TICKET, headers={"Idempotency-Key": key.encode("utf-8")}
    )
    tickets = [{"ticket": {"title": "t"}, "idempotency_key": key}]
    batch = open_client.post("/v1/batches", json={"account_id": "acct-1", "tickets": tickets})
    assert single.status_code == 202 and batch.status_code == 202
    assert batch.json()["job_ids"] == [single.json()["job_id"]]
    record = open_client.get(f"/v1/jobs/{single.json()['job_id']}").json()
    assert record["idempotency_key"] == key
    # The test client sends header text as UTF-8 whatever is given: bytes that are not
    # UTF-8 are the function's to refuse.
    with pytest.raises(ApiError) as refused:
        utf8_header("Idempotency-Key", b"\xff".decode("latin-1"))
    assert refused.value.status == 422 and refused.value.message.startswith("Idempotency-Key:")


@pytest.mark.parametrize(
    "given",
    [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https://evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "/.//evil.example",
    ],
)
def test_signing_in_goes_on_to_this_site_whatever_next_says(
    redis_server: RedisServer, given: str
) -> None:
    """Read as a browser reads a Location: tabs and newlines dropped, a backslash a slash."""
    settings = settings_for(redis_server, f"alice:admin:{ADMIN}")
    with TestClient(create_app(settings), follow_redirects=False) as client:
        answer = client.post("/signin", data={"token": ADMIN, "next": given})
    location = answer.headers["location"]
    as_browser = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    assert answer.status_code == 303
    assert as_browser.startswith("/") and not as_browser.startswith("//"), location
