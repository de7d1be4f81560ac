"""The StackOne create-ticket call: one HTTP attempt in, one typed answer out.

The client never raises for an HTTP status or a network failure. Every way an attempt can
end becomes a ``TicketCreated`` or a ``Failure`` (``worker/stackone/answers.py``) whose
``kind`` decides what happens next (see ``ErrorKind``), so the retry policy and the job
store never have to know about httpx. What to make of an answer (when to try again, whom
to pause) is the delivery's policy, not this module's.

The API key is the one secret in the project. It goes out as Basic auth and is scrubbed
from every text this module produces, in every form a server or a proxy could echo it.
Answers are read up to ``MAX_ANSWER_BYTES`` and every text kept from them is bounded, so
no answer can fill a worker's memory or a job record.

Requests go straight to the httpx transport (aiohttp underneath): httpx's client layers
(URL merging, auth flow, redirects, cookies) cost more CPU per request than the transport
itself and do nothing this one fixed endpoint needs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote, quote_plus

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr

from worker.contract import ErrorKind, TicketCreate, TicketIds
from worker.settings import Settings
from worker.stackone.answers import (
    Answer,
    Failure,
    TicketCreated,
    TicketPage,
    as_id,
    kind_for_status,
)

TICKETS_PATH = "/unified/ticketing/tickets"
MAX_MESSAGE_CHARS = 2_000
SCRUBBED = "[redacted]"
CUT = "… (truncated)"
# An answer is read up to this many bytes (decoded); StackOne's own answers are far smaller.
MAX_ANSWER_BYTES = 1 << 20
# Deeper JSON than this is read as text: nothing StackOne sends nests so deep, and deeper
# values would strain the recursion of everything that later dumps or validates them.
MAX_ANSWER_DEPTH = 32
MAX_PROVIDER_ERRORS = 10
MAX_PROVIDER_TEXT_CHARS = 2_000  # each text of a provider error, or a value's JSON
MAX_PROVIDER_ERRORS_CHARS = 32_000  # the whole list, as JSON
MAX_RETRY_AFTER_CHARS = 100

LIST_PAGE_SIZE = 100
# Enough connections that a worker's concurrent requests never queue for one.
CONNECTION_LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=500)


class StackOneClient:
    """One per worker process, living on its event loop (``worker/delivery/loop.py``): every
    request of every batch the process runs goes through it concurrently."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.stackone_api_key is None:  # Settings refuse an empty one
            raise ValueError("STACKONE_API_KEY is not set")
        self._basic_token = _basic_token(settings.stackone_api_key)
        self._key_forms = _key_pattern(settings.stackone_api_key)
        self._connect_timeout = settings.connect_timeout
        self._read_timeout = settings.read_timeout
        self._tickets_url = httpx.URL(settings.stackone_base_url.rstrip("/") + TICKETS_PATH)
        self._headers = [
            ("Authorization", f"Basic {self._basic_token}"),
            ("User-Agent", settings.user_agent),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ]
        # Writing a body of at most 256 KiB and waiting for a pooled connection are, like
        # connecting, a matter of seconds when all is well; only the read may take as long
        # as StackOne's own 60 s limit plus slack.
        self._timeouts = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.connect_timeout,
            pool=settings.connect_timeout,
        ).as_dict()
        # aiohttp underneath: a quarter of httpx's own CPU per request at high concurrency.
        # Settings are the only configuration: no proxies or CA bundles from the environment.
        self._transport = transport or AiohttpTransport(limits=CONNECTION_LIMITS, trust_env=False)

    async def _send(
        self, method: str, account_id: str, url: httpx.URL, content: bytes = b""
    ) -> Reply:
        """One request, its answer read up to ``MAX_ANSWER_BYTES``; raises httpx's errors
        (and aiohttp's, for an answer that is not valid HTTP)."""
        request = httpx.Request(
            method,
            url,
            headers=[*self._headers, ("x-account-id", account_id)],
            content=content,
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        try:
            body = await _read_bounded(response)
        finally:
            await response.aclose()  # an answer not read to its end closes its connection
        return Reply(
            response.status_code,
            response.reason_phrase,
            response.headers,
            body,
            response.encoding or "utf-8",
        )

    async def create_ticket(self, account_id: str, ticket: TicketCreate) -> Answer:
        """Send one ``POST /unified/ticketing/tickets``; never raises for HTTP or network errors.

        There is no idempotency key in StackOne's API, so this makes exactly one attempt:
        whether to try again, and when, is the retry policy's decision.
        """
        if not _is_header_value(account_id):
            return Failure(ErrorKind.INVALID, "account id is not a valid HTTP header value")
        try:
            response = await self._send(
                "POST", account_id, self._tickets_url, ticket.to_json().encode()
            )
        except httpx.RequestError as exc:
            return self._network_failure(exc)
        except aiohttp.ClientError as exc:
            return self._malformed_answer(exc)
        return self._from_response(response)

    async def list_tickets(
        self, account_id: str, updated_after: float, cursor: str | None = None
    ) -> TicketPage | Failure:
        """One page of the account's tickets updated after a moment, for reconciliation.

        A read changes nothing, so every failure to read is simply worth retrying later.
        """
        params = {
            "filter[updated_after]": datetime.fromtimestamp(updated_after, UTC).isoformat(),
            "page_size": str(LIST_PAGE_SIZE),
        }
        if cursor:
            params["next"] = cursor
        try:
            url = self._tickets_url.copy_merge_params(params)
            response = await self._send("GET", account_id, url)
        except httpx.RequestError as exc:
            failure = self._network_failure(exc)
            return dataclasses.replace(failure, kind=ErrorKind.RETRYABLE)
        except aiohttp.ClientError as exc:
            return dataclasses.replace(self._malformed_answer(exc), kind=ErrorKind.RETRYABLE)
        body = _json_object(response)
        if response.status_code == 200 and body is not None and isinstance(body.get("data"), list):
            tickets = [item for item in body["data"] if isinstance(item, dict)]
            following = body.get("next")
            return TicketPage(tickets, following if isinstance(following, str) else None)
        answer = self._from_response(response)
        if isinstance(answer, Failure):
            return answer
        return self._failed(
            ErrorKind.RETRYABLE, f"unexpected list answer: {self._body_snippet(response)}"
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _from_response(self, response: Reply) -> Answer:
        status = response.status_code
        body = _json_object(response)
        if 200 <= status < 300:
            ids = _ticket_ids(body)
            if ids is not None:
                return TicketCreated(ids, status)
            # The request was accepted, so the ticket may well exist, but without its id we
            # cannot tell the caller which one it is; sending again could make a second.
            return self._failed(
                ErrorKind.AMBIGUOUS,
                f"HTTP {status} without data.id: {self._body_snippet(response)}",
                status,
            )
        message = body.get("message") if body is not None else None
        if isinstance(message, list):  # NestJS-style validation errors: a list of strings
            message = "; ".join(item if isinstance(item, str) else _json(item) for item in message)
        if not isinstance(message, str) or not message:
            message = f"HTTP {status} {response.reason_phrase}: {self._body_snippet(response)}"
        provider_errors = body.get("provider_errors") if body is not None else None
        return self._failed(
            kind_for_status(status),
            message,
            status,
            provider_errors=provider_errors if isinstance(provider_errors, list) else None,
            retry_after=response.headers.get("Retry-After"),
        )

    def _body_snippet(self, response: Reply) -> str:
        """The answer's body as one line of text, scrubbed.

        A JSON body is written anew from its parsed value, its strings scrubbed first: the
        escapes a server chose (``\\/`` as PHP writes it, ``\\u00e9``, ``\\u003e`` as Go
        writes ``>``) would otherwise hide the key from a plain match. The text is scrubbed
        again (``_key_pattern`` matches JSON-escaped forms too, for JSON inside a body that is
        not JSON as a whole) before its whitespace is squeezed, which could break a key.
        """
        try:
            text = _json(self._scrub(json.loads(response.content)))
        except (ValueError, RecursionError):  # not JSON, not text at all, or absurdly deep
            text = response.text
        return _snippet(self._scrub(text))

    def _malformed_answer(self, exc: aiohttp.ClientError) -> Failure:
        """An answer that is not valid HTTP (the aiohttp transport lets these through as
        they are): the request was sent, so the ticket may exist."""
        return self._failed(
            ErrorKind.AMBIGUOUS, f"malformed answer from StackOne: {type(exc).__name__}: {exc}"
        )

    def _network_failure(self, exc: httpx.RequestError) -> Failure:
        """Classify by whether the request can have reached StackOne.

        Before sending (no connection, or no free connection in the pool) nothing can
        exist, so trying again is safe. Once bytes may have left, StackOne may have created
        the ticket even though we never saw the answer: a read timeout, a failed or timed
        out write, or a connection dropped mid-response are all ambiguous, and so is any
        failure we cannot place, since we cannot prove the request was not sent.
        """
        connect, read = f"{self._connect_timeout:g}s", f"{self._read_timeout:g}s"
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError) and _sent_anyway(exc):
            # The aiohttp transport reports every broken connection as a connect failure,
            # including one dropped after the request went out.
            cause = exc.__cause__
            return self._failed(
                ErrorKind.AMBIGUOUS,
                f"connection lost after the request may have been sent: "
                f"{type(cause).__name__}: {cause}",
            )
        if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
            return self._failed(ErrorKind.RETRYABLE, f"could not connect: {exc.__cause__}")
        match exc:
            case httpx.ConnectTimeout():
                return self._failed(ErrorKind.RETRYABLE, f"connect timeout after {connect}")
            case httpx.PoolTimeout():
                return self._failed(ErrorKind.RETRYABLE, f"no free connection after {connect}")
            case httpx.ConnectError():
                return self._failed(ErrorKind.RETRYABLE, f"could not connect: {exc}")
            case httpx.ReadTimeout():
                message = f"read timeout after {read}; the request was sent"
            case httpx.WriteTimeout():
                message = f"write timeout after {connect} while sending the request"
            case httpx.RemoteProtocolError():
                message = f"connection dropped before the response: {exc}"
            case httpx.ReadError():
                message = f"connection failed while reading the response: {exc}"
            case httpx.WriteError():
                message = f"connection failed while sending the request: {exc}"
            case _:
                message = f"{type(exc).__name__} after the request may have been sent: {exc}"
        return self._failed(ErrorKind.AMBIGUOUS, message)

    def _failed(
        self,
        kind: ErrorKind,
        message: str,
        status: int | None = None,
        provider_errors: list[Any] | None = None,
        retry_after: str | None = None,
    ) -> Failure:
        """Build a ``Failure`` whose texts are scrubbed of the key, then bounded in size (in
        that order, so no cut leaves part of a key behind)."""
        return Failure(
            kind=kind,
            message=_cut(self._scrub(message), MAX_MESSAGE_CHARS),
            status=status,
            provider_errors=_bounded(self._scrub(provider_errors)),
            retry_after=None
            if retry_after is None
            else _cut(self._scrub(retry_after), MAX_RETRY_AFTER_CHARS),
        )

    def _scrub(self, value: Any) -> Any:
        """Replace every form of the key (``_key_pattern``) in every string inside ``value``.

        Error texts end up in job records, logs and the dashboard; a server that echoes
        the request (or its Authorization header) must not carry the key there.
        """
        if isinstance(value, str):
            return self._key_forms.sub(SCRUBBED, value)
        if isinstance(value, list):
            return [self._scrub(item) for item in value]
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        return value


@dataclasses.dataclass(frozen=True)
class Reply:
    """An answer as far as it was read: what the client judges an attempt by."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes  # at most MAX_ANSWER_BYTES: a longer answer is cut
    encoding: str

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")


async def _read_bounded(response: httpx.Response) -> bytes:
    """The answer's body, decoded (gzip...), up to ``MAX_ANSWER_BYTES``: the rest is never
    read, so neither a huge answer nor a compressed bomb can fill the worker's memory."""
    body = bytearray()
    # aiter_bytes is an async generator (typed as an iterator): closed here, not by the GC.
    decoded = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with contextlib.aclosing(decoded) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) >= MAX_ANSWER_BYTES:
                break
    return bytes(body[:MAX_ANSWER_BYTES])


