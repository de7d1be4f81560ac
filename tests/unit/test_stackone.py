"""The StackOne client: what goes on the wire, and how every answer becomes an outcome."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from worker.contract import ErrorKind, TicketCreate
from worker.settings import Settings
from worker.stackone.answers import Answer, Failure, TicketCreated, TicketPage
from worker.stackone.client import LIST_PAGE_SIZE, MAX_MESSAGE_CHARS, StackOneClient

KEY = "sk-test"
ACCOUNT = "acct-42"
TICKET = TicketCreate(
    title="System outage",
    priority={"value": "high"},
    content=[{"plain": "down", "html": "<p>down</p>"}],
    tags=["tag-1"],
)
Handler = Callable[[httpx.Request], httpx.Response]
T = TypeVar("T")


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "stackone_api_key": KEY,
        "stackone_base_url": "http://stackone.test",
        "read_timeout": 75.0,
    }
    return Settings(**(values | overrides))


def with_client(
    handler: Handler, call: Callable[[StackOneClient], Awaitable[T]], **overrides: Any
) -> T:
    """Run ``call`` on a client over ``handler`` in a fresh event loop, closing it after."""

    async def body() -> T:
        client = StackOneClient(settings(**overrides), transport=httpx.MockTransport(handler))
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(body())


def send(handler: Handler, **overrides: Any) -> Answer:
    return with_client(handler, lambda client: client.create_ticket(ACCOUNT, TICKET), **overrides)


def failed(handler: Handler) -> Failure:
    outcome = send(handler)
    assert isinstance(outcome, Failure), outcome
    return outcome


def answer(status: int, body: object = None, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handler


def answer_text(status: int, text: str) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=text)

    return handler


def created_body(**data: object) -> dict[str, object]:
    return {"statusCode": 201, "message": "Record created successfully.", "data": data}


def error_body(status: int, message: object, **extra: object) -> dict[str, object]:
    return {"statusCode": status, "message": message, "timestamp": "2025-01-01T00:00:00Z"} | extra


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def raising_from(exc: Exception, cause: BaseException) -> Handler:
    """As the aiohttp transport does: an httpx error whose ``__cause__`` is aiohttp's."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc from cause

    return handler


# --- the request -----------------------------------------------------------------------


def test_request_carries_auth_account_agent_and_exact_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=created_body(id="t-1", remote_id="JIRA-1"))

    send(handler)

    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://stackone.test/unified/ticketing/tickets"
    expected_token = base64.b64encode(b"sk-test:").decode()
    assert request.headers["Authorization"] == f"Basic {expected_token}"
    assert request.headers["x-account-id"] == ACCOUNT
    assert request.headers["User-Agent"].startswith("ticketq/")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.content == TICKET.to_json().encode()
    assert json.loads(request.content) == json.loads(TICKET.to_json())


def test_missing_key_is_refused_at_construction_without_key_text() -> None:
    with pytest.raises(ValueError, match="STACKONE_API_KEY is not set") as info:
        StackOneClient(Settings(stackone_base_url="http://stackone.test", stackone_api_key=None))
    assert KEY not in str(info.value)


def test_empty_key_is_refused_like_a_missing_one() -> None:
    with pytest.raises(ValueError, match="STACKONE_API_KEY is not set"):
        StackOneClient(settings(stackone_api_key=""))


def test_account_id_that_cannot_be_a_header_fails_without_a_request() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(201, json=created_body(id="t-1"))

    async def send_each(client: StackOneClient) -> list[Answer]:
        return [
            await client.create_ticket(bad, TICKET)
            for bad in ("acct\r\nX-Evil: 1", "accté", " acct")
        ]

    for outcome in with_client(handler, send_each):
        assert isinstance(outcome, Failure)
        assert outcome.kind is ErrorKind.INVALID
    assert calls == []


# --- success ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
def test_success_yields_ids(status: int) -> None:
    outcome = send(answer(status, created_body(id="t-1", remote_id="JIRA-7")))
    assert isinstance(outcome, TicketCreated)
    assert outcome.ticket.id == "t-1"
    assert outcome.ticket.remote_id == "JIRA-7"


