"""The StackOne stand-in, spoken to over real HTTP on 127.0.0.1 the way the worker will.

Most tests share one server (its event loop in a background thread) and reset it between
tests through the control API; the last ones start ``serve`` in a subprocess to check the
start-up line and a clean exit on SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

import httpx
import pytest
from aiohttp import web

from ops.fakeapi import FakeApiOptions, make_app
from ops.fakeapi_client import FakeApiControl

pytestmark = pytest.mark.integration

KEY = "test-key-4f9c"
ACCOUNT = "acct-1"
OTHER_ACCOUNT = "acct-2"
TICKETS = "/unified/ticketing/tickets"
# Built once and shared: httpx loads the CA bundle for every client it makes (about 0.1 s
# each), which would dominate this file's runtime though everything here is plain http.
TLS = ssl.create_default_context()
DOCS_EXAMPLE: dict[str, Any] = {
    "title": "System outage in production environment",
    "creator_id": "user-001",
    "reporters": ["user-001", "user-002"],
    "assignees": ["user-001", "user-002"],
    "content": [{"plain": "This is some content", "html": "<p>This is some content</p>"}],
    "parent_id": "ticket-002",
    "priority": {"id": "001", "value": "medium", "source_value": "Normal"},
    "tags": ["tag-001", "tag-002"],
    "collections": ["collection-001", "collection-002"],
    "type": "ticket-type-001",
    "organization_id": "organization-001",
}


class _LiveServer:
    """``make_app`` on a real socket, its event loop running in a thread of its own."""

    def __init__(self, options: FakeApiOptions) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> str:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return f"http://127.0.0.1:{port}"

    async def _start(self) -> int:
        self._runner = web.AppRunner(make_app(self._options), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return int(self._runner.addresses[0][1])

    def stop(self) -> None:
        if self._runner is not None:
            cleanup = self._runner.cleanup()
            asyncio.run_coroutine_threadsafe(cleanup, self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = _LiveServer(FakeApiOptions(api_key=KEY, accounts=frozenset({ACCOUNT, OTHER_ACCOUNT})))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def control(base_url: str) -> Iterator[httpx.Client]:
    """The unauthenticated control API; every test starts from a clean, default server."""
    with httpx.Client(base_url=base_url, timeout=5, verify=TLS) as client:
        client.post("/_fake/reset").raise_for_status()
        client.post(
            "/_fake/config",
            json={
                "latency_ms": 0,
                "rpm_limit": None,
                "error_rate": 0,
                "auth_failure": None,
                "list_lag_ms": 0,
                "list_style": "verbatim",
            },
        ).raise_for_status()
        yield client


@pytest.fixture
def fake(base_url: str, control: httpx.Client) -> Iterator[FakeApiControl]:
    """The control API through the client the demo and the tests use."""
    client = FakeApiControl(base_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def api(base_url: str, control: httpx.Client) -> Iterator[httpx.Client]:
    """A well-behaved client: the right key, an empty password, a linked account."""
    with httpx.Client(
        base_url=base_url,
        auth=(KEY, ""),
        headers={"x-account-id": ACCOUNT, "User-Agent": "ticketq-tests/1"},
        timeout=5,
        verify=TLS,
    ) as client:
        yield client


def _stats(control: httpx.Client) -> dict[str, Any]:
    response = control.get("/_fake/stats")
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _script(control: httpx.Client, title: str, *steps: dict[str, Any]) -> None:
    control.post(
        "/_fake/script", json={"title": title, "responses": list(steps)}
    ).raise_for_status()


def _post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=TLS, **kwargs)


def _get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=TLS, **kwargs)


def _basic(userinfo: str) -> str:
    return "Basic " + base64.b64encode(userinfo.encode()).decode()


def _assert_error_shape(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    body: dict[str, Any] = response.json()
    assert body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    datetime.fromisoformat(body["timestamp"])
    return body


# --- create ----------------------------------------------------------------------------------


def test_good_request_creates_a_ticket_with_fresh_ids(
    api: httpx.Client, control: httpx.Client
) -> None:
    first = api.post(TICKETS, json=DOCS_EXAMPLE)
    second = api.post(TICKETS, json={"title": "another"})

    assert first.status_code == 201
    body = first.json()
    assert body["statusCode"] == 201
    assert body["message"] == "Record created successfully."
    datetime.fromisoformat(body["timestamp"])
    ids = [r.json()["data"]["id"] for r in (first, second)]
    remote_ids = [r.json()["data"]["remote_id"] for r in (first, second)]
    assert all(isinstance(i, str) and i for i in ids + remote_ids)
    assert len(set(ids)) == 2 and len(set(remote_ids)) == 2
    assert re.fullmatch(r"[A-Z]+-\d+", remote_ids[0])

    stored = api.get(f"{TICKETS}/{ids[0]}")
    assert stored.status_code == 200
    data = stored.json()["data"]
    assert data["id"] == ids[0] and data["remote_id"] == remote_ids[0]
    assert data["title"] == DOCS_EXAMPLE["title"]
    assert data["priority"] == DOCS_EXAMPLE["priority"]
    assert data["created_at"] == data["updated_at"]
    assert _stats(control)["created"] == 2


def test_a_ticket_is_visible_only_from_its_own_account(api: httpx.Client) -> None:
    ticket_id = api.post(TICKETS, json={"title": "mine"}).json()["data"]["id"]

    elsewhere = api.get(f"{TICKETS}/{ticket_id}", headers={"x-account-id": OTHER_ACCOUNT})

    _assert_error_shape(elsewhere, 404)
    _assert_error_shape(api.get(f"{TICKETS}/no-such-id"), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"component_ids": "component-1"},
        {"component_ids": ["component-1", "component-2"]},
        {"project_id": "p-1", "priority": {"value": None}, "unified_custom_fields": {"x": 1}},
        {"title": None, "tags": None, "content": [{"plain": None, "html": "<b>x</b>"}]},
        {},
    ],
)
def test_every_shape_the_spec_allows_is_accepted(api: httpx.Client, body: dict[str, Any]) -> None:
    assert api.post(TICKETS, json=body).status_code == 201


# --- refusals, in the order they are checked -------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        _basic("wrong-key:"),
        _basic(f"{KEY}:not-empty"),
        _basic(KEY),  # no colon
        _basic(":"),
        f"Bearer {KEY}",
        "Basic %%%not-base64",
        None,
    ],
    ids=["wrong-key", "password", "no-colon", "empty-user", "bearer", "garbage", "missing"],
)
def test_bad_credentials_get_401_without_echoing_any_key(
    base_url: str, control: httpx.Client, authorization: str | None
) -> None:
    headers = {"x-account-id": ACCOUNT, "User-Agent": "ticketq-tests/1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = _post(base_url + TICKETS, json={"title": "t"}, headers=headers)

    body = _assert_error_shape(response, 401)
    assert body["message"] == "Unauthorized"
    assert KEY not in response.text and "wrong-key" not in response.text
    assert _stats(control)["created"] == 0


def test_any_non_empty_username_passes_when_no_key_is_configured() -> None:
    server = _LiveServer(FakeApiOptions())
    url = server.start()
    try:
        headers = {"x-account-id": "any", "User-Agent": "ticketq-tests/1"}
        ok = _post(url + TICKETS, json={}, headers=headers, auth=("whatever", ""))
        empty = _post(url + TICKETS, json={}, headers=headers, auth=("", ""))
    finally:
        server.stop()
    assert ok.status_code == 201
    assert empty.status_code == 401


@pytest.mark.parametrize("user_agent", ["", None])
def test_a_request_without_user_agent_gets_403(
    api: httpx.Client, control: httpx.Client, user_agent: str | None
) -> None:
    if user_agent is None:
        del api.headers["User-Agent"]
    else:
        api.headers["User-Agent"] = user_agent

    _assert_error_shape(api.post(TICKETS, json={"title": "t"}), 403)
    assert _stats(control)["created"] == 0


def test_a_missing_account_header_gets_400_naming_it(api: httpx.Client) -> None:
    del api.headers["x-account-id"]

    body = _assert_error_shape(api.post(TICKETS, json={"title": "t"}), 400)

    assert "x-account-id" in body["message"]


def test_an_account_outside_the_linked_ones_gets_404(api: httpx.Client) -> None:
    response = api.post(TICKETS, json={"title": "t"}, headers={"x-account-id": "acct-9"})

    _assert_error_shape(response, 404)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"title": "t", "severity": "high"}, "severity"),
        ({"priority": {"value": "urgent"}}, "priority.value"),
        ({"priority": {"value": "high", "colour": "red"}}, "priority.colour"),
        ({"priority": "high"}, "priority"),
        ({"title": 5}, "title"),
        ({"tags": "tag-1"}, "tags"),
        ({"assignees": ["user-1", 2]}, "assignees"),
        ({"content": [{"plain": "x", "text": "y"}]}, "content[0].text"),
        ({"content": [{"html": 3}]}, "content[0].html"),
        ({"content": ["just text"]}, "content[0]"),
        ({"component_ids": 7}, "component_ids"),
        ({"unified_custom_fields": ["x"]}, "unified_custom_fields"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_a_body_the_spec_refuses_gets_400_naming_the_field(
    api: httpx.Client, control: httpx.Client, body: Any, named: str
) -> None:
    error = _assert_error_shape(api.post(TICKETS, json=body), 400)

    assert named in error["message"]
    assert _stats(control)["created"] == 0


def test_a_body_that_is_not_json_gets_400(api: httpx.Client) -> None:
    response = api.post(TICKETS, content=b"{title: nope", headers={"Content-Type": "text/plain"})

    assert "JSON object" in _assert_error_shape(response, 400)["message"]


# --- rate limit, latency, random errors ------------------------------------------------------


def test_rpm_limit_answers_429_with_seconds_until_a_slot_frees(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.post("/_fake/config", json={"rpm_limit": 5}).raise_for_status()

    statuses = [api.post(TICKETS, json={"title": f"t{i}"}).status_code for i in range(5)]
    limited = api.post(TICKETS, json={"title": "t5"})

    assert statuses == [201] * 5
    _assert_error_shape(limited, 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert _stats(control)["created"] == 5
    assert _stats(control)["by_status"] == {"201": 5, "429": 1}


def test_latency_is_added_to_every_request(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/_fake/config", json={"latency_ms": 150}).raise_for_status()

    started = time.monotonic()
    response = api.post(TICKETS, json={"title": "slow"})

    assert response.status_code == 201
    assert time.monotonic() - started >= 0.15


def test_error_rate_answers_500_before_creating(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/_fake/config", json={"error_rate": 1.0}).raise_for_status()

    statuses = [api.post(TICKETS, json={"title": "doomed"}).status_code for _ in range(3)]

    assert statuses == [500, 500, 500]
    assert _stats(control)["created"] == 0


def test_config_refuses_unknown_options_and_never_shows_the_key(control: httpx.Client) -> None:
    _assert_error_shape(control.post("/_fake/config", json={"api_key": "x"}), 400)
    _assert_error_shape(control.post("/_fake/config", json={"error_rate": 2}), 400)

    current = control.post("/_fake/config", json={})

    assert current.json() == {
        "latency_ms": 0.0,
        "rpm_limit": None,
        "error_rate": 0.0,
        "auth_failure": None,
        "list_lag_ms": 0.0,
        "list_style": "verbatim",
    }
    assert KEY not in current.text


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_refuses_every_ticketing_request_until_lifted(
    base_url: str, api: httpx.Client, control: httpx.Client, status: Literal[401, 403]
) -> None:
    ticket_id = api.post(TICKETS, json={"title": "before"}).json()["data"]["id"]
    fake = FakeApiControl(base_url)
    try:
        in_force = fake.configure(auth_failure=status)

        refused = [
            api.post(TICKETS, json={"title": "revoked"}),
            api.get(TICKETS),
            api.get(f"{TICKETS}/{ticket_id}"),
        ]
        lifted = fake.configure(auth_failure=None)
    finally:
        fake.close()

    assert in_force["auth_failure"] == status and lifted["auth_failure"] is None
    for response in refused:
        body = _assert_error_shape(response, status)
        assert body["message"] == {401: "Unauthorized", 403: "Forbidden"}[status]
        assert KEY not in response.text
    assert KEY not in str(in_force)
    stats = _stats(control)
    assert stats["created_by_title"] == {"before": 1}
    assert stats["by_status"] == {"201": 1, str(status): 1}
    assert stats["requests_by_title"]["revoked"]  # still counted as an arrival
    assert api.post(TICKETS, json={"title": "after"}).status_code == 201
    assert api.get(f"{TICKETS}/{ticket_id}").status_code == 200


@pytest.mark.parametrize("value", [500, 200, "401", 401.0, True, [401]])
def test_auth_failure_accepts_only_401_403_or_null(control: httpx.Client, value: Any) -> None:
    response = control.post("/_fake/config", json={"auth_failure": value})

    assert "auth_failure" in _assert_error_shape(response, 400)["message"]
    assert control.post("/_fake/config", json={}).json()["auth_failure"] is None


# --- scripted answers ------------------------------------------------------------------------


def test_script_500_then_explicit_201_then_normal(api: httpx.Client, control: httpx.Client) -> None:
    _script(control, "flaky", {"status": 500}, {"status": 201})

    statuses = [api.post(TICKETS, json={"title": "flaky"}).status_code for _ in range(3)]
    other = api.post(TICKETS, json={"title": "steady"})

    assert statuses == [500, 201, 201]
    assert other.status_code == 201
    stats = _stats(control)
    assert stats["requests"] == 4
    assert stats["created_by_title"] == {"flaky": 2, "steady": 1}
    arrivals = stats["requests_by_title"]["flaky"]
    assert len(arrivals) == 3 and arrivals == sorted(arrivals)
    assert stats["by_status"] == {"201": 3, "500": 1}


def test_scripted_201_bypasses_the_random_error_rate(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.post("/_fake/config", json={"error_rate": 1.0}).raise_for_status()
    _script(control, "lucky", {"status": 201})

    assert api.post(TICKETS, json={"title": "lucky"}).status_code == 201
    assert api.post(TICKETS, json={"title": "lucky"}).status_code == 500


def test_scripted_errors_carry_retry_after_verbatim_and_provider_errors(
    api: httpx.Client, control: httpx.Client
) -> None:
    http_date = "Wed, 21 Oct 2015 07:28:00 GMT"
    provider_errors = [{"status": 400, "url": "https://jira.example/rest", "raw": {"e": 1}}]
    _script(
        control,
        "t",
        {"status": 429, "retry_after": http_date},
        {"status": 408, "retry_after": "1"},
        {"status": 422, "message": "Field 'type' is invalid", "provider_errors": provider_errors},
    )

    limited, timed_out, rejected = (api.post(TICKETS, json={"title": "t"}) for _ in range(3))

    _assert_error_shape(limited, 429)
    assert limited.headers["Retry-After"] == http_date
    _assert_error_shape(timed_out, 408)
    assert timed_out.headers["Retry-After"] == "1"
    body = _assert_error_shape(rejected, 422)
    assert body["message"] == "Field 'type' is invalid"
    assert body["provider_errors"] == provider_errors
    assert "Retry-After" not in rejected.headers
    assert _stats(control)["created"] == 0


def test_create_then_drop_creates_yet_the_client_sees_a_dropped_connection(
    api: httpx.Client, control: httpx.Client
) -> None:
    _script(control, "ghost", {"create_then_drop": True})

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.post(TICKETS, json={"title": "ghost"})
    again = api.post(TICKETS, json={"title": "ghost"})

    assert again.status_code == 201
    stats = _stats(control)
    assert stats["created_by_title"] == {"ghost": 2}  # the duplicate a blind retry makes
    assert stats["dropped"] == 1
    assert stats["by_status"] == {"201": 1}


def test_create_then_hang_creates_before_the_answer(
    api: httpx.Client, control: httpx.Client
) -> None:
    _script(control, "stuck", {"create_then_hang_ms": 2000}, {"create_then_hang_ms": 300})

    with pytest.raises(httpx.ReadTimeout):
        api.post(TICKETS, json={"title": "stuck"}, timeout=httpx.Timeout(5, read=0.2))
    assert _stats(control)["created_by_title"] == {"stuck": 1}
    started = time.monotonic()
    answered = api.post(TICKETS, json={"title": "stuck"})

    assert answered.status_code == 201
    assert time.monotonic() - started >= 0.3
    assert _stats(control)["created_by_title"] == {"stuck": 2}


def test_delay_waits_first_so_the_ticket_appears_after_the_client_gave_up(
    api: httpx.Client, control: httpx.Client
) -> None:
    _script(control, "late", {"delay_ms": 400})

    with pytest.raises(httpx.ReadTimeout):
        api.post(TICKETS, json={"title": "late"}, timeout=httpx.Timeout(5, read=0.1))
    assert _stats(control)["created"] == 0
    deadline = time.monotonic() + 3
    while _stats(control)["created"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)

    assert _stats(control)["created_by_title"] == {"late": 1}


def test_an_empty_script_changes_nothing(api: httpx.Client, control: httpx.Client) -> None:
    _script(control, "plain")

    assert api.post(TICKETS, json={"title": "plain"}).status_code == 201


@pytest.mark.parametrize(
    "step",
    [
        {"status": 200},
        {"bogus": 1},
        {"status": 500, "create_then_drop": True},
        {"status": 429, "retry_after": 2},
        {"message": "no status"},
        {"delay_ms": -1},
        "not an object",
    ],
)
def test_a_malformed_step_is_refused(control: httpx.Client, step: Any) -> None:
    response = control.post("/_fake/script", json={"title": "t", "responses": [step]})

    _assert_error_shape(response, 400)


# --- reading back, stats, reset --------------------------------------------------------------


def test_list_filters_by_account_and_updated_after_and_pages(api: httpx.Client) -> None:
    created = []
    for title in ("a", "b", "c"):
        created.append(api.post(TICKETS, json={"title": title}).json()["data"]["id"])
        time.sleep(0.005)  # distinct milliseconds, so updated_after can split them
    api.post(TICKETS, json={"title": "other"}, headers={"x-account-id": OTHER_ACCOUNT})
    first_updated = api.get(f"{TICKETS}/{created[0]}").json()["data"]["updated_at"]

    everything = api.get(TICKETS).json()
    after_first = api.get(TICKETS, params={"filter[updated_after]": first_updated}).json()
    page_one = api.get(TICKETS, params={"page_size": 2}).json()
    page_two = api.get(TICKETS, params={"page_size": 2, "next": page_one["next"]}).json()
    other = api.get(TICKETS, headers={"x-account-id": OTHER_ACCOUNT}).json()

    assert [t["id"] for t in everything["data"]] == created
    assert everything["next"] is None
    assert [t["title"] for t in after_first["data"]] == ["b", "c"]
    assert [t["title"] for t in page_one["data"]] == ["a", "b"]
    assert page_one["next"] is not None
    assert [t["title"] for t in page_two["data"]] == ["c"]
    assert page_two["next"] is None
    assert [t["title"] for t in other["data"]] == ["other"]
    bad = api.get(TICKETS, params={"filter[updated_after]": "yesterday"})
    assert "updated_after" in _assert_error_shape(bad, 400)["message"]


def test_reading_back_needs_the_same_auth(base_url: str, api: httpx.Client) -> None:
    ticket_id = api.post(TICKETS, json={"title": "t"}).json()["data"]["id"]
    headers = {"x-account-id": ACCOUNT, "User-Agent": "ticketq-tests/1"}

    _assert_error_shape(_get(f"{base_url}{TICKETS}/{ticket_id}", headers=headers), 401)
    _assert_error_shape(_get(base_url + TICKETS, headers=headers), 401)


def test_stats_count_every_post_by_status_and_title(
    base_url: str, api: httpx.Client, control: httpx.Client
) -> None:
    api.post(TICKETS, json={"title": "x"})
    api.post(TICKETS, json={"title": "x"})
    _post(base_url + TICKETS, json={"title": "y"}, headers=dict(api.headers), auth=None)
    api.post(TICKETS, json={"tags": ["untitled"]})

    stats = _stats(control)

    assert stats["requests"] == 4
    assert stats["created"] == 3
    assert stats["by_status"] == {"201": 3, "401": 1}
    assert stats["created_by_title"] == {"x": 2}
    assert {title: len(times) for title, times in stats["requests_by_title"].items()} == {
        "x": 2,
        "y": 1,
    }


def test_stats_say_how_many_requests_each_account_had_in_flight_at_most_and_on_average(
    api: httpx.Client, control: httpx.Client
) -> None:
    """What the account cap's tests read: the stand-in's own count, not the client's."""
    control.post("/_fake/config", json={"latency_ms": 200}).raise_for_status()

    def post(account: str) -> None:
        api.post(TICKETS, json={"title": "in flight"}, headers={"x-account-id": account})

    threads = [threading.Thread(target=post, args=(a,)) for a in [ACCOUNT] * 3 + [OTHER_ACCOUNT]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    flights = _stats(control)["in_flight_by_account"]
    assert flights[ACCOUNT]["peak"] == 3 and flights[OTHER_ACCOUNT]["peak"] == 1
    assert 1.0 < flights[ACCOUNT]["mean"] <= 3.0
    assert flights[ACCOUNT]["now"] == flights[OTHER_ACCOUNT]["now"] == 0


def test_stats_name_the_client_ports_of_the_requests_in_flight(
    api: httpx.Client, control: httpx.Client
) -> None:
    """What the worker-kill chaos test reads to kill a worker with requests out."""
    control.post("/_fake/config", json={"latency_ms": 500}).raise_for_status()
    with httpx.Client(base_url=str(api.base_url), headers=api.headers) as own:
        thread = threading.Thread(target=lambda: own.post(TICKETS, json={"title": "out"}))
        thread.start()
        time.sleep(0.2)
        during = _stats(control)["in_flight_from"]
        thread.join()

    assert len(during) == 1 and during[0] > 0
    assert _stats(control)["in_flight_from"] == []


def test_reset_forgets_tickets_scripts_and_stats_but_keeps_options(
    api: httpx.Client, control: httpx.Client
) -> None:
    control.post("/_fake/config", json={"rpm_limit": 100}).raise_for_status()
    ticket_id = api.post(TICKETS, json={"title": "t"}).json()["data"]["id"]
    _script(control, "t", {"status": 500})

    control.post("/_fake/reset").raise_for_status()

    _assert_error_shape(api.get(f"{TICKETS}/{ticket_id}"), 404)
    assert api.post(TICKETS, json={"title": "t"}).status_code == 201  # script gone
    assert _stats(control)["requests"] == 1
    assert control.post("/_fake/config", json={}).json()["rpm_limit"] == 100


# --- what reconciliation reads back: lag, tickets by someone else, provider styles ------------


def _listed(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get(TICKETS)
    response.raise_for_status()
    listed: list[dict[str, Any]] = response.json()["data"]
    return listed


def test_a_lagging_listing_hides_a_new_ticket_until_the_lag_has_passed(
    api: httpx.Client, fake: FakeApiControl
) -> None:
    assert fake.configure(list_lag_ms=500)["list_lag_ms"] == 500
    created = time.monotonic()
    ticket_id = api.post(TICKETS, json={"title": "indexed late"}).json()["data"]["id"]

    hidden = _listed(api)
    while not _listed(api) and time.monotonic() < created + 3:
        time.sleep(0.02)
    shown_after = time.monotonic() - created

    assert hidden == []
    assert [t["id"] for t in _listed(api)] == [ticket_id]
    assert shown_after >= 0.49  # creation times are whole milliseconds
    assert fake.stats()["created_by_title"] == {"indexed late": 1}


def test_a_read_by_id_shows_a_ticket_the_lagging_listing_still_hides(
    api: httpx.Client, fake: FakeApiControl
) -> None:
    fake.configure(list_lag_ms=60_000)
    ticket_id = api.post(TICKETS, json={"title": "t"}).json()["data"]["id"]

    read = api.get(f"{TICKETS}/{ticket_id}")

    assert _listed(api) == []
    assert read.status_code == 200 and read.json()["data"]["title"] == "t"


@pytest.mark.parametrize("value", [-1, "5", True, None, [1]])
def test_list_lag_ms_accepts_only_a_non_negative_number(control: httpx.Client, value: Any) -> None:
    response = control.post("/_fake/config", json={"list_lag_ms": value, "latency_ms": 5})

    assert "list_lag_ms" in _assert_error_shape(response, 400)["message"]
    current = control.post("/_fake/config", json={}).json()
    assert current["list_lag_ms"] == 0 and current["latency_ms"] == 0  # nothing half-applied


def test_a_ticket_created_elsewhere_is_read_back_but_not_counted_as_ours(
    api: httpx.Client, fake: FakeApiControl
) -> None:
    fake.configure(rpm_limit=1, auth_failure=401)  # neither applies to someone else
    theirs_body = {"title": "Printer broken", "content": [{"plain": "3rd floor"}]}
    fake.script("Printer broken", {"status": 500})

    theirs = fake.create_elsewhere(ACCOUNT, theirs_body)
    fake.configure(rpm_limit=None, auth_failure=None)
    scripted = api.post(TICKETS, json={"title": "Printer broken"})
    ours = api.post(TICKETS, json={"title": "Printer broken"}).json()["data"]

    assert set(theirs) == {"id", "remote_id"}
    assert scripted.status_code == 500  # the script was left for our client's request
    assert [t["id"] for t in _listed(api)] == [theirs["id"], ours["id"]]
    assert api.get(f"{TICKETS}/{theirs['id']}").json()["data"]["content"] == [
        {"plain": "3rd floor"}
    ]
    other_account = api.get(f"{TICKETS}/{theirs['id']}", headers={"x-account-id": OTHER_ACCOUNT})
    _assert_error_shape(other_account, 404)
    stats = fake.stats()
    assert stats["created"] == 1 and stats["created_by_title"] == {"Printer broken": 1}
    assert stats["created_elsewhere"] == 1
    assert stats["requests"] == 2 and stats["by_status"] == {"201": 1, "500": 1}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"account_id": ACCOUNT, "ticket": {"title": 5}}, "ticket.title"),
        ({"account_id": ACCOUNT, "ticket": {"severity": "high"}}, "ticket.severity"),
        ({"account_id": ACCOUNT, "ticket": ["x"]}, "ticket"),
        ({"account_id": ACCOUNT}, "ticket"),
        ({"ticket": {"title": "t"}}, "account_id"),
        ({"account_id": 7, "ticket": {}}, "account_id"),
        ({"account_id": "acct-9", "ticket": {}}, "account_id"),
        ({"account_id": ACCOUNT, "ticket": {}, "tiket": {}}, "tiket"),
    ],
)
def test_a_ticket_elsewhere_with_a_bad_body_is_refused_naming_the_field(
    control: httpx.Client, body: dict[str, Any], named: str
) -> None:
    error = _assert_error_shape(control.post("/_fake/tickets", json=body), 400)

    assert named in error["message"]
    assert _stats(control)["created_elsewhere"] == 0