def _bounded(provider_errors: list[Any] | None) -> list[Any] | None:
    """Keep provider errors small enough for a job record: a provider may echo a whole page.

    The first entries are kept, each entry's texts cut (``_small``), while the list stays
    within ``MAX_PROVIDER_ERRORS_CHARS`` as JSON; an entry too big to keep whole is kept
    as the beginning of its JSON, so the first entry always says something.
    """
    if provider_errors is None:
        return None
    bounded: list[Any] = []
    room = MAX_PROVIDER_ERRORS_CHARS
    for entry in provider_errors[:MAX_PROVIDER_ERRORS]:
        small = _small_entry(entry)
        if len(_json(small)) > room:
            small = _cut(_json(small), MAX_PROVIDER_TEXT_CHARS)
        size = len(_json(small))
        if size > room:
            break
        bounded.append(small)
        room -= size + 2  # ", "
    return bounded


def _small_entry(entry: Any) -> Any:
    """An entry with each field's value bounded (``message``, ``raw``, ``url``, ...)."""
    if not isinstance(entry, dict):
        return _small(entry)
    return {
        _cut(str(name), MAX_PROVIDER_TEXT_CHARS): _small(value) for name, value in entry.items()
    }


def _small(value: Any) -> Any:
    """A string cut to size; a list or object kept if its JSON is small, else that JSON cut."""
    if isinstance(value, str):
        return _cut(value, MAX_PROVIDER_TEXT_CHARS)
    if not isinstance(value, list | dict):
        return value
    text = _json(value)
    return value if len(text) <= MAX_PROVIDER_TEXT_CHARS else _cut(text, MAX_PROVIDER_TEXT_CHARS)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _key_pattern(key: SecretStr) -> re.Pattern[str]:
    """Every form of the key a server or proxy could echo, in any letter case: raw,
    URL-encoded, and base64 (standard or URL-safe, padded or not) of the Basic credentials
    ``key:`` or of the key alone; each as itself or as the content of a JSON string
    (``_json_escaped``). Longest first, so a padded form goes whole.

    Not covered: a form broken across lines (or otherwise split) in a text answer."""
    raw = key.get_secret_value()
    forms = {raw, quote(raw, safe=""), quote_plus(raw)}
    for data in (f"{raw}:".encode(), raw.encode()):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            token = encode(data).decode()
            forms |= {token, token.rstrip("=")}
    ordered = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(_json_escaped(form) for form in ordered), re.IGNORECASE)


