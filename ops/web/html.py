"""What every dashboard page shares: the templates (Jinja2, autoescaped), who is looking
(their session, or a sign-in first), the checks a form's POST passes, and the headers
that keep the pages to themselves.

Outside text (ids, refs, StackOne's messages) reaches a page only through ``{{ }}``:
autoescaped, and first made ``printable`` (control characters and bidi overrides shown
as escapes) by the environment's ``finalize``; no template marks outside text ``|safe``.
Errors on these routes answer as pages (or a redirect to sign in), not as the API's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import redis
from fastapi import Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from ops.web import views
from ops.web.auth import TokenBook
from ops.web.sessions import COOKIE, SESSION_SECONDS, Session, Sessions
from worker.settings import Scope, Settings
from worker.store.jobs import JobStore
from worker.text import printable

PARTS = "/parts/"  # fragments the page's script fetches to refresh itself
# Pages load their own script and style only; nothing else, from nowhere else.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _finalize(value: object) -> object:
    """Every ``{{ }}``: nothing for None, outside text made printable, markup as it is."""
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return printable(value)
    return value


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("ops.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=views.utc, duration=views.duration, json=_json, path=_path)
    env.globals.update(ago=views.ago, STATES=views.STATES, Scope=Scope)
    return env


def _path(value: object) -> str:
    """A value as one segment of a URL path (a job id with a slash stays one segment)."""
    return quote(str(value), safe="")


def _json(value: object) -> str:
    """A value as one line of JSON (escaped by autoescape like any text)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


TEMPLATES = _environment()


class SignInFirst(Exception):
    """Nobody (or nobody still valid) is signed in."""


class Refused(Exception):
    """An answer other than the page asked for, shown as a page: status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Visitor:
    """Who is looking: their session, and its id (None for ``LOCAL``, who has none)."""

    session: Session
    session_id: str | None

    def may(self, scope: Scope) -> bool:
        return self.session.principal.scope.allows(scope)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def store_of(request: Request) -> JobStore:
    """The job store on the app's own Redis client."""
    return JobStore.from_settings(settings_of(request), client=request.app.state.redis)


def sessions_of(request: Request) -> Sessions:
    book: TokenBook = request.app.state.tokens
    return Sessions(request.app.state.redis, book)


def visitor(request: Request) -> Visitor:
    """The signed-in visitor; without tokens configured, everyone (on this host) is
    ``LOCAL``, whose forms carry the deployment's local CSRF token."""
    sessions = sessions_of(request)
    if request.app.state.tokens.open:
        return Visitor(sessions.local(), None)
    session_id = request.cookies.get(COOKIE)
    session = sessions.find(session_id)
    if session is not None:
        return Visitor(session, session_id)
    raise SignInFirst()


Viewer = Annotated[Visitor, Depends(visitor)]


def same_origin(request: Request) -> None:
    """A POST from another site is refused: its ``Origin`` (sent by browsers) must name
    this host (scheme aside: a proxy may end TLS before us)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(403, "This form was sent from another site.")


def actor(scope: Scope) -> Callable[..., Visitor]:
    """A dependency for a form's POST: the visitor, if the form came from this site with
    their session's CSRF token and their token grants ``scope``."""

    def checked(request: Request, who: Viewer, csrf: Annotated[str, Form()] = "") -> Visitor:
        same_origin(request)
        if not who.session.checks(csrf):
            raise Refused(403, "This form's CSRF token is missing or stale: reload the page.")
        if not who.may(scope):
            raise Refused(403, f"This needs a token with the {scope.name.lower()} scope.")
        return who

    return checked


def render(
    request: Request, template: str, who: Visitor | None, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page (or fragment) for ``who``, with the headers every page gets."""
    body = TEMPLATES.get_template(template).render(
        request=request, who=who, tokens_open=request.app.state.tokens.open, **context
    )
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def set_cookie(request: Request, response: Response, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def redirect(path: str) -> RedirectResponse:
    """After a form: see the page it acted on (303, so a reload does not post again)."""
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def local_path(path: str | None) -> str:
    """Where to go after signing in: a path on this site only (never ``//host``)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _answer_failure(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignInFirst):
        if request.url.path.startswith(PARTS) or request.method != "GET":
            return PlainTextResponse("sign in again", status_code=401, headers=HEADERS)
        return redirect("/signin?next=" + quote(request.url.path, safe="/"))
    if isinstance(exc, Refused):
        return render(request, "problem.html", None, exc.status, message=exc.message)
    message = "Redis cannot be reached now; try again in a moment."
    return render(request, "problem.html", None, 503, message=message)


class PageRoute(APIRoute):
    """A dashboard route: sign-in, refusals and Redis failures answered as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except (SignInFirst, Refused, redis.RedisError) as exc:
                return _answer_failure(request, exc)

        return answer