def test_success_without_remote_id_still_created() -> None:
    outcome = send(answer(201, created_body(id="t-1")))
    assert isinstance(outcome, TicketCreated)
    assert outcome.ticket.remote_id is None


def test_numeric_remote_id_kept_as_text() -> None:
    outcome = send(answer(201, created_body(id="t-1", remote_id=10042)))
    assert isinstance(outcome, TicketCreated)
    assert outcome.ticket.remote_id == "10042"


@pytest.mark.parametrize(
    "body",
    [created_body(), created_body(id=""), {"data": None}, {"message": "ok"}, [1, 2], None],
)
def test_success_without_id_is_ambiguous(body: object) -> None:
    failure = failed(answer(201, body))
    assert failure.kind is ErrorKind.AMBIGUOUS
    assert failure.status == 201


def test_success_with_non_json_body_is_ambiguous() -> None:
    failure = failed(answer_text(201, "<html>created</html>"))
    assert failure.kind is ErrorKind.AMBIGUOUS
    assert "<html>created</html>" in failure.message


# --- HTTP errors -----------------------------------------------------------------------

PROVIDER_ERRORS = [{"status": 400, "url": "https://jira.example/rest", "raw": {"e": "bad"}}]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.TERMINAL),
        (401, ErrorKind.BAD_CREDENTIALS),
        (403, ErrorKind.BAD_CREDENTIALS),
        (404, ErrorKind.TERMINAL),
        (408, ErrorKind.AMBIGUOUS),
        (409, ErrorKind.TERMINAL),
        (412, ErrorKind.TERMINAL),
        (418, ErrorKind.TERMINAL),
        (422, ErrorKind.TERMINAL),
        (429, ErrorKind.RETRYABLE),
        (500, ErrorKind.RETRYABLE),
        (501, ErrorKind.TERMINAL),
        (502, ErrorKind.RETRYABLE),
        (503, ErrorKind.RETRYABLE),
        (504, ErrorKind.RETRYABLE),
        (599, ErrorKind.RETRYABLE),
        (302, ErrorKind.TERMINAL),
    ],
)
def test_status_maps_to_kind_keeping_message_and_provider_errors(
    status: int, kind: ErrorKind
) -> None:
    body = error_body(status, f"StackOne says {status}", provider_errors=PROVIDER_ERRORS)
    failure = failed(answer(status, body))
    assert failure.kind is kind
    assert failure.status == status
    assert failure.message == f"StackOne says {status}"
    assert failure.provider_errors == PROVIDER_ERRORS
    assert failure.to_error().model_dump() == {
        "kind": kind,
        "message": f"StackOne says {status}",
        "status": status,
        "provider_errors": PROVIDER_ERRORS,
    }


def test_list_message_is_joined() -> None:
    failure = failed(answer(400, error_body(400, ["title must be a string", "tags too long"])))
    assert failure.message == "title must be a string; tags too long"


def test_missing_provider_errors_is_none() -> None:
    assert failed(answer(404, error_body(404, "account not found"))).provider_errors is None


@pytest.mark.parametrize("status", [429, 503, 408])
def test_retry_after_is_kept_as_stackone_sent_it(status: int) -> None:
    failure = failed(answer(status, error_body(status, "slow down"), {"Retry-After": "60"}))
    assert failure.retry_after == "60"


@pytest.mark.parametrize(
    "header", [format_datetime(datetime(2030, 1, 1, tzinfo=UTC), usegmt=True), "soon"]
)
def test_a_retry_after_date_or_garbage_is_left_for_the_retry_policy_to_read(header: str) -> None:
    failure = failed(answer(429, error_body(429, "slow down"), {"Retry-After": header}))
    assert failure.retry_after == header


def test_no_retry_after_header_is_none() -> None:
    assert failed(answer(503, error_body(503, "down"))).retry_after is None