def _json_escaped(form: str) -> str:
    """A pattern for ``form`` as itself or inside a JSON string, whichever way an encoder
    escapes it, character by character: ``json.dumps`` with ``ensure_ascii`` (``\\u00e9``)
    or without, ``/`` as ``\\/`` (PHP's ``json_encode``), ``<>&`` as ``\\u003c``... (Go's),
    or any character as a ``\\u`` escape."""
    return "".join(_json_escaped_char(char) for char in form)


def _json_escaped_char(char: str) -> str:
    spellings = {char}
    for case in {char, char.lower(), char.upper()}:  # \\u escapes of either letter case
        if len(case) == 1:
            units = case.encode("utf-16-be", "surrogatepass")  # beyond the BMP: a pair
            spellings.add("".join(f"\\u{units[i : i + 2].hex()}" for i in range(0, len(units), 2)))
    spellings.add(json.dumps(char, ensure_ascii=False)[1:-1])  # \\" \\\\ \\n ...
    if char == "/":
        spellings.add("\\/")
    ordered = sorted(spellings, key=len, reverse=True)
    return "(?:" + "|".join(re.escape(spelling) for spelling in ordered) + ")"


def _basic_token(key: SecretStr) -> str:
    """Basic auth with the key as the username and an empty password, as StackOne asks."""
    return base64.b64encode(f"{key.get_secret_value()}:".encode()).decode()


