"""A local stand-in for StackOne's ``POST /unified/ticketing/tickets``, with faults on demand.

The demo, the integration and chaos tests and the benchmarks all need an API that answers
like StackOne (Basic auth with the key as username, ``x-account-id``, StackOne's error
shape, ``Retry-After`` on 429) and that can be told to misbehave in the ways that matter
to invariant 2: errors, rate limits, slow answers and, above all, the ambiguous outcomes
where the ticket exists but the client never hears so.

Requests to the ticketing routes pass these checks in order: a simulated key refusal
(``auth_failure``: 401 or 403), API key (401), User-Agent (403), ``x-account-id`` (400,
or 404 for an account not in ``accounts``), the per-key rate limit (429), a scripted step
for the body's title, the random error rate (500), the body (400 naming the field). Only
then is a ticket created and kept in memory, so it can be read back the way reconciliation
reads StackOne.

Reading back has two options, because reconciliation must cope with both on the real API.
``list_lag_ms``: the listing shows a ticket only that long after its creation, as a
provider's search index lags (a read by id is consistent and shows it at once).
``list_style``: how a read (listing or by id) shows a ticket; ``verbatim`` (default) as
sent; ``provider`` as a provider maps it back: content as HTML only (plain text escaped,
newlines as ``<br>``, in a ``<p>``; items that had HTML keep it), assignees, reporters,
tags and component_ids in reverse order, tags lowercased, the title stripped with inner
whitespace collapsed, everything else (``unified_custom_fields`` too) as sent; ``sparse``
only id, remote_id, title, created_at and updated_at, for a provider that maps back
nothing else.

The body is checked here on its own, against the spec's types, and deliberately does not
import ``worker.contract``: the stand-in is there to catch what our own validation lets
through, not to share its mistakes.

The control API under ``/_fake`` has no auth; it scripts answers per ticket title, changes
latency, rate limit, error rate, listing lag and style and a simulated key refusal
(``auth_failure``) live, each checked as at start, and reports what arrived
(``/_fake/stats``). ``auth_failure`` set to 401 or 403 answers every ticketing request
(create, list, read) with that status in StackOne's error shape before any other check, as
StackOne does once a key is revoked; ``null`` lifts it. It never reveals or changes the
configured key itself. ``POST /_fake/tickets`` with ``{"account_id", "ticket": create
body}`` creates a ticket as another user of the customer's tool would (no auth, rate limit
or script; the body checked as a create's) and answers its ``id`` and ``remote_id``; such
tickets are read back like ours but count only in the stats' ``created_elsewhere``, never
in ``created`` or ``created_by_title``, which count what our client made.

Scripted steps, in the order a step applies them:

- ``delay_ms``: wait first, *then* answer as the rest of the step says; a step with only a
  delay behaves normally afterwards (random errors included). The ticket is therefore
  created at the end of the delay, even when the client gave up before: it appears late.
- ``also_elsewhere`` (a create body): someone else creates that ticket in the same account
  (as ``/_fake/tickets`` does) before the step answers, whatever the answer is.
- ``status`` 400-599 (with optional ``message``, ``provider_errors``, ``data`` and
  ``retry_after``, sent verbatim as ``Retry-After``): answer that error, create nothing.
- ``status`` 201: create normally, skipping the random error rate.
- ``create_then_drop``: create, then abort the connection without answering.
- ``create_then_hang_ms``: create, then hold the 201 that long (the client's read timeout).

Nothing here reads the environment, and neither the API key nor any part of it is ever
written to a response or to the start-up line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import json
import math
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ops.fakeapi_client import FakeApiOptions

__all__ = ["FakeApiOptions", "Step", "check_options", "make_app", "serve"]

TICKETS_PATH = "/unified/ticketing/tickets"
RATE_WINDOW_SECONDS = 60.0
AUTH_FAILURES = {401: "Unauthorized", 403: "Forbidden"}
DEFAULT_PAGE_SIZE = 25
PRIORITY_VALUES = frozenset({"lowest", "low", "medium", "high", "highest", "unmapped_value"})
_SHUTDOWN_GRACE_SECONDS = 1.0  # a hanging scripted response must not hold up Ctrl-C


@dataclass(frozen=True)
class Step:
    """One scripted answer to a create request; see the module docstring for the order."""

    status: int | None = None
    message: str | None = None
    provider_errors: list[Any] | None = None
    data: Any = None
    retry_after: str | None = None
    delay_ms: float = 0.0
    create_then_drop: bool = False
    create_then_hang_ms: float = 0.0
    also_elsewhere: dict[str, Any] | None = None  # a create body someone else sends meanwhile

    @classmethod
    def parse(cls, raw: object) -> Step:
        """A step from its JSON form; a typo in a test's script fails loudly, not silently."""
        if not isinstance(raw, dict):
            raise ValueError("a step must be an object")
        _only(raw, [f.name for f in dataclasses.fields(cls)], "step keys")
        step = cls(**raw)
        if step.retry_after is not None and not isinstance(step.retry_after, str):
            raise ValueError("retry_after must be a string (sent verbatim as Retry-After)")
        _non_negative("delay_ms", step.delay_ms)
        _non_negative("create_then_hang_ms", step.create_then_hang_ms)
        if step.also_elsewhere is not None:
            _ticket_body(step.also_elsewhere, "also_elsewhere")
        if not isinstance(step.create_then_drop, bool):
            raise ValueError("create_then_drop must be a boolean")
        if step.status is not None and (
            isinstance(step.status, bool)
            or not isinstance(step.status, int)
            or not (step.status == 201 or 400 <= step.status <= 599)
        ):
            raise ValueError("status must be 201 or 400-599")
        if not step.is_error and (
            step.message is not None
            or step.provider_errors is not None
            or step.data is not None
            or step.retry_after is not None
        ):
            raise ValueError("message, provider_errors, data and retry_after need an error status")
        if step.is_error and (step.create_then_drop or step.create_then_hang_ms):
            raise ValueError("create_then_* steps create a ticket; drop the error status")
        if step.provider_errors is not None and not isinstance(step.provider_errors, list):
            raise ValueError("provider_errors must be a list")
        return step

    @property
    def is_error(self) -> bool:
        return self.status is not None and self.status != 201


