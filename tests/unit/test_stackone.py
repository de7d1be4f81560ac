"""The StackOne client: what goes on the wire, and how every answer becomes an outcome."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

import aiohttp
import httpx
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey
from pydantic import ValidationError

from worker.contract import ErrorKind, TicketCreate
from worker.settings import Settings
from worker.stackone.answers import Answer, Failure, TicketCreated, TicketPage
from worker.stackone.client import (
    LIST_PAGE_SIZE,
    MAX_ANSWER_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_PROVIDER_ERRORS_CHARS,
    MAX_PROVIDER_TEXT_CHARS,
    TICKETS_PATH,
    StackOneClient,
)

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
        "stackone_base_url": "https://stackone.test",
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
    assert str(request.url) == "https://stackone.test/unified/ticketing/tickets"
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
        StackOneClient(Settings(stackone_base_url="https://stackone.test", stackone_api_key=None))
    assert KEY not in str(info.value)


def test_an_empty_key_never_reaches_a_client_settings_refuse_it() -> None:
    with pytest.raises(ValidationError, match="must not be empty"):
        settings(stackone_api_key="")


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
    errors = [{"status": 400, "url": "u", "raw": {"page": "x" * 50_000}}] * 15

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


# --- every form of the key a server could echo -----------------------------------------

# '/', '+', '=' and '%' make the URL-encoded forms differ; 16 characters, so base64 pads.
ODD_KEY = "sk_Live/Ab+c=d%7"


def key_forms(key: str) -> list[str]:
    """The key as a server or proxy may echo it: raw in any case, URL-encoded, and base64 of
    the Basic credentials or of the key alone, padded or not, in either alphabet."""
    forms = [key, key.upper(), key.lower(), quote(key, safe=""), quote_plus(key)]
    forms.append(quote(key, safe="").lower())
    for data in (f"{key}:".encode(), key.encode()):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            token = encode(data).decode()
            forms += [token, token.rstrip("="), token.lower()]
    return forms


def echo_every_form(request: httpx.Request) -> httpx.Response:
    text = "echo: " + " | ".join(key_forms(ODD_KEY)) + f" for account {ACCOUNT}"
    entry = {
        "message": text,
        "url": f"https://jira.example/rest?api_key={quote(ODD_KEY, safe='')}",
        "headers": {"authorization": f"basic {key_forms(ODD_KEY)[-3]}"},
        "raw": {"forms": key_forms(ODD_KEY)},
    }
    return httpx.Response(
        503,
        json=error_body(503, text, provider_errors=[entry]),
        headers={"Retry-After": ODD_KEY},
    )


def test_the_key_is_scrubbed_in_every_form_a_server_could_echo() -> None:
    failure = send(echo_every_form, stackone_api_key=ODD_KEY)

    assert isinstance(failure, Failure)
    texts = (
        failure.message,
        json.dumps(failure.provider_errors, ensure_ascii=False),
        repr(failure),
        failure.to_error().model_dump_json(),
    )
    for text in texts:
        for form in key_forms(ODD_KEY):
            assert form.lower() not in text.lower(), (form, text[:300])
    assert ACCOUNT in failure.message and failure.message.startswith("echo: [redacted]")


def test_a_list_answer_cut_for_its_message_is_scrubbed_before_the_cut() -> None:
    # The snippet of an unexpected list answer is cut short; a key across the cut is gone.
    start = '{"data": {"id": "t-1"}, "pad": "'
    for pad in range(200 - len(start) - len(KEY), 200 - len(start)):
        text = start + "a" * pad + KEY + "b" * 300 + '"}'

        page = list_page(answer_text(200, text))

        assert isinstance(page, Failure)
        assert "sk-" not in page.message, pad


# --- the key in JSON-escaped text ------------------------------------------------------

# '/' (which PHP's json_encode writes as '\/'), '?', '>' (which Go writes as '\u003e') and
# '~': the Basic token of this key has a '/' in it too.
SLASH_KEY = "S3cr3t/K3y??>~x"
# Non-ASCII, written as '\u00e9' by json.dumps's default ensure_ascii.
ACCENT_KEY = "cl\u00e9/secr\u00e8te-42"


def basic(key: str) -> str:
    return base64.b64encode(f"{key}:".encode()).decode()


def echoed_json(key: str) -> dict[str, str]:
    """An upstream's echo of the request, with no usable ``message``."""
    return {"error": "upstream", "authorization": "Basic " + basic(key), "key": key}