def test_also_elsewhere_creates_someone_elses_ticket_before_the_step_answers(
    api: httpx.Client, fake: FakeApiControl
) -> None:
    theirs = {"title": "Checkout is down", "content": [{"plain": "since 9:00, EU only"}]}
    fake.script(
        "Checkout is down",
        {"create_then_drop": True, "also_elsewhere": theirs},
        {"status": 408, "also_elsewhere": theirs},
    )
    ours = {"title": "Checkout is down", "content": [{"plain": "card payments fail"}]}

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.post(TICKETS, json=ours)
    timed_out = api.post(TICKETS, json=ours)

    assert timed_out.status_code == 408
    listed = [(t["title"], t["content"][0]["plain"]) for t in _listed(api)]
    assert listed == [
        ("Checkout is down", "since 9:00, EU only"),
        ("Checkout is down", "card payments fail"),
        ("Checkout is down", "since 9:00, EU only"),
    ]
    stats = fake.stats()
    assert stats["created_by_title"] == {"Checkout is down": 1}
    assert stats["created_elsewhere"] == 2 and stats["dropped"] == 1


@pytest.mark.parametrize(
    ("step", "named"),
    [
        ({"also_elsewhere": {"title": 5}}, "also_elsewhere.title"),
        ({"also_elsewhere": {"content": [{"text": "x"}]}}, "also_elsewhere.content[0].text"),
        ({"also_elsewhere": ["title"]}, "also_elsewhere"),
        ({"also_elsewere": {"title": "t"}}, "also_elsewere"),
    ],
)
def test_a_step_with_a_bad_also_elsewhere_is_refused_naming_the_field(
    control: httpx.Client, step: dict[str, Any], named: str
) -> None:
    response = control.post("/_fake/script", json={"title": "t", "responses": [step]})

    assert named in _assert_error_shape(response, 400)["message"]