@dataclass
class _Ticket:
    account: str
    created_ms: int
    record: dict[str, Any]  # what GET returns as ``data``


class _State:
    """Everything the stand-in remembers; touched only from the event loop, so no locks."""

    def __init__(self, options: FakeApiOptions) -> None:
        self.options = options
        # Ids are a per-process random prefix and a counter that survives reset: unique
        # across resets and restarts without a random draw (a syscall) per ticket.
        self._id_prefix = uuid.uuid4().hex[:12]
        self._serial = 0
        self.reset()

    def reset(self) -> None:
        self.tickets: dict[str, _Ticket] = {}
        self.order: list[_Ticket] = []
        self.scripts: dict[str, deque[Step]] = {}
        self.windows: dict[str, deque[float]] = {}
        self.requests = 0
        self.created = 0
        self.created_elsewhere = 0
        self.dropped = 0
        self.by_status: Counter[int] = Counter()
        self.created_by_title: Counter[str] = Counter()
        self.open_from: Counter[int] = Counter()  # create requests in flight, by client port
        self.requests_by_title: defaultdict[str, list[float]] = defaultdict(list)
        self.in_flight: dict[str, _InFlight] = {}  # create requests per x-account-id

    def next_step(self, title: str | None) -> Step | None:
        if title is None:
            return None
        steps = self.scripts.get(title)
        if not steps:
            return None
        step = steps.popleft()
        if not steps:
            del self.scripts[title]
        return step

    def admit(self, key: str) -> int | None:
        """Seconds until the key may send again, or None if this request fits its window."""
        limit = self.options.rpm_limit
        if limit is None:
            return None
        now = time.monotonic()
        window = self.windows.setdefault(key, deque())
        while window and window[0] <= now - RATE_WINDOW_SECONDS:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(window[-limit] + RATE_WINDOW_SECONDS - now))
        window.append(now)
        return None

    def create(self, account: str, body: dict[str, Any]) -> _Ticket:
        """A ticket our client created: what ``created`` and ``created_by_title`` count."""
        ticket = self._add(account, body)
        self.created += 1
        title = body.get("title")
        if isinstance(title, str):
            self.created_by_title[title] += 1
        return ticket

    def create_elsewhere(self, account: str, body: dict[str, Any]) -> _Ticket:
        """A ticket another user of the customer's tool created: read back like ours, but
        counted apart, so ``created`` still counts only what our client made (duplicates)."""
        ticket = self._add(account, body)
        self.created_elsewhere += 1
        return ticket

    def _add(self, account: str, body: dict[str, Any]) -> _Ticket:
        self._serial += 1
        created_ms = time.time_ns() // 1_000_000
        stamp = _iso(created_ms / 1000)
        record = {
            "title": None,
            **body,
            "id": f"{self._id_prefix}{self._serial:08x}",
            "remote_id": f"PROJ-{self._serial}",
            "created_at": stamp,
            "updated_at": stamp,
        }
        ticket = _Ticket(account, created_ms, record)
        self.tickets[record["id"]] = ticket
        self.order.append(ticket)
        return ticket

    def arrived(self, account: str) -> _InFlight:
        """A create request for ``account`` came in (before any check or latency): the
        account's figures, which its answer (or drop) updates again (a reset meanwhile
        leaves them behind)."""
        flight = self.in_flight.setdefault(account, _InFlight())
        flight.arrived(time.monotonic())
        return flight

    def shown(self, ticket: _Ticket) -> dict[str, Any]:
        """The ticket as a read (listing or by id) returns it, in the current ``list_style``."""
        return _LIST_STYLES[self.options.list_style](ticket.record)

    def stats(self) -> dict[str, Any]:
        """What arrived, for tests to count duplicates and measure retry spacing.

        Every ticketing POST counts in ``requests`` and, if it has a title, adds its arrival
        time to ``requests_by_title``; ``by_status`` counts the answers sent and ``dropped``
        the connections that ``create_then_drop`` aborted instead. Tickets created by
        someone else (``/_fake/tickets``, ``also_elsewhere``) count only in
        ``created_elsewhere``. ``in_flight_by_account`` says, per ``x-account-id``, how many
        create requests were in flight at once at most (``peak``) and on average from its
        first arrival to its last answer (``mean``), for the account cap; ``in_flight_from``
        the client ports of the create requests in flight now (which process sent them).
        """
        return {
            "requests": self.requests,
            "created": self.created,
            "created_elsewhere": self.created_elsewhere,
            "dropped": self.dropped,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "created_by_title": dict(self.created_by_title),
            "requests_by_title": dict(self.requests_by_title),
            "in_flight_by_account": {
                account: flight.figures() for account, flight in self.in_flight.items()
            },
            "in_flight_from": sorted(self.open_from.elements()),
        }