def test_non_json_error_body_gives_reason_and_snippet() -> None:
    html = "<html><body>\n  502 Bad Gateway  \n</body></html>"
    failure = failed(answer_text(502, html))
    assert failure.kind is ErrorKind.RETRYABLE
    assert failure.message == "HTTP 502 Bad Gateway: <html><body> 502 Bad Gateway </body></html>"
    assert failure.provider_errors is None


def test_long_messages_are_truncated() -> None:
    failure = failed(answer_text(500, "x" * 100_000))
    assert len(failure.message) <= MAX_MESSAGE_CHARS
    long_json = failed(answer(400, error_body(400, "y" * 100_000)))
    assert len(long_json.message) <= MAX_MESSAGE_CHARS


# --- the key never leaks ---------------------------------------------------------------


def echo_everything(request: httpx.Request) -> httpx.Response:
    """A hostile server that echoes the request, Authorization header included."""
    auth = request.headers["Authorization"]
    echoed = f"you sent {auth} which is key {KEY} for account {ACCOUNT}"
    return httpx.Response(
        400,
        json=error_body(
            400,
            echoed,
            provider_errors=[{"raw": echoed, "headers": {"authorization": auth, KEY: [KEY]}}],
        ),
    )


def test_key_scrubbed_from_message_and_provider_errors() -> None:
    failure = failed(echo_everything)
    token = base64.b64encode(f"{KEY}:".encode()).decode()
    for text in (failure.message, json.dumps(failure.provider_errors), repr(failure)):
        assert KEY not in text
        assert token not in text
    assert ACCOUNT in failure.message  # scrubbing removes the key, not the rest


@pytest.mark.parametrize("status", [201, 500])
def test_no_part_of_the_key_survives_truncation(status: int) -> None:
    # Slide the key across the truncation point: it is scrubbed whole before any cut.
    for pad in range(MAX_MESSAGE_CHARS - 60, MAX_MESSAGE_CHARS):
        text = "a" * pad + KEY + "b" * 100

        failure = failed(answer_text(status, text))

        assert "sk-" not in failure.message, pad


def test_key_scrubbed_from_network_failure_text() -> None:
    failure = failed(raising(httpx.ConnectError(f"refused, key {KEY}")))
    assert KEY not in failure.message


# --- network failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (httpx.ConnectError("refused"), ErrorKind.RETRYABLE, "could not connect"),
        (httpx.ConnectTimeout("slow"), ErrorKind.RETRYABLE, "connect timeout after 5s"),
        (httpx.PoolTimeout("busy"), ErrorKind.RETRYABLE, "no free connection"),
        (httpx.ReadTimeout("slow"), ErrorKind.AMBIGUOUS, "read timeout after 75s"),
        (httpx.WriteTimeout("slow"), ErrorKind.AMBIGUOUS, "write timeout"),
        (
            httpx.RemoteProtocolError("peer closed"),
            ErrorKind.AMBIGUOUS,
            "connection dropped before the response",
        ),
        (httpx.ReadError("reset"), ErrorKind.AMBIGUOUS, "while reading the response"),
        (httpx.WriteError("broken pipe"), ErrorKind.AMBIGUOUS, "while sending the request"),
        (httpx.DecodingError("bad gzip"), ErrorKind.AMBIGUOUS, "DecodingError"),
    ],
)
def test_network_failure_kind_follows_whether_the_request_may_have_been_sent(
    exc: Exception, kind: ErrorKind, words: str
) -> None:
    failure = failed(raising(exc))
    assert failure.kind is kind
    assert failure.status is None
    assert words in failure.message


def test_huge_provider_errors_are_cut_to_fit_a_job_record() -> None:
    errors = [{"status": 400, "url": "u", "raw": {"page": "x" * 50_000}}] * 30

    outcome = failed(answer(422, {"message": "bad", "provider_errors": errors}))

    assert outcome.provider_errors is not None and len(outcome.provider_errors) == 10
    assert len(json.dumps(outcome.provider_errors)) < 25_000
    assert outcome.provider_errors[0]["raw"].endswith("(truncated)")
    assert outcome.provider_errors[0]["status"] == 400