def escape_every_char(text: str) -> str:
    """A JSON string's content with every character as a \\u escape (legal JSON)."""
    units = text.encode("utf-16-be")
    return "".join(f"\\u{units[i : i + 2].hex()}" for i in range(0, len(units), 2))


def json_with_every_char_escaped(value: dict[str, str]) -> str:
    items = (f'"{name}": "{escape_every_char(text)}"' for name, text in value.items())
    return "{" + ", ".join(items) + "}"


SCRUBBED_ECHO = (
    'HTTP 502 Bad Gateway: {"error": "upstream", "authorization": "Basic [redacted]", '
    '"key": "[redacted]"}'
)


@pytest.mark.parametrize(
    ("key", "body"),
    [
        # PHP's json_encode: '/' as '\/'.
        (SLASH_KEY, json.dumps(echoed_json(SLASH_KEY)).replace("/", "\\/")),
        # Go's encoding/json: '<', '>' and '&' as \u escapes.
        (SLASH_KEY, json.dumps(echoed_json(SLASH_KEY)).replace(">", "\\u003e")),
        # json.dumps's ensure_ascii: every non-ASCII character as a \u escape.
        (ACCENT_KEY, json.dumps(echoed_json(ACCENT_KEY))),
        (ACCENT_KEY, json.dumps(echoed_json(ACCENT_KEY)).replace("/", "\\/")),
        # Any character may be written as a \u escape.
        (SLASH_KEY, json_with_every_char_escaped(echoed_json(SLASH_KEY))),
    ],
)
def test_the_key_is_scrubbed_from_a_json_answer_however_its_strings_are_escaped(
    key: str, body: str
) -> None:
    failure = send(answer_text(502, body), stackone_api_key=key)

    assert isinstance(failure, Failure)
    assert failure.message == SCRUBBED_ECHO


def json_forms(key: str) -> list[str]:
    """Every form of the key (``key_forms``) as a JSON string may hold it."""
    forms = []
    for form in key_forms(key):
        for ensure_ascii in (True, False):
            escaped = json.dumps(form, ensure_ascii=ensure_ascii)[1:-1]
            forms += [escaped, escaped.replace("/", "\\/")]
        forms.append(escape_every_char(form))
    return forms


@pytest.mark.parametrize("key", [SLASH_KEY, ACCENT_KEY, ODD_KEY, 'sk"quoted\\back/slash'])
def test_the_key_is_scrubbed_from_text_that_embeds_json_escaped_forms(key: str) -> None:
    # Each form in: an answer that is not JSON as a whole (an HTML error page), so read as
    # text; a JSON answer whose message is itself JSON text; a network error; Retry-After.
    forms = json_forms(key)
    handlers: list[Handler] = []
    for form in forms:
        handlers += [
            answer_text(502, f'<pre>{{"k": "{form}"}}</pre>'),
            answer(400, error_body(400, f'{{"k": "{form}"}}')),
            raising(httpx.ConnectError(f'refused {{"k": "{form}"}}')),
        ]
        if form.isascii():  # a header value is ASCII
            handlers.append(answer(503, error_body(503, "down"), {"Retry-After": form}))

    pending = iter(handlers)

    async def send_each(client: StackOneClient) -> list[Answer]:
        return [await client.create_ticket(ACCOUNT, TICKET) for _ in handlers]

    answers = with_client(lambda request: next(pending)(request), send_each, stackone_api_key=key)

    for index, failure in enumerate(answers):
        assert isinstance(failure, Failure)
        text = f"{failure.message} {failure.retry_after}"
        assert '"k": "[redacted]"' in text or failure.retry_after == "[redacted]", (index, text)
        for form in forms:
            assert form.lower() not in text.lower(), (form, text)


# --- answers are read up to a cap, and every stored text is bounded --------------------


class EndlessBody(httpx.AsyncByteStream):
    """An answer body of ``total`` bytes, counting what the client actually read."""

    def __init__(self, total: int, chunk: bytes = b"x" * 65_536) -> None:
        self.total, self.chunk, self.read = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < self.total:
            self.read += len(self.chunk)
            yield self.chunk