@dataclass
class _InFlight:
    """One account's create requests in flight: now, at most, and over time (the cap's use)."""

    now: int = 0
    peak: int = 0
    first: float | None = None  # the first arrival, monotonic seconds
    last: float = 0.0  # the latest change
    request_seconds: float = 0.0  # the integral of ``now`` over time, up to ``last``

    def arrived(self, at: float) -> None:
        self._until(at)
        if self.first is None:
            self.first = at
        self.now += 1
        self.peak = max(self.peak, self.now)

    def answered(self, at: float) -> None:
        self._until(at)
        self.now -= 1

    def _until(self, at: float) -> None:
        self.request_seconds += self.now * (at - self.last)
        self.last = at

    def figures(self) -> dict[str, float]:
        span = self.last - self.first if self.first is not None else 0.0
        mean = self.request_seconds / span if span > 0 else float(self.peak)
        return {"peak": self.peak, "mean": round(mean, 3), "now": self.now}


_STATE = web.AppKey("fakeapi_state", _State)


def _iso(epoch: float) -> str:
    """StackOne's timestamp style: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _error(
    status: int,
    message: str,
    *,
    retry_after: str | None = None,
    provider_errors: list[Any] | None = None,
    data: Any = None,
) -> web.Response:
    body: dict[str, Any] = {
        "statusCode": status,
        "message": message,
        "timestamp": _iso(time.time()),
    }
    if data is not None:
        body["data"] = data
    if provider_errors is not None:
        body["provider_errors"] = provider_errors
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers)


# --- the request body, checked against the spec's types --------------------------------------

_Check = Callable[[str, Any], list[str]]


def _string(path: str, value: Any) -> list[str]:
    return [] if value is None or isinstance(value, str) else [f"{path} must be a string"]


def _strings(path: str, value: Any) -> list[str]:
    if value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return []
    return [f"{path} must be an array of strings"]


def _string_or_strings(path: str, value: Any) -> list[str]:
    """``component_ids``: the spec says string, the docs' example sends a list."""
    if isinstance(value, str) or not _strings(path, value):
        return []
    return [f"{path} must be a string or an array of strings"]