# --- the aiohttp transport's "connect" errors ------------------------------------------

# httpx_aiohttp maps every aiohttp connection error, including a drop after the request
# went out, to httpx.ConnectTimeout/ConnectError, keeping aiohttp's error as __cause__.
REFUSED = aiohttp.ClientConnectorError(
    ConnectionKey("stackone.test", 80, False, True, None, None, None),
    ConnectionRefusedError(111, "Connection refused"),
)


@pytest.mark.parametrize("wrapper", [httpx.ConnectTimeout, httpx.ConnectError])
@pytest.mark.parametrize(
    "cause",
    [aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(104, "reset")],
    ids=["server-disconnected", "client-os-error"],
)
def test_connection_lost_after_connecting_is_ambiguous(
    wrapper: type[httpx.TransportError], cause: aiohttp.ClientError
) -> None:
    failure = failed(raising_from(wrapper("x"), cause))
    assert failure.kind is ErrorKind.AMBIGUOUS
    assert failure.status is None
    assert "connection lost after the request may have been sent" in failure.message
    assert type(cause).__name__ in failure.message


@pytest.mark.parametrize("wrapper", [httpx.ConnectTimeout, httpx.ConnectError])
@pytest.mark.parametrize(
    "cause",
    [REFUSED, aiohttp.ConnectionTimeoutError()],
    ids=["connector-error", "connection-timeout"],
)
def test_failure_to_connect_stays_retryable(
    wrapper: type[httpx.TransportError], cause: aiohttp.ClientError
) -> None:
    failure = failed(raising_from(wrapper("x"), cause))
    assert failure.kind is ErrorKind.RETRYABLE
    assert failure.status is None


def test_connect_error_without_a_cause_stays_retryable() -> None:
    failure = failed(raising(httpx.ConnectError("refused")))
    assert failure.kind is ErrorKind.RETRYABLE
    assert "could not connect" in failure.message


# --- listing tickets (reconciliation) --------------------------------------------------

UPDATED_AFTER = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()


def list_page(handler: Handler, cursor: str | None = None) -> TicketPage | Failure:
    return with_client(handler, lambda client: client.list_tickets(ACCOUNT, UPDATED_AFTER, cursor))


def test_list_tickets_sends_filter_page_size_and_cursor_and_parses_the_page() -> None:
    seen: list[httpx.Request] = []
    tickets = [{"id": "t-1", "remote_id": "JIRA-1"}, {"id": "t-2"}]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [*tickets, "not a ticket"], "next": "c2"})

    page = list_page(handler, cursor="c1")

    assert page == TicketPage(tickets, "c2")
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/unified/ticketing/tickets"
    assert request.headers["x-account-id"] == ACCOUNT
    assert dict(request.url.params) == {
        "filter[updated_after]": "2025-01-02T03:04:05+00:00",
        "page_size": str(LIST_PAGE_SIZE),
        "next": "c1",
    }


def test_list_tickets_first_page_sends_no_cursor_and_last_page_has_no_next() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": [], "next": None})

    assert list_page(handler) == TicketPage([], None)
    assert "next" not in seen[0].url.params


def test_list_tickets_server_error_is_a_retryable_failure() -> None:
    page = list_page(answer(500, error_body(500, "internal error")))
    assert isinstance(page, Failure)
    assert page.kind is ErrorKind.RETRYABLE
    assert page.status == 500
    assert page.message == "internal error"


def test_list_tickets_network_failure_is_retryable_even_when_ambiguous_for_a_create() -> None:
    page = list_page(raising(httpx.ReadTimeout("slow")))
    assert isinstance(page, Failure)
    assert page.kind is ErrorKind.RETRYABLE


def test_an_answer_that_is_not_valid_http_is_ambiguous_not_an_exception() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise aiohttp.ClientPayloadError("400, message: Invalid HTTP status line")

    outcome = failed(handler)

    assert outcome.kind is ErrorKind.AMBIGUOUS
    assert "malformed answer" in outcome.message
