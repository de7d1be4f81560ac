"""Whether StackOne currently accepts our API key, shared by every worker through Redis.

A 401 or 403 is about the key, not the job: failing each job in turn would burn through
the queue. Instead the first refusal pauses sending with this key on every worker for
``auth_pause`` seconds (the limiter refuses admission meanwhile); when the pause ends, the
next job is the probe. The refusal is said loudly once, kept for status pages until a
request succeeds again, and then the recovery is said too. The key itself is never stored:
workers agree on it by a short fingerprint, keyed by the deployment's salt.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import redis
from pydantic import SecretStr

from worker.store.limits import KeyRefusal, LimitStore
from worker.store.salt import deployment_salt
from worker.text import printable

__all__ = ["KeyHealth", "KeyRefusal", "fingerprint"]

log = logging.getLogger("ticketq.worker")


def fingerprint(client: redis.Redis, api_key: SecretStr) -> str:
    """Names the key in Redis and logs without revealing it: HMAC-SHA256 of the key with
    the deployment's salt (kept in Redis), so a fingerprint alone confirms no guess."""
    salt = deployment_salt(client)
    return hmac.new(salt, api_key.get_secret_value().encode(), hashlib.sha256).hexdigest()[:12]


class KeyHealth:
    def __init__(self, store: LimitStore, key_fingerprint: str, pause_seconds: float) -> None:
        self.fingerprint = key_fingerprint
        self._store = store  # the same key state the limiter admits by
        self._pause_seconds = pause_seconds
        self._seen_refusal = False

    def refused(self, status: int | None, message: str, now: float) -> None:
        """StackOne refused the key: pause every worker; say so once per pause."""
        self._seen_refusal = True
        first_refusal = self._store.note_refusal(status, message, now)
        if self._store.pause_refused_key(self._pause_seconds):
            log.error(
                "StackOne refused API key %s (%s: %s); every worker stops sending with it "
                "for %.0fs, then one job tries it again",
                self.fingerprint,
                status,
                printable(message),  # StackOne's words: one line, no escape codes
                self._pause_seconds,
            )
        if first_refusal:
            log.error("jobs wait, they are not failed, until the key works again")

    def noticed(self) -> None:
        """This worker held a job back because the key is paused."""
        self._seen_refusal = True

    def accepted(self, probe: bool = False) -> None:
        """A request went through: if this worker saw the key refused, or the request was
        the probe after a refusal, clear the refusal and announce that sending resumes."""
        if self._seen_refusal or probe:
            self._seen_refusal = False
            if self._store.clear_refusal():
                log.warning("StackOne accepts API key %s again; sending resumes", self.fingerprint)

    def refusal(self) -> KeyRefusal | None:
        """For status pages: the key's last refusal that no success has cleared yet."""
        return self._store.refusal()
