"""Every setting of ticketq, read from the environment in this one place.

Nothing else in the project reads environment variables: processes that ticketq starts
(workers, the stand-in API, embedded Redis) get their configuration by passing an
environment to the child, which builds its own ``Settings`` from it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AmbiguousPolicy = Literal["reconcile", "retry", "park"]


RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
RATE_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class RateLimit:
    """A number of requests per period, as ``TICKETQ_RATE_LIMIT`` writes it."""

    requests: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``1000/min``, ``50/s``, ``3600/hour``."""
        match = RATE_PATTERN.match(text.lower())
        if not match or match.group(2) not in RATE_UNITS or int(match.group(1)) < 1:
            raise ValueError(f"rate limit {text!r} is not like 1000/min or 50/s")
        return cls(int(match.group(1)), RATE_UNITS[match.group(2)])


ENV_PREFIX = "TICKETQ_"
LEASE_SLACK = 5  # seconds of a lease beyond one request and one in-process wait


def ticketq_version() -> str:
    """The installed distribution's version, so the User-Agent names what really runs."""
    try:
        return version("ticketq")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class Settings(BaseSettings):
    """The one settings object. Field docs are the README's settings table."""

    # TICKETQ_<FIELD> for ticketq's own settings; the two StackOne ones keep StackOne's names.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True, frozen=True
    )

    stackone_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="STACKONE_API_KEY",
        description="StackOne API key (secret). Required by workers; never logged or stored.",
    )
    stackone_base_url: str = Field(
        default="https://api.stackone.com",
        validation_alias="STACKONE_BASE_URL",
        description="Base URL of the StackOne API (the stand-in's URL in the demo and tests).",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis used as broker and job store.",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds to open a connection to StackOne.",
    )
    read_timeout: float = Field(
        default=75.0,
        gt=0,
        description="Seconds to wait for StackOne's answer; above its own 60 s limit (408).",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Requests sent for one job before it ends failed.",
    )
    backoff_base: float = Field(
        default=1.0,
        gt=0,
        description="First backoff ceiling in seconds; doubles per attempt (full jitter).",
    )
    backoff_max: float = Field(
        default=600.0,
        gt=0,
        description="Longest wait between two attempts, Retry-After included.",
    )
    inprocess_max_delay: float = Field(
        default=5.0,
        ge=0,
        description="Retries due within this many seconds wait in the worker; later ones "
        "go back to the queue so no worker slot sleeps for long.",
    )
    on_ambiguous: AmbiguousPolicy = Field(
        default="reconcile",
        description="When the ticket may exist (408, timeout after sending, a worker lost "
        "mid-request): `reconcile` looks for it in the account's recent tickets and adopts a "
        "match before sending again, `retry` sends again, `park` ends the job failed with "
        "kind `uncertain`.",
    )
    max_lost_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts cut off by a dying worker before the job is failed as poison.",
    )
    auth_pause: float = Field(
        default=30.0,
        gt=0,
        description="Seconds every worker stops sending with a key StackOne refused (401/403) "
        "before one job probes it again.",
    )
    rate_limit: str = Field(
        default="1000/min",
        description="Requests per API key, shared by every worker on every host: `1000/min`, "
        "`50/s`. ticketq keeps 1% and a small interactive burst below it.",
    )
    account_concurrency: int = Field(
        default=10,
        ge=0,
        description="Requests in flight at once per linked account, across all workers "
        "(StackOne advises against many concurrent requests to one account); 0: no cap.",
    )
    bulk_batch: int = Field(
        default=50,
        ge=1,
        le=500,
        description="Bulk jobs carried by one queue message (each keeps its own record); "
        "a worker sends them concurrently.",
    )
    scheduler_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between looks for due retries and jobs whose worker was lost.",
    )
    requeue_after: float = Field(
        default=60.0,
        gt=0,
        description="A job sent to the queue but not claimed within this many seconds is "
        "sent again, once its lane's queue is empty, in case its message was lost on the "
        "way to a worker (a duplicate is harmless: one claim wins).",
    )
    reconcile_pages: int = Field(
        default=20,
        ge=1,
        description="Pages of 100 recent tickets read when reconciling before giving up.",
    )
    visibility_timeout: int = Field(
        default=300,
        ge=10,
        description="Seconds before Redis redelivers an unacknowledged message (a killed "
        "worker's prefetched messages come back after it). Must exceed the longest "
        "delivery, two leases (checked at start-up), on every worker alike.",
    )
    worker_concurrency: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Deliveries (Celery threads) per worker process; the requests of all "
        "of them share one event loop.",
    )
    succeeded_ttl: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        description="Seconds a succeeded job record (and its ref/idempotency index) is kept.",
    )

    @classmethod
    def variable(cls, field_name: str) -> str:
        """The environment variable a setting is read from."""
        alias = cls.model_fields[field_name].validation_alias
        return alias if isinstance(alias, str) else ENV_PREFIX + field_name.upper()

    @model_validator(mode="before")
    @classmethod
    def _variables_name_their_fields(cls, given: Any) -> Any:
        """``Settings(TICKETQ_MAX_ATTEMPTS=5)`` or a child's environment given whole to
        ``model_validate`` means what the variable would mean, never silently nothing."""
        if not isinstance(given, Mapping):
            return given
        fields = {ENV_PREFIX + name.upper(): name for name in cls.model_fields}
        return {fields.get(key, key): value for key, value in given.items()}

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    @property
    def parsed_rate_limit(self) -> RateLimit:
        return RateLimit.parse(self.rate_limit)

    @model_validator(mode="after")
    def _delivery_fits_visibility_timeout(self) -> Settings:
        """A delivery still running when the visibility timeout ends is delivered twice."""
        longest = 2 * self.lease_seconds
        if longest >= self.visibility_timeout:
            raise ValueError(
                f"TICKETQ_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed the "
                f"longest delivery, 2 x (connect + read timeouts + "
                f"TICKETQ_INPROCESS_MAX_DELAY + {LEASE_SLACK}s) = {longest:.0f}s"
            )
        return self

    @property
    def lease_seconds(self) -> int:
        """How long one attempt stays exclusive; renewed before every request it sends."""
        return math.ceil(
            self.connect_timeout + self.read_timeout + self.inprocess_max_delay + LEASE_SLACK
        )

    @property
    def user_agent(self) -> str:
        return f"ticketq/{ticketq_version()} (+https://github.com/ticketq/ticketq)"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