def test_the_provider_style_shows_a_ticket_as_a_provider_maps_it_back(
    api: httpx.Client, fake: FakeApiControl
) -> None:
    sent = {
        "title": "  Checkout \t is   down\n",
        "content": [
            {"plain": "Cards <b>& wallets</b>\nfail\r\nsince 9:00"},
            {"plain": "ignored", "html": "<ul><li>kept</li></ul>"},
        ],
        "assignees": ["user-1", "user-2"],
        "reporters": ["user-3", "user-4"],
        "tags": ["Payments", "EU-West"],
        "component_ids": ["c-1", "c-2", "c-3"],
        "priority": {"value": "high"},
        "unified_custom_fields": {"Team": "Payments"},
    }
    ticket_id = api.post(TICKETS, json=sent).json()["data"]["id"]

    assert fake.configure(list_style="provider")["list_style"] == "provider"
    listed, read = _listed(api)[0], api.get(f"{TICKETS}/{ticket_id}").json()["data"]
    fake.configure(list_style="verbatim")

    assert listed == read
    assert {name: listed[name] for name in sent} == {
        "title": "Checkout is down",
        "content": [
            {
                "plain": None,
                "html": "<p>Cards &lt;b&gt;&amp; wallets&lt;/b&gt;<br>fail<br>since 9:00</p>",
            },
            {"plain": None, "html": "<ul><li>kept</li></ul>"},
        ],
        "assignees": ["user-2", "user-1"],
        "reporters": ["user-4", "user-3"],
        "tags": ["eu-west", "payments"],
        "component_ids": ["c-3", "c-2", "c-1"],
        "priority": {"value": "high"},
        "unified_custom_fields": {"Team": "Payments"},
    }
    assert {name: _listed(api)[0][name] for name in sent} == sent  # the ticket is unchanged


