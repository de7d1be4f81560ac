"""Every setting of ticketq, read from the environment in this one place.

Nothing else in the project reads environment variables: processes that ticketq starts
(workers, the stand-in API, embedded Redis) get their configuration by passing an
environment to the child, which builds its own ``Settings`` from it.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AmbiguousPolicy = Literal["retry", "park"]


def ticketq_version() -> str:
    """The installed distribution's version, so the User-Agent names what really runs."""
    try:
        return version("ticketq")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """The one settings object. Field docs are the README's settings table."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    stackone_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("STACKONE_API_KEY"),
        description="StackOne API key (secret). Required by workers; never logged or stored.",
    )
    stackone_base_url: str = Field(
        default="https://api.stackone.com",
        validation_alias=_env("STACKONE_BASE_URL"),
        description="Base URL of the StackOne API (the stand-in's URL in the demo and tests).",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=_env("TICKETQ_REDIS_URL"),
        description="Redis used as broker and job store.",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("TICKETQ_CONNECT_TIMEOUT"),
        description="Seconds to open a connection to StackOne.",
    )
    read_timeout: float = Field(
        default=75.0,
        gt=0,
        validation_alias=_env("TICKETQ_READ_TIMEOUT"),
        description="Seconds to wait for StackOne's answer; above its own 60 s limit (408).",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        validation_alias=_env("TICKETQ_MAX_ATTEMPTS"),
        description="Requests sent for one job before it ends failed.",
    )
    backoff_base: float = Field(
        default=1.0,
        gt=0,
        validation_alias=_env("TICKETQ_BACKOFF_BASE"),
        description="First backoff ceiling in seconds; doubles per attempt (full jitter).",
    )
    backoff_max: float = Field(
        default=600.0,
        gt=0,
        validation_alias=_env("TICKETQ_BACKOFF_MAX"),
        description="Longest wait between two attempts, Retry-After included.",
    )
    inprocess_max_delay: float = Field(
        default=5.0,
        ge=0,
        validation_alias=_env("TICKETQ_INPROCESS_MAX_DELAY"),
        description="Retries due within this many seconds wait in the worker; later ones "
        "go back to the queue so no worker slot sleeps for long.",
    )
    on_ambiguous: AmbiguousPolicy = Field(
        default="retry",
        validation_alias=_env("TICKETQ_ON_AMBIGUOUS"),
        description="What to do when the ticket may exist (408, timeout after sending): "
        "`retry` sends again, `park` ends the job failed with reason `uncertain`.",
    )
    visibility_timeout: int = Field(
        default=3600,
        ge=60,
        validation_alias=_env("TICKETQ_VISIBILITY_TIMEOUT"),
        description="Seconds before Redis redelivers an unacknowledged message. Must exceed "
        "the longest attempt plus the longest retry delay, on every worker alike.",
    )
    worker_concurrency: int = Field(
        default=16,
        ge=1,
        le=1000,
        validation_alias=_env("TICKETQ_WORKER_CONCURRENCY"),
        description="Threads per worker process.",
    )
    succeeded_ttl: int = Field(
        default=30 * 24 * 3600,
        ge=60,
        validation_alias=_env("TICKETQ_SUCCEEDED_TTL"),
        description="Seconds a succeeded job record (and its ref/idempotency index) is kept.",
    )

    @model_validator(mode="after")
    def _delays_fit_visibility_timeout(self) -> Settings:
        """A retry that outlives the visibility timeout would be delivered twice."""
        longest = self.backoff_max + self.connect_timeout + self.read_timeout
        if longest >= self.visibility_timeout:
            raise ValueError(
                f"TICKETQ_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must exceed "
                f"TICKETQ_BACKOFF_MAX + connect + read timeouts ({longest:.0f}s)"
            )
        return self

    @property
    def lease_seconds(self) -> int:
        """How long a claimed attempt stays exclusive: one full request plus slack."""
        return int(self.connect_timeout + self.read_timeout) + 30

    @property
    def user_agent(self) -> str:
        return f"ticketq/{ticketq_version()} (+https://github.com/ticketq/ticketq)"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