def _anything(path: str, value: Any) -> list[str]:
    return []


def _mapping(path: str, value: Any) -> list[str]:
    return [] if value is None or isinstance(value, dict) else [f"{path} must be an object"]


def _priority_value(path: str, value: Any) -> list[str]:
    if value is None or (isinstance(value, str) and value in PRIORITY_VALUES):
        return []
    return [f"{path} must be one of: {', '.join(sorted(PRIORITY_VALUES))} (or null)"]


def _fields(path: str, obj: Mapping[str, Any], checks: Mapping[str, _Check]) -> list[str]:
    errors: list[str] = []
    for name, value in obj.items():
        where = f"{path}.{name}" if path else name
        check = checks.get(name)
        if check is None:
            errors.append(f"property {where} should not exist")
        else:
            errors += check(where, value)
    return errors


_CONTENT_FIELDS: dict[str, _Check] = {"plain": _string, "html": _string}
_PRIORITY_FIELDS: dict[str, _Check] = {
    "id": _string,
    "value": _priority_value,
    "source_value": _anything,
}


def _content(path: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [f"{path} must be an array of objects"]
    errors: list[str] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            errors += _fields(f"{path}[{i}]", item, _CONTENT_FIELDS)
        else:
            errors.append(f"{path}[{i}] must be an object")
    return errors


def _priority(path: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"{path} must be an object"]
    return _fields(path, value, _PRIORITY_FIELDS)


_TICKET_FIELDS: dict[str, _Check] = {
    "title": _string,
    "creator_id": _string,
    "reporters": _strings,
    "assignees": _strings,
    "content": _content,
    "parent_id": _string,
    "priority": _priority,
    "tags": _strings,
    "type": _string,
    "organization_id": _string,
    "project_id": _string,
    "component_ids": _string_or_strings,
    "collections": _strings,
    "unified_custom_fields": _mapping,
}


def _ticket_body(body: object, path: str = "") -> dict[str, Any]:
    """``body`` if the spec accepts it as a create body, else ValueError naming each field
    it refuses (under ``path``, where the body sits inside a control request)."""
    if not isinstance(body, dict):
        raise ValueError(f"{path or 'request body'} must be a JSON object")
    errors = _fields(path, body, _TICKET_FIELDS)
    if errors:
        raise ValueError("; ".join(errors))
    return body


def _only(given: Iterable[str], known: Iterable[str], what: str) -> None:
    """Refuse keys nobody reads: a typo in a test's control request fails loudly."""
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(sorted(unknown))}")


_NOT_JSON = object()


def _load_json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _create(state: _State, account: str, body: object) -> web.Response:
    """Step 6 and 7: refuse a body the spec would refuse, else create the ticket."""
    try:
        ticket = state.create(account, _ticket_body(body))
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response(
        {
            "statusCode": 201,
            "message": "Record created successfully.",
            "timestamp": ticket.record["created_at"],
            "data": {"id": ticket.record["id"], "remote_id": ticket.record["remote_id"]},
        },
        status=201,
    )


# --- how a read shows a ticket (``list_style``) ----------------------------------------------

_REORDERED_FIELDS = ("assignees", "reporters", "tags", "component_ids")
_SPARSE_FIELDS = ("id", "remote_id", "title", "created_at", "updated_at")
_NEWLINE = re.compile(r"\r\n|\r|\n")


