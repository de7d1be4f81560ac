"""The dashboard over HTTP (FastAPI's test client, a private Redis): signing in and out,
the session cookie and what Redis keeps of it, CSRF and scope checks on every form, pages
that show outside text as text, and search."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from fastapi.testclient import TestClient

from ops.redis_server import RedisServer
from ops.web.app import create_app
from ops.web.sessions import COOKIE, SESSION_SECONDS
from worker.contract import (
    AttemptEntry,
    ErrorKind,
    JobError,
    JobSpec,
    JobState,
    Outcome,
    TicketIds,
)
from worker.settings import Settings
from worker.store.jobs import Claim, JobStore, Recorded, failed
from worker.store.keys import QUEUES, session_key

ADMIN = "admin-token-0123456789abcdef"
READER = "read-token-0123456789abcdef"
TOKENS = f"alice:admin:{ADMIN},bob:read:{READER}"
HOSTILE = "<script>alert(1)</script>\u202eevil"


def settings_for(server: RedisServer, tokens: str = TOKENS) -> Settings:
    return Settings.model_validate(
        {
            "STACKONE_API_KEY": "sk-dashboard-test-key",
            "TICKETQ_REDIS_URL": server.url,
            "TICKETQ_WEB_TOKENS": tokens,
        }
    )


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return settings_for(redis_server)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def store(redis_client: redis.Redis, settings: Settings) -> JobStore:
    return JobStore.from_settings(settings, client=redis_client)


def failed_job(store: JobStore, ref: str = "row-1") -> str:
    spec = JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t"}, "ref": ref})
    claim = store.claim(store.create(spec, "bulk").job_id)
    assert isinstance(claim, Claim)
    error = JobError(kind=ErrorKind.TERMINAL, message=HOSTILE, status=422)
    assert store.fail(claim, spec, error) is Recorded.OK
    return claim.job_id


def succeeded_job(store: JobStore, ticket_id: str) -> str:
    spec = JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t"}})
    claim = store.claim(store.create(spec, "interactive").job_id)
    assert isinstance(claim, Claim)
    assert store.succeed(claim, spec, TicketIds(id=ticket_id, remote_id="R-1")) is Recorded.OK
    return claim.job_id


def sign_in(client: TestClient, token: str) -> str:
    """Sign in; the CSRF token of the session, read from a page's form."""
    answer = client.post("/signin", data={"token": token, "next": "/dead"})
    assert answer.status_code == 303 and answer.headers["location"] == "/dead"
    return csrf_of(client.get("/dead").text)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


def test_a_page_asks_to_sign_in_and_a_fragment_says_401(client: TestClient) -> None:
    answer = client.get("/jobs/abc")
    assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=/jobs/abc"
    assert client.get("/parts/jobs/abc").status_code == 401


def test_a_wrong_token_is_refused_without_being_echoed(client: TestClient) -> None:
    wrong = "not-a-token-<b>0123456789"
    answer = client.post("/signin", data={"token": wrong})
    assert answer.status_code == 401
    assert "not one of the configured tokens" in answer.text
    assert "not-a-token" not in answer.text and COOKIE not in answer.headers.get("set-cookie", "")


