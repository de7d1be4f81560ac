"""Whether StackOne currently accepts our API key, shared by every worker through Redis.

A 401 or 403 is about the key, not the job: failing each job in turn would burn through
the queue. Instead the first refusal pauses sending with this key on every worker for
``auth_pause`` seconds; when the pause ends, the next job is the probe. The key itself is
never stored: workers agree on it by a short fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import cast

import redis
from pydantic import SecretStr

from worker.jobstore import PREFIX

log = logging.getLogger("ticketq.worker")


def fingerprint(api_key: SecretStr) -> str:
    """Names the key in Redis and logs without revealing it."""
    return hashlib.sha256(api_key.get_secret_value().encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Refusal:
    status: int | None
    message: str
    since: float
    until: float


class KeyHealth:
    def __init__(self, client: redis.Redis, api_key: SecretStr, pause_seconds: float) -> None:
        self._redis = client
        self.fingerprint = fingerprint(api_key)
        self._pause_key = f"{PREFIX}:auth:pause:{self.fingerprint}"
        self._refused_key = f"{PREFIX}:auth:refused:{self.fingerprint}"
        self._pause_ms = int(pause_seconds * 1000)
        self._seen_refusal = False

    def paused(self) -> Refusal | None:
        """The current pause, if StackOne refused the key within the last ``auth_pause``."""
        with self._redis.pipeline() as pipe:
            pipe.get(self._pause_key)
            pipe.pttl(self._pause_key)
            raw, ttl_ms = pipe.execute()
        if raw is None or ttl_ms is None or ttl_ms < 0:
            return None
        self._seen_refusal = True
        info = json.loads(cast(str, raw))
        return Refusal(info["status"], info["message"], info["since"], time.time() + ttl_ms / 1000)

    def refused(self, status: int | None, message: str) -> Refusal:
        """Pause every worker; says so loudly once per pause, not once per job."""
        now = time.time()
        info = json.dumps({"status": status, "message": message, "since": now})
        with self._redis.pipeline() as pipe:
            pipe.set(self._pause_key, info, px=self._pause_ms, nx=True)
            pipe.set(self._refused_key, info, nx=True)
            newly_paused, first_refusal = pipe.execute()
        self._seen_refusal = True
        if newly_paused:
            log.error(
                "StackOne refused API key %s (%s: %s); every worker stops sending with it "
                "for %.0fs, then one job tries it again",
                self.fingerprint,
                status,
                message,
                self._pause_ms / 1000,
            )
        if first_refusal:
            log.error("jobs wait, they are not failed, until the key works again")
        return Refusal(status, message, now, now + self._pause_ms / 1000)

    def accepted(self) -> None:
        """A request went through: if this worker saw the key refused, clear and announce."""
        if self._seen_refusal:
            self._seen_refusal = False
            if self._redis.delete(self._refused_key):
                log.warning("StackOne accepts API key %s again; sending resumes", self.fingerprint)

    def refusal(self) -> Refusal | None:
        """For status pages: the key's last refusal that no success has cleared yet."""
        raw = self._redis.get(self._refused_key)
        if raw is None:
            return None
        info = json.loads(cast(str, raw))
        paused = self.paused()
        until = paused.until if paused else info["since"]
        return Refusal(info["status"], info["message"], info["since"], until)
