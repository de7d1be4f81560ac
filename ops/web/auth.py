"""Who is asking: web tokens (``TICKETQ_WEB_TOKENS``) and the scope each grants.

Tokens are compared in constant time, every entry every time (a digest of each side, so
neither the length nor the position of the first difference shows in the timing). A token
is never logged, shown or echoed: a principal is known by its entry's name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from ops.web.errors import ApiError
from worker.settings import Scope, Settings, WebToken


@dataclass(frozen=True)
class Principal:
    """The holder of a token, by its name in ``TICKETQ_WEB_TOKENS``."""

    name: str
    scope: Scope
    # The digest of the token it showed (b"" for LOCAL), to seal its dashboard sessions
    # with; never shown, and not part of its identity.
    key: bytes = field(default=b"", repr=False, compare=False)


# Without tokens the service binds 127.0.0.1 only: whoever reaches it is on this host.
LOCAL = Principal("local", Scope.ADMIN)
METRICS = "metrics"  # the name the metrics token goes by


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def seal(key: bytes, session_id: str) -> str:
    """What ties a session to the token it was opened with: an HMAC of the session's id
    keyed by the token's digest. Redis keeps it beside a digest of the id, so it gives
    away neither the token nor the id, yet a token replaced breaks it."""
    return hmac.new(key, session_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


class TokenBook:
    """The configured tokens, held as digests."""

    def __init__(self, entries: tuple[WebToken, ...], metrics_token: SecretStr | None) -> None:
        self._entries = [(_digest(e.token.get_secret_value()), e.name, e.scope) for e in entries]
        self._metrics = _digest(metrics_token.get_secret_value()) if metrics_token else None

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenBook:
        return cls(settings.web_token_entries, settings.metrics_token)

    @property
    def open(self) -> bool:
        """No token configured: everyone who can connect (on 127.0.0.1) is ``LOCAL``."""
        return not self._entries

    def find(self, token: str | None) -> Principal | None:
        """The principal ``token`` names, or None; ``LOCAL`` when no token is configured."""
        if self.open:
            return LOCAL
        if not token:
            return None
        given = _digest(token)
        found: Principal | None = None
        for digest, name, scope in self._entries:  # no early exit: every entry, every time
            if hmac.compare_digest(digest, given):
                found = Principal(name, scope, digest)
        return found

    def holds(self, principal: Principal, session_id: str, sealed: str) -> bool:
        """Whether the entry a dashboard session was opened with is configured now, with
        its name, scope and token (``sealed`` by ``seal``): a token removed, given another
        scope or replaced (a leaked one, rotated) since sign-in ends its sessions at their
        next request."""
        return any(
            name == principal.name
            and scope == principal.scope
            and hmac.compare_digest(seal(digest, session_id), sealed)
            for digest, name, scope in self._entries
        )

    def reads_metrics(self, token: str | None) -> bool:
        """Whether ``token`` may read ``/metrics``: the metrics token, or any web token."""
        if self.find(token) is not None:
            return True
        return (
            bool(token)
            and self._metrics is not None
            and hmac.compare_digest(self._metrics, _digest(token or ""))
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, no port) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """``127.0.0.1`` of ``127.0.0.1:8000``, ``::1`` of ``[::1]:8000``; "" if unreadable."""
    try:
        return urlsplit(f"//{host_header}").hostname or ""
    except ValueError:
        return ""


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def local_only(request: Request) -> None:
    """Every route's first check: without tokens everyone who connects is ``LOCAL``, so a
    request must come from this host's own pages and clients. Its ``Host`` must be a
    loopback name (a page whose DNS name was rebound to 127.0.0.1 reaches us under its
    own name, same-origin with us as its browser sees it), and a POST's ``Origin``, when
    the browser sends one, this host (another site's form or no-cors fetch carries its
    own, and needs no preflight)."""
    book: TokenBook = request.app.state.tokens
    if not book.open:
        return
    host = request.headers.get("host", "")
    if not is_loopback(_host_name(host)):
        raise ApiError(
            403,
            "without TICKETQ_WEB_TOKENS only this host's own names are served: "
            "127.0.0.1, localhost or ::1",
        )
    origin = request.headers.get("origin")
    crossing = origin is not None and urlsplit(origin).netloc != host
    if crossing and request.method not in SAFE_METHODS:
        raise ApiError(403, "a request from another site is refused")


_bearer = HTTPBearer(auto_error=False, description="A token of TICKETQ_WEB_TOKENS.")


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency: the caller's principal, if its token grants ``scope`` (401 without a
    known token, 403 with one that grants less)."""

    def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ) -> Principal:
        book: TokenBook = request.app.state.tokens
        found = book.find(credentials.credentials if credentials else None)
        if found is None:
            raise ApiError(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        if not found.scope.allows(scope):
            raise ApiError(403, f"this needs the {scope.name.lower()} scope")
        return found

    return principal
