"""Who is asking: web tokens (``TICKETQ_WEB_TOKENS``) and the scope each grants.

Tokens are compared in constant time, every entry every time (a digest of each side, so
neither the length nor the position of the first difference shows in the timing). A token
is never logged, shown or echoed: a principal is known by its entry's name.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

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


# Without tokens the service binds 127.0.0.1 only: whoever reaches it is on this host.
LOCAL = Principal("local", Scope.ADMIN)
METRICS = "metrics"  # the name the metrics token goes by


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


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
                found = Principal(name, scope)
        return found

    def holds(self, principal: Principal) -> bool:
        """Whether an entry of that name and scope is configured now: a dashboard session
        names its principal, so a token removed (or given another scope) since sign-in ends
        its sessions at their next request."""
        return any(
            name == principal.name and scope == principal.scope for _, name, scope in self._entries
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