@pytest.mark.parametrize(
    ("status", "kind"), [(503, ErrorKind.RETRYABLE), (201, ErrorKind.AMBIGUOUS)]
)
def test_an_answer_is_read_only_up_to_the_cap_and_its_status_still_counts(
    status: int, kind: ErrorKind
) -> None:
    body = EndlessBody(64 * MAX_ANSWER_BYTES)

    failure = failed(lambda request: httpx.Response(status, stream=body))

    assert body.read <= MAX_ANSWER_BYTES + len(body.chunk)
    assert failure.kind is kind and failure.status == status
    assert len(failure.message) <= MAX_MESSAGE_CHARS


def test_json_nested_too_deep_is_read_as_text_keeping_its_status() -> None:
    failure = failed(answer_text(400, "[" * 100_000))
    assert failure.kind is ErrorKind.TERMINAL
    assert failure.message.startswith("HTTP 400 Bad Request: [[[")


def test_a_shallow_json_message_list_of_objects_is_joined_as_json() -> None:
    failure = failed(answer(400, error_body(400, ["title missing", {"field": "tags"}])))
    assert failure.message == 'title missing; {"field": "tags"}'


def test_every_text_of_a_provider_error_is_cut_and_the_list_bounded_in_total() -> None:
    huge = "y" * 100_000  # the answer stays under the cap: this is about what is kept
    entry = {"status": 400, "message": huge, "url": huge, "headers": {"h": huge}, "raw": huge}
    wide = {f"field{i}": "z" * 100 for i in range(2_000)}
    errors = [entry, wide, *[{"status": 400, "message": "m" * 5_000}] * 20]

    failure = failed(answer(400, error_body(400, huge, provider_errors=errors)))

    assert failure.provider_errors is not None
    first = failure.provider_errors[0]
    assert first["status"] == 400
    for field in ("message", "url", "raw"):
        assert first[field].startswith("yyy") and first[field].endswith("(truncated)")
        assert len(first[field]) <= MAX_PROVIDER_TEXT_CHARS
    assert len(failure.message) <= MAX_MESSAGE_CHARS
    stored = failure.to_error().model_dump_json()
    assert len(stored) <= MAX_MESSAGE_CHARS + MAX_PROVIDER_ERRORS_CHARS + 200


def test_a_provider_error_too_big_to_keep_whole_is_kept_as_cut_text() -> None:
    wide = {f"field{i}": "z" * 100 for i in range(5_000)}

    failure = failed(answer(422, error_body(422, "bad", provider_errors=[wide])))

    assert failure.provider_errors is not None and len(failure.provider_errors) == 1
    (kept,) = failure.provider_errors
    assert isinstance(kept, str) and kept.startswith('{"field0": "zzz')
    assert len(kept) <= MAX_PROVIDER_TEXT_CHARS


def test_the_real_transport_stops_reading_a_huge_compressed_answer() -> None:
    """Over aiohttp, as in a worker: a small gzip body that inflates to 64 MiB."""
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024), compresslevel=1)

    async def huge(request: web.Request) -> web.Response:
        return web.Response(
            status=502, body=bomb, headers={"Content-Encoding": "gzip"}, content_type="text/plain"
        )

    async def body() -> Answer:
        app = web.Application()
        app.router.add_post(TICKETS_PATH, huge)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        client = StackOneClient(settings(stackone_base_url=f"http://127.0.0.1:{port}"))
        try:
            return await client.create_ticket(ACCOUNT, TICKET)
        finally:
            await client.aclose()
            await runner.cleanup()

    failure = asyncio.run(body())

    assert isinstance(failure, Failure)
    assert failure.kind is ErrorKind.RETRYABLE and failure.status == 502
    assert failure.message.startswith("HTTP 502 Bad Gateway: 000")
    assert len(failure.message) <= MAX_MESSAGE_CHARS


def test_a_created_answer_with_an_id_too_long_to_be_one_is_ambiguous() -> None:
    failure = failed(answer(201, created_body(id="t" * 200_000)))
    assert failure.kind is ErrorKind.AMBIGUOUS
    assert len(failure.message) <= MAX_MESSAGE_CHARS
