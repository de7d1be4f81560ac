"""Dashboard sessions: who signed in, kept in Redis so any web process serves them.

Signing in with a token opens a session under a random id, the cookie's value. Redis
holds only a digest of that id as the key name, so reading Redis (a backup, ``KEYS``)
signs nobody in; the session names its token's entry, never the token, and expires after
``SESSION_SECONDS``. Each session has its own CSRF token, which every form posts back and
which is compared in constant time. The entry is looked up again on every request, so a
token removed from ``TICKETQ_WEB_TOKENS`` (or given another scope, or replaced) ends its
sessions at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import cast

import redis

from ops.web.auth import LOCAL, Principal, TokenBook, seal
from worker.settings import Scope
from worker.store.keys import session_key
from worker.store.salt import deployment_salt

COOKIE = "ticketq_session"
SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
LOCAL_CSRF = b"ticketq dashboard: the CSRF token without tokens"  # the HMAC's label


@dataclass(frozen=True)
class Session:
    """A signed-in visitor: who (by token entry, as configured now) and their CSRF token."""

    principal: Principal
    csrf: str

    def checks(self, given: str | None) -> bool:
        """Whether ``given`` is this session's CSRF token (constant time)."""
        return hmac.compare_digest(_bytes(self.csrf), _bytes(given or ""))


@dataclass(frozen=True)
class Opened:
    """A new session and the id to set as the cookie (shown to nobody else)."""

    session_id: str
    session: Session


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _key(session_id: str) -> str:
    return session_key(hashlib.sha256(_bytes(session_id)).hexdigest())


class Sessions:
    def __init__(self, client: redis.Redis, book: TokenBook) -> None:
        self._redis = client
        self._book = book

    def open(self, principal: Principal) -> Opened:
        """A new session for ``principal``, expiring after ``SESSION_SECONDS``."""
        opened = Opened(secrets.token_urlsafe(32), Session(principal, secrets.token_urlsafe(32)))
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                _key(opened.session_id),
                mapping={
                    "name": principal.name,
                    "scope": principal.scope.name,
                    "csrf": opened.session.csrf,
                    "seal": seal(principal.key, opened.session_id),
                    "opened_at": repr(time.time()),
                },
            )
            pipe.expire(_key(opened.session_id), SESSION_SECONDS)
            pipe.execute()
        return opened

    def find(self, session_id: str | None) -> Session | None:
        """The live session ``session_id`` names; None if it expired, was closed, or its
        token's entry is no longer configured as it was."""
        if not session_id:
            return None
        raw = cast(dict[str, str], self._redis.hgetall(_key(session_id)))
        if not raw:
            return None
        principal = self._principal(raw, session_id)
        return Session(principal, raw["csrf"]) if principal else None

    def local(self) -> Session:
        """Without tokens nobody signs in and nothing is kept per visitor: everyone (on
        this host) is ``LOCAL``, with one CSRF token derived from the deployment's salt.
        A session opened for each visit let any request without a cookie (a page
        elsewhere loading ``<img src=http://127.0.0.1:8000/>`` in a loop) pile up
        eight-hour sessions in the fleet's Redis until it filled."""
        salt = deployment_salt(self._redis)
        return Session(LOCAL, hmac.new(salt, LOCAL_CSRF, hashlib.sha256).hexdigest())

    def _principal(self, raw: dict[str, str], session_id: str) -> Principal | None:
        """A session lives as long as its token's entry is configured as it was."""
        scope = raw.get("scope", "")
        if self._book.open or scope not in Scope.__members__:
            return None
        principal = Principal(raw.get("name", ""), Scope[scope])
        return principal if self._book.holds(principal, session_id, raw.get("seal", "")) else None

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._redis.delete(_key(session_id))