def test_the_sparse_style_shows_only_ids_title_and_times(
    api: httpx.Client, fake: FakeApiControl
) -> None:
    ticket_id = api.post(TICKETS, json=DOCS_EXAMPLE).json()["data"]["id"]

    fake.configure(list_style="sparse")
    listed, read = _listed(api)[0], api.get(f"{TICKETS}/{ticket_id}").json()["data"]

    assert listed == read
    assert set(listed) == {"id", "remote_id", "title", "created_at", "updated_at"}
    assert listed["id"] == ticket_id and listed["title"] == DOCS_EXAMPLE["title"]


@pytest.mark.parametrize("value", ["Provider", "html", "", 1, None])
def test_list_style_accepts_only_verbatim_provider_or_sparse(
    control: httpx.Client, value: Any
) -> None:
    response = control.post("/_fake/config", json={"list_style": value})

    assert "list_style" in _assert_error_shape(response, 400)["message"]
    assert control.post("/_fake/config", json={}).json()["list_style"] == "verbatim"


def test_health(control: httpx.Client) -> None:
    response = control.get("/_fake/health")

    assert response.status_code == 200
    assert response.json() == {"ok": True}


# --- serve() as a process --------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["s3cret-key-value", None])
def test_serve_announces_itself_without_the_key_and_exits_cleanly_on_sigterm(
    api_key: str | None,
) -> None:
    code = (
        "from ops.fakeapi import FakeApiOptions, serve; "
        f"serve('127.0.0.1', 0, FakeApiOptions(api_key={api_key!r}))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"fake StackOne API listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        assert _get(match[1] + "/_fake/health").json() == {"ok": True}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert out == ""
    assert "s3cret" not in line + err
    assert ("any non-empty API key" in err) == (api_key is None)


@pytest.mark.parametrize(
    ("flags", "named"),
    [(["--list-style", "Provider"], "list_style"), (["--list-lag-ms", "-1"], "list_lag_ms")],
)
def test_the_command_refuses_a_bad_option_in_one_line_before_serving(
    flags: list[str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "fake-api", "--port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and named in result.stderr