def _as_sent(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _as_provider(record: dict[str, Any]) -> dict[str, Any]:
    """The ticket as a provider maps it back: the same ticket in another form (HTML
    content, lists reordered, title and tags normalised), so that reconciliation's matching
    is tested against the normalisation it has to see through."""
    shown = dict(record)
    for name in _REORDERED_FIELDS:
        if isinstance(shown.get(name), list):
            shown[name] = shown[name][::-1]
    if isinstance(shown.get("tags"), list):
        shown["tags"] = [tag.lower() for tag in shown["tags"]]
    if isinstance(shown["title"], str):
        shown["title"] = " ".join(shown["title"].split())
    if isinstance(shown.get("content"), list):
        shown["content"] = [_as_html(item) for item in shown["content"]]
    return shown


def _as_html(item: dict[str, Any]) -> dict[str, Any]:
    """A content item as providers store it, HTML only: plain text becomes a paragraph."""
    html, plain = item.get("html"), item.get("plain")
    if html is None and plain is not None:
        html = "<p>" + _NEWLINE.sub("<br>", escape(plain)) + "</p>"
    return {"plain": None, "html": html}


def _sparse(record: dict[str, Any]) -> dict[str, Any]:
    """A provider that maps back nothing but the title: matching can go on the title alone."""
    return {name: record[name] for name in _SPARSE_FIELDS}


_LIST_STYLES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "verbatim": _as_sent,
    "provider": _as_provider,
    "sparse": _sparse,
}


# --- the ticketing routes --------------------------------------------------------------------


def _api_key(request: web.Request, expected: str | None) -> str | None:
    """The username of a valid ``Basic base64(key:)`` header, else None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, colon, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not colon or password or not username:
        return None
    if expected is not None and not hmac.compare_digest(username.encode(), expected.encode()):
        return None
    return username


async def _admit(request: web.Request, state: _State) -> str | web.Response:
    """Checks 1 to 4, common to every ticketing route: the linked account, or the refusal."""
    if state.options.latency_ms:
        await asyncio.sleep(state.options.latency_ms / 1000)
    refusal = state.options.auth_failure
    if refusal is not None:  # the key was revoked: nothing it sends is accepted
        return _error(refusal, AUTH_FAILURES[refusal])
    key = _api_key(request, state.options.api_key)
    if key is None:
        return _error(401, "Unauthorized")
    if not request.headers.get("User-Agent"):
        return _error(403, "Forbidden: requests must send a User-Agent header")
    account = request.headers.get("x-account-id")
    if not account:
        return _error(400, "the x-account-id header is required")
    if state.options.accounts is not None and account not in state.options.accounts:
        return _error(404, "linked account not found (x-account-id)")
    wait = state.admit(key)
    if wait is not None:
        return _error(429, "Too many requests", retry_after=str(wait))
    return account


async def _play(
    request: web.Request, state: _State, account: str, body: object, step: Step
) -> web.Response | None:
    """Answer as a scripted step says; None when the connection was dropped instead."""
    if step.delay_ms:
        await asyncio.sleep(step.delay_ms / 1000)
    if step.also_elsewhere is not None:
        state.create_elsewhere(account, step.also_elsewhere)
    if step.status is not None and step.is_error:
        return _error(
            step.status,
            step.message or _reason(step.status),
            retry_after=step.retry_after,
            provider_errors=step.provider_errors,
            data=step.data,
        )
    if step.status is None and not (step.create_then_drop or step.create_then_hang_ms):
        return _normal(state, account, body)
    response = _create(state, account, body)
    if response.status != 201:  # an invalid body creates nothing, whatever the script says
        return response
    if step.create_then_drop:
        if request.transport is not None:
            request.transport.abort()
        return None
    if step.create_then_hang_ms:
        await asyncio.sleep(step.create_then_hang_ms / 1000)
    return response


def _normal(state: _State, account: str, body: object) -> web.Response:
    if state.options.error_rate and random.random() < state.options.error_rate:
        return _error(500, "Internal server error")
    return _create(state, account, body)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _create_ticket(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    arrived = time.time()
    body = _load_json(await request.read())
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str):
        title = None
    state.requests += 1
    if title is not None:
        state.requests_by_title[title].append(arrived)
    account = request.headers.get("x-account-id", "")
    flight = state.arrived(account)
    port, opened = _client_port(request), state.open_from  # a reset meanwhile: left behind
    opened[port] += 1
    try:
        return await _answer_create(request, state, body, title)
    finally:
        flight.answered(time.monotonic())
        opened[port] -= 1
        if opened[port] <= 0:
            del opened[port]


def _client_port(request: web.Request) -> int:
    """The port the request's connection comes from (0 if unknown): which process sent it."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return int(peer[1]) if isinstance(peer, tuple) and len(peer) >= 2 else 0


