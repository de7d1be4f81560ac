"""The StackOne create-ticket call: one HTTP attempt in, one typed answer out.

The client never raises for an HTTP status or a network failure. Every way an attempt can
end becomes a ``TicketCreated`` or a ``Failure`` (``worker/stackone/answers.py``) whose
``kind`` decides what happens next (see ``ErrorKind``), so the retry policy and the job
store never have to know about httpx. What to make of an answer (when to try again, whom
to pause) is the delivery's policy, not this module's.

The API key is the one secret in the project. It goes out as Basic auth and is scrubbed
from every text this module produces, in case a server or a proxy echoes it.

Requests go straight to the httpx transport (aiohttp underneath): httpx's client layers
(URL merging, auth flow, redirects, cookies) cost more CPU per request than the transport
itself and do nothing this one fixed endpoint needs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

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

LIST_PAGE_SIZE = 100
# Enough connections that a worker's concurrent requests never queue for one.
CONNECTION_LIMITS = httpx.Limits(max_connections=500, max_keepalive_connections=500)


class StackOneClient:
    """One per worker process, living on its event loop (``worker/delivery/loop.py``): every
    request of every batch the process runs goes through it concurrently."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if settings.stackone_api_key is None or not settings.stackone_api_key.get_secret_value():
            raise ValueError("STACKONE_API_KEY is not set")
        self._api_key = settings.stackone_api_key
        self._basic_token = _basic_token(settings.stackone_api_key)
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
    ) -> httpx.Response:
        """One request, its answer read in full; raises httpx's errors (and aiohttp's, for an
        answer that is not valid HTTP)."""
        request = httpx.Request(
            method,
            url,
            headers=[*self._headers, ("x-account-id", account_id)],
            content=content,
            extensions={"timeout": self._timeouts},
        )
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

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
        return self._failed(ErrorKind.RETRYABLE, f"unexpected list answer: {response.text[:200]}")

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _from_response(self, response: httpx.Response) -> Answer:
        status = response.status_code
        body = _json_object(response)
        if 200 <= status < 300:
            ids = _ticket_ids(body)
            if ids is not None:
                return TicketCreated(ids)
            # The request was accepted, so the ticket may well exist, but without its id we
            # cannot tell the caller which one it is; sending again could make a second.
            return self._failed(
                ErrorKind.AMBIGUOUS,
                f"HTTP {status} without data.id: {_snippet(response.text)}",
                status,
            )
        message = body.get("message") if body is not None else None
        if isinstance(message, list):  # NestJS-style validation errors: a list of strings
            message = "; ".join(str(item) for item in message)
        if not isinstance(message, str) or not message:
            message = f"HTTP {status} {response.reason_phrase}: {_snippet(response.text)}"
        provider_errors = body.get("provider_errors") if body is not None else None
        return self._failed(
            kind_for_status(status),
            message,
            status,
            provider_errors=provider_errors if isinstance(provider_errors, list) else None,
            retry_after=response.headers.get("Retry-After"),
        )

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
        """Build a ``Failure`` whose texts are scrubbed of the key, then bounded in size."""
        return Failure(
            kind=kind,
            message=_truncate(self._scrub(message)),
            status=status,
            provider_errors=_bounded(self._scrub(provider_errors)),
            retry_after=retry_after,
        )

    def _scrub(self, value: Any) -> Any:
        """Replace the key, raw or as its Basic token, in every string inside ``value``.

        Error texts end up in job records, logs and the dashboard; a server that echoes
        the request (or its Authorization header) must not carry the key there.
        """
        key = self._api_key.get_secret_value()
        if isinstance(value, str):
            return value.replace(self._basic_token, SCRUBBED).replace(key, SCRUBBED)
        if isinstance(value, list):
            return [self._scrub(item) for item in value]
        if isinstance(value, dict):
            return {self._scrub(k): self._scrub(v) for k, v in value.items()}
        return value


MAX_PROVIDER_ERRORS = 10
MAX_PROVIDER_RAW_CHARS = 2_000


def _bounded(provider_errors: list[Any] | None) -> list[Any] | None:
    """Keep provider errors small enough for a job record: a provider may echo a whole page.

    The first entries are kept and each entry's ``raw`` is cut to a snippet of its JSON.
    """
    if provider_errors is None:
        return None
    bounded: list[Any] = []
    for entry in provider_errors[:MAX_PROVIDER_ERRORS]:
        if isinstance(entry, dict) and "raw" in entry:
            raw = json.dumps(entry["raw"]) if not isinstance(entry["raw"], str) else entry["raw"]
            if len(raw) > MAX_PROVIDER_RAW_CHARS:
                entry = {**entry, "raw": raw[:MAX_PROVIDER_RAW_CHARS] + "... (truncated)"}
        bounded.append(entry)
    return bounded


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


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # not JSON, or not text at all
        return None
    return body if isinstance(body, dict) else None


def _ticket_ids(body: dict[str, Any] | None) -> TicketIds | None:
    data = body.get("data") if body is not None else None
    if not isinstance(data, dict):
        return None
    ticket_id, remote_id = as_id(data.get("id")), as_id(data.get("remote_id"))
    return TicketIds(id=ticket_id, remote_id=remote_id) if ticket_id else None


def _snippet(text: str) -> str:
    """A body as one line; cut to size only after scrubbing, so no part of a key survives."""
    return " ".join(text.split()) or "(empty body)"


def _truncate(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "…"