def test_signing_in_sets_a_strict_httponly_cookie_and_redis_keeps_only_its_digest(
    client: TestClient, redis_client: redis.Redis
) -> None:
    answer = client.post("/signin", data={"token": ADMIN, "next": "//evil.example/x"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over http here
    session_id = client.cookies[COOKIE]
    keys = [key for key in redis_client.scan_iter("ticketq:session:*")]
    assert len(keys) == 1 and session_id not in keys[0]
    stored = redis_client.hgetall(keys[0])
    assert session_id not in stored.values() and ADMIN not in str(stored)
    assert 0 < redis_client.ttl(keys[0]) <= SESSION_SECONDS


def test_over_https_the_cookie_is_secure(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as https:
        answer = https.post("/signin", data={"token": READER}, follow_redirects=False)
    assert "Secure" in answer.headers["set-cookie"]


def test_signing_out_ends_the_session(client: TestClient, store: JobStore) -> None:
    csrf = sign_in(client, READER)
    session_id = client.cookies[COOKIE]
    assert client.post("/signout", data={"csrf": csrf}).status_code == 303
    client.cookies.set(COOKIE, session_id)  # the old cookie, kept by someone
    assert client.get("/dead").status_code == 303


def test_a_session_ends_when_its_token_is_no_longer_configured(
    client: TestClient, redis_server: RedisServer
) -> None:
    sign_in(client, READER)
    session_id = client.cookies[COOKIE]
    narrower = settings_for(redis_server, f"alice:admin:{ADMIN},bob:admin:{READER}")
    with TestClient(create_app(narrower), follow_redirects=False) as restarted:
        restarted.cookies.set(COOKIE, session_id)
        assert restarted.get("/dead").status_code == 303  # bob's scope changed: sign in again


def test_a_reader_sees_no_replay_button_and_cannot_replay_anyway(
    client: TestClient, store: JobStore
) -> None:
    job_id = failed_job(store)
    csrf = sign_in(client, READER)
    page = client.get(f"/jobs/{job_id}").text
    assert '/replay"' not in page and "Replay<" not in page
    answer = client.post(f"/jobs/{job_id}/replay", data={"csrf": csrf})
    assert answer.status_code == 403 and "admin scope" in answer.text
    assert store.get(job_id).state is JobState.FAILED  # type: ignore[union-attr]


def test_a_post_without_its_csrf_token_or_from_another_site_is_refused(
    client: TestClient, store: JobStore
) -> None:
    job_id = failed_job(store)
    csrf = sign_in(client, ADMIN)
    assert client.post(f"/jobs/{job_id}/replay").status_code == 403
    assert client.post(f"/jobs/{job_id}/replay", data={"csrf": csrf + "x"}).status_code == 403
    assert client.post(f"/jobs/{job_id}/replay", data={"csrf": "é"}).status_code == 403
    foreign = {"Origin": "https://evil.example"}
    answer = client.post(f"/jobs/{job_id}/replay", data={"csrf": csrf}, headers=foreign)
    assert answer.status_code == 403 and "another site" in answer.text
    assert store.get(job_id).state is JobState.FAILED  # type: ignore[union-attr]


def test_an_admin_replays_a_failed_job_and_it_is_queued_and_sent(
    client: TestClient, store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = failed_job(store)
    csrf = sign_in(client, ADMIN)
    assert 'action="/jobs/' + job_id + '/replay"' in client.get(f"/jobs/{job_id}").text
    same_site = {"Origin": "http://testserver"}
    answer = client.post(f"/jobs/{job_id}/replay", data={"csrf": csrf}, headers=same_site)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/jobs/{job_id}?notice=replayed"
    assert store.get(job_id).state is JobState.QUEUED  # type: ignore[union-attr]
    assert redis_client.llen(QUEUES["bulk"]) == 1
    page = client.get(answer.headers["location"]).text
    assert "queued again" in page and '/replay"' not in page
    again = client.post(f"/jobs/{job_id}/replay", data={"csrf": csrf})
    assert again.headers["location"].endswith("notice=not-failed")


def test_an_admin_cancels_a_queued_job(client: TestClient, store: JobStore) -> None:
    spec = JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t"}})
    job_id = store.create(spec, "bulk").job_id
    csrf = sign_in(client, ADMIN)
    answer = client.post(f"/jobs/{job_id}/cancel", data={"csrf": csrf})
    assert answer.headers["location"].endswith("notice=cancelled")
    assert store.get(job_id).state is JobState.CANCELLED  # type: ignore[union-attr]


def test_outside_text_is_shown_as_text_never_as_markup(client: TestClient, store: JobStore) -> None:
    job_id = failed_job(store, ref=HOSTILE)
    sign_in(client, READER)
    for path in (f"/jobs/{job_id}", f"/parts/jobs/{job_id}", "/dead", "/parts/dead"):
        page = client.get(path).text
        assert "<script>alert" not in page and "\u202e" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;\\u202eevil" in page, path
    missing = client.get("/jobs/" + "%3Cb%3Eno")
    assert missing.status_code == 404 and "No job &lt;b&gt;no" in missing.text


def test_a_jobs_page_shows_each_request_it_made_with_stackones_message_as_text(
    client: TestClient, store: JobStore
) -> None:
    spec = JobSpec.model_validate({"account_id": "acct-1", "ticket": {"title": "t"}})
    claim = store.claim(store.create(spec, "interactive").job_id)
    assert isinstance(claim, Claim)
    at = 1_764_564_622.0  # 2025-12-01 04:50:22 UTC
    tried = (
        AttemptEntry(
            at=at,
            status=None,
            latency_ms=10_000.4,
            outcome=Outcome.AGAIN,
            kind=ErrorKind.RETRYABLE,
            error="read timeout",
        ),
        AttemptEntry(
            at=at + 2,
            status=422,
            latency_ms=41.6,
            outcome=Outcome.FAILED,
            kind=ErrorKind.TERMINAL,
            error=HOSTILE,
        ),
    )
    error = JobError(kind=ErrorKind.TERMINAL, message=HOSTILE, status=422)
    assert store.apply([replace(failed(claim, spec, error, 2), tried=tried)]) == [Recorded.OK]
    sign_in(client, READER)

    for path in (f"/jobs/{claim.job_id}", f"/parts/jobs/{claim.job_id}"):
        page = client.get(path).text
        attempts = page.split('class="attempts"')[1].split("<tbody>")[1]
        rows = re.findall(r"<tr>(.*?)</tr>", attempts, re.DOTALL)
        cells = [re.findall(r"<td>(.*?)</td>", row, re.DOTALL) for row in rows]
        assert [c[:4] for c in cells] == [
            ["2025-12-01 04:50:22 UTC", "no answer", "10000 ms", "again"],
            ["2025-12-01 04:50:24 UTC", "422", "42 ms", "failed"],
        ], path
        assert "read timeout" in cells[0][4] and "retryable" in cells[0][4]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;\\u202eevil" in cells[1][4], path
        assert "<script>alert" not in page and "\u202e" not in page, path


def test_a_job_made_at_its_first_request_says_why_it_has_no_attempts_listed(
    client: TestClient, store: JobStore
) -> None:
    job_id = succeeded_job(store, "t-1")
    sign_in(client, READER)
    page = client.get(f"/jobs/{job_id}").text
    assert 'class="attempts"' not in page and "made at its first request" in page


def test_the_overview_and_its_fragment_show_the_fleet_and_the_latest_failure(
    client: TestClient, store: JobStore
) -> None:
    job_id = failed_job(store)
    sign_in(client, READER)
    for path in ("/", "/parts/overview"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert f'href="/jobs/{job_id}"' in page.text and "dead letters" in page.text
        assert "No worker has said it is alive" in page.text
    assert 'data-refresh="/parts/overview"' in client.get("/").text


def test_pages_forbid_other_origins_scripts_and_framing(client: TestClient) -> None:
    sign_in(client, READER)
    headers = client.get("/dead").headers
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert headers["cache-control"] == "no-store"


def test_search_finds_a_job_by_id_ref_or_ticket_and_says_what_it_needs(
    client: TestClient, store: JobStore
) -> None:
    failed_id = failed_job(store, ref="order-42")
    made_id = succeeded_job(store, "T-9")
    sign_in(client, READER)

    def found(query: dict[str, str]) -> str:
        answer = client.get("/search", params=query)
        assert answer.status_code == 303, query
        return str(answer.headers["location"])

    assert found({"q": failed_id}) == f"/jobs/{failed_id}"
    assert found({"q": "order-42", "account": "acct-1"}) == f"/jobs/{failed_id}"
    assert found({"q": "T-9", "account": "acct-1"}) == f"/jobs/{made_id}"
    alone = client.get("/search", params={"q": "order-42"})
    assert alone.status_code == 404 and "give its account id too" in alone.text
    assert client.get("/search", params={"q": "T-9", "account": "acct-2"}).status_code == 404


def test_without_tokens_nobody_signs_in_yet_forms_still_need_the_csrf_token(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    store = JobStore.from_settings(settings_for(redis_server, ""), client=redis_client)
    job_id = failed_job(store)
    app = create_app(settings_for(redis_server, ""))
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as open_:
        assert open_.get("/signin").headers["location"] == "/"
        page = open_.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and "Sign out" not in page.text
        assert open_.post(f"/jobs/{job_id}/replay").status_code == 403
        csrf = csrf_of(page.text)
        assert open_.post(f"/jobs/{job_id}/replay", data={"csrf": csrf}).status_code == 303


def test_without_tokens_visits_without_a_cookie_leave_nothing_in_redis(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """A page elsewhere loading the dashboard in a loop (no cookie: SameSite) opened an
    eight-hour session a visit, filling the fleet's Redis."""
    store = JobStore.from_settings(settings_for(redis_server, ""), client=redis_client)
    job_id = failed_job(store)
    app = create_app(settings_for(redis_server, ""))
    with TestClient(app, base_url="http://127.0.0.1") as visits:
        pages = [visits.get(path) for path in ["/"] * 10 + [f"/jobs/{job_id}"] * 10]

    assert all(page.status_code == 200 for page in pages)
    assert "set-cookie" not in pages[0].headers
    assert list(redis_client.scan_iter(match=session_key("*"))) == []
    assert len({csrf_of(page.text) for page in pages[10:]}) == 1  # derived, not stored