async def _answer_create(
    request: web.Request, state: _State, body: object, title: str | None
) -> web.Response:
    admitted = await _admit(request, state)
    if isinstance(admitted, web.Response):
        response: web.Response | None = admitted
    else:
        step = state.next_step(title)
        if step is None:
            response = _normal(state, admitted, body)
        else:
            response = await _play(request, state, admitted, body, step)
    if response is None:
        state.dropped += 1
        return web.Response()  # aiohttp finds the transport closed and discards this quietly
    state.by_status[response.status] += 1
    return response


async def _get_ticket(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    admitted = await _admit(request, state)
    if isinstance(admitted, web.Response):
        return admitted
    ticket = state.tickets.get(request.match_info["id"])
    if ticket is None or ticket.account != admitted:
        return _error(404, "ticket not found")
    return web.json_response({"data": state.shown(ticket)})


def _listing_query(query: Mapping[str, str]) -> tuple[int, int, int]:
    """``filter[updated_after]`` in epoch ms (-1 if absent), the page size and the index
    to start from; ValueError saying what is wrong."""
    after_ms = -1
    if "filter[updated_after]" in query:
        try:
            after = datetime.fromisoformat(query["filter[updated_after]"])
        except ValueError:
            raise ValueError("filter[updated_after] must be an ISO 8601 date-time") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        after_ms = math.floor(after.timestamp() * 1000)
    try:
        page_size = int(query.get("page_size", DEFAULT_PAGE_SIZE))
        start = int(query.get("next", 0))
    except ValueError:
        raise ValueError("page_size and next must be integers") from None
    if page_size < 1 or start < 0:
        raise ValueError("page_size must be positive and next a cursor from a previous page")
    return after_ms, page_size, start


async def _list_tickets(request: web.Request) -> web.Response:
    """Tickets of the account in creation order, ``filter[updated_after]`` strict, paged;
    only those created at least ``list_lag_ms`` ago, as a provider's search index lags."""
    state = request.app[_STATE]
    admitted = await _admit(request, state)
    if isinstance(admitted, web.Response):
        return admitted
    try:
        after_ms, page_size, start = _listing_query(request.query)
    except ValueError as exc:
        return _error(400, str(exc))
    indexed_ms = time.time_ns() // 1_000_000 - state.options.list_lag_ms
    page: list[dict[str, Any]] = []
    for index in range(start, len(state.order)):
        ticket = state.order[index]
        if ticket.account != admitted or not after_ms < ticket.created_ms <= indexed_ms:
            continue
        if len(page) == page_size:
            return web.json_response({"data": page, "next": str(index)})
        page.append(state.shown(ticket))
    return web.json_response({"data": page, "next": None})


# --- the control API -------------------------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    body = _load_json(await request.read())
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    return body


async def _script(request: web.Request) -> web.Response:
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    title, responses = body.get("title"), body.get("responses")
    if not isinstance(title, str) or not isinstance(responses, list):
        return _error(400, 'expected {"title": string, "responses": [step, ...]}')
    try:
        steps = [Step.parse(raw) for raw in responses]
    except ValueError as exc:
        return _error(400, f"bad step: {exc}")
    queue = request.app[_STATE].scripts.setdefault(title, deque())
    queue.extend(steps)
    return web.json_response({"title": title, "pending": len(queue)})


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


def _rpm_limit(name: str, value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or null")
    return value


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1")
    return float(value)


def _auth_failure(name: str, value: Any) -> Any:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value not in AUTH_FAILURES
    ):
        raise ValueError(f"{name} must be 401, 403 or null")
    return value


def _list_style(name: str, value: Any) -> Any:
    if not isinstance(value, str) or value not in _LIST_STYLES:
        raise ValueError(f"{name} must be one of: {', '.join(_LIST_STYLES)}")
    return value


# The options ``/_fake/config`` may change (never the API key), each with its check.
_LIVE_OPTIONS: dict[str, Callable[[str, Any], Any]] = {
    "latency_ms": _non_negative,
    "rpm_limit": _rpm_limit,
    "error_rate": _fraction,
    "auth_failure": _auth_failure,
    "list_lag_ms": _non_negative,
    "list_style": _list_style,
}


def check_options(options: FakeApiOptions) -> FakeApiOptions:
    """A copy of ``options`` if ``/_fake/config`` would accept them, else ValueError: one
    rule for the options a server starts with and those it is given live."""
    checked = {name: check(name, getattr(options, name)) for name, check in _LIVE_OPTIONS.items()}
    return dataclasses.replace(options, **checked)


def _live_options(options: FakeApiOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in _LIVE_OPTIONS}


async def _config(request: web.Request) -> web.Response:
    """Change the options given, all or none: a request with one bad option changes nothing."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    state = request.app[_STATE]
    try:
        _only(body, _LIVE_OPTIONS, "options")
        changes = {name: _LIVE_OPTIONS[name](name, value) for name, value in body.items()}
    except ValueError as exc:
        return _error(400, str(exc))
    state.options = dataclasses.replace(state.options, **changes)
    return web.json_response(_live_options(state.options))


def _linked_account(options: FakeApiOptions, account: object) -> str:
    if not isinstance(account, str) or not account:
        raise ValueError("account_id must be a non-empty string")
    if options.accounts is not None and account not in options.accounts:
        raise ValueError("account_id is not one of the linked accounts")
    return account


async def _create_elsewhere(request: web.Request) -> web.Response:
    """A ticket another user of the customer's tool creates, outside our client's traffic:
    no auth, rate limit, script or request stats, but the body checked as a create's."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    state = request.app[_STATE]
    try:
        _only(body, ("account_id", "ticket"), "keys")
        account = _linked_account(state.options, body.get("account_id"))
        ticket = state.create_elsewhere(account, _ticket_body(body.get("ticket"), "ticket"))
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response(
        {"id": ticket.record["id"], "remote_id": ticket.record["remote_id"]}, status=201
    )


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[_STATE].stats())