def _sent_anyway(exc: httpx.TransportError) -> bool:
    """Whether a "connect" error from the aiohttp transport happened after connecting.

    Only aiohttp's connector errors (refused, unreachable, DNS) and its connect timeout
    mean the request never left; a server disconnect or a reset mid-exchange do not.
    """
    cause = exc.__cause__
    if cause is None or isinstance(cause, aiohttp.ClientConnectorError):
        return False
    return not isinstance(cause, aiohttp.ConnectionTimeoutError)


def _is_header_value(value: str) -> bool:
    """httpx refuses non-ASCII header values by raising; control characters split headers."""
    return value.isascii() and value.isprintable() and value == value.strip()


def _json_object(response: Reply) -> dict[str, Any] | None:
    """The answer's JSON object, or None: not JSON, not an object, cut, or nested deeper
    than ``MAX_ANSWER_DEPTH`` (which is then read as text, its status still deciding)."""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):  # not JSON, not text at all, or absurdly deep
        return None
    if not isinstance(body, dict) or _deeper_than(body, MAX_ANSWER_DEPTH):
        return None
    return body


def _deeper_than(value: Any, depth: int) -> bool:
    """Whether lists and objects nest more than ``depth`` levels (never recursing further)."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return False
    return depth == 0 or any(_deeper_than(item, depth - 1) for item in value)


def _ticket_ids(body: dict[str, Any] | None) -> TicketIds | None:
    data = body.get("data") if body is not None else None
    if not isinstance(data, dict):
        return None
    ticket_id, remote_id = as_id(data.get("id")), as_id(data.get("remote_id"))
    return TicketIds(id=ticket_id, remote_id=remote_id) if ticket_id else None


def _snippet(text: str) -> str:
    """A body as one line; cut to size only after scrubbing, so no part of a key survives."""
    return " ".join(text.split()) or "(empty body)"


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, saying so when it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT)] + CUT