async def _reset(request: web.Request) -> web.Response:
    """Forget tickets, scripts, stats and rate windows; the options stay as they are."""
    request.app[_STATE].reset()
    return web.json_response({"ok": True})


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_app(options: FakeApiOptions) -> web.Application:
    """The stand-in as an aiohttp application, on a copy of ``options`` it may change live;
    ValueError if ``/_fake/config`` would refuse them."""
    app = web.Application()
    app[_STATE] = _State(check_options(options))
    app.router.add_post(TICKETS_PATH, _create_ticket)
    app.router.add_get(TICKETS_PATH, _list_tickets)
    app.router.add_get(TICKETS_PATH + "/{id}", _get_ticket)
    app.router.add_post("/_fake/script", _script)
    app.router.add_post("/_fake/config", _config)
    app.router.add_post("/_fake/tickets", _create_elsewhere)
    app.router.add_get("/_fake/stats", _stats)
    app.router.add_post("/_fake/reset", _reset)
    app.router.add_get("/_fake/health", _health)
    return app


async def _serve(host: str, port: int, options: FakeApiOptions) -> None:
    # No access log: at thousands of requests a second it would cost more than the handler.
    runner = web.AppRunner(
        make_app(options), access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_port = runner.addresses[0][1]
        if options.api_key is None:
            print("fake StackOne API: accepting any non-empty API key", file=sys.stderr)
        print(f"fake StackOne API listening on http://{host}:{bound_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(host: str, port: int, options: FakeApiOptions) -> None:
    """Serve until SIGINT or SIGTERM, then return; port 0 picks a free port and prints it."""
    asyncio.run(_serve(host, port, options))
