"""Every setting of ticketq, read from the environment in this one place.

Nothing else in the project reads environment variables: processes that ticketq starts
(workers, the stand-in API, embedded Redis) get their configuration by passing an
environment to the child, which builds its own ``Settings`` from it.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

import redis
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

AmbiguousPolicy = Literal["reconcile", "retry", "park"]
LogFormat = Literal["text", "json"]


class Scope(IntEnum):
    """What a web token may do; each scope includes those below it."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    def allows(self, needed: Scope) -> bool:
        return self >= needed


@dataclass(frozen=True)
class WebToken:
    """One entry of ``TICKETQ_WEB_TOKENS``: who holds the token, and what it may do."""

    name: str
    scope: Scope
    token: SecretStr


WEB_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
SHORTEST_WEB_TOKEN = 16  # characters; a shorter one can be guessed


def guessable(token: str) -> bool:
    """A token too short to withstand guessing, or holding a blank or control character
    (a header or a ``name:scope:token`` list would not carry it whole)."""
    return len(token) < SHORTEST_WEB_TOKEN or not token.isprintable() or " " in token


def parse_web_tokens(text: str) -> tuple[WebToken, ...]:
    """``name:scope:token`` entries, separated by commas or blanks. A mistake is named by
    its entry's number and the rule it breaks, never by its text (a bare token given as an
    entry would read as its name)."""
    tokens: list[WebToken] = []
    for number, entry in enumerate(text.replace(",", " ").split(), start=1):
        name, _, rest = entry.partition(":")
        scope, _, token = rest.partition(":")
        if not WEB_TOKEN_NAME.fullmatch(name):
            raise ValueError(
                f"entry {number} must be name:scope:token, the name of letters, digits, "
                "_ . - (at most 64)"
            )
        if scope.upper() not in Scope.__members__:
            raise ValueError(f"entry {number}: the scope must be read, write or admin")
        if guessable(token):
            raise ValueError(
                f"entry {number}: the token must be at least "
                f"{SHORTEST_WEB_TOKEN} printable characters"
            )
        if any(known.name == name for known in tokens):
            raise ValueError(f"entry {number}: its name is given twice")
        tokens.append(WebToken(name, Scope[scope.upper()], SecretStr(token)))
    return tuple(tokens)


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
RATE_PATTERN = re.compile(r"^\s*([0-9]{1,10})\s*/\s*([a-z]+)\s*$")  # ASCII digits only
MOST_REQUESTS = 10**9  # per period; a count of 400 digits overflowed the interval arithmetic


@dataclass(frozen=True)
class RateLimit:
    """A number of requests per period, as ``TICKETQ_RATE_LIMIT`` writes it."""

    requests: int
    per_seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``1000/min``, ``50/s``, ``3600/hour``."""
        match = RATE_PATTERN.match(text.lower())
        if (
            not match
            or match.group(2) not in RATE_UNITS
            or not 1 <= int(match.group(1)) <= MOST_REQUESTS
        ):
            raise ValueError("must be like 1000/min or 50/s")
        return cls(int(match.group(1)), RATE_UNITS[match.group(2)])


MOST_WEIGHT = 1000.0


def parse_weights(text: str) -> dict[str, float]:
    """``acct-1=3,acct-2=1``: each linked account's share of the key's rate (default 1)."""
    weights: dict[str, float] = {}
    for part in filter(None, (item.strip() for item in text.split(","))):
        account, equals, number = part.rpartition("=")
        account = account.strip()
        try:
            weight = float(number)
        except ValueError:
            weight = math.nan
        if not equals or not account or not 0 < weight <= MOST_WEIGHT:
            raise ValueError(
                f"must be like acct-1=3,acct-2=1 (each weight above 0, at most {MOST_WEIGHT:.0f})"
            )
        if account in weights:
            raise ValueError("names an account twice")
        weights[account] = weight
    return weights


ENV_PREFIX = "TICKETQ_"
LEASE_SLACK = 5  # seconds of a lease beyond one request and one in-process wait
REDIS_SCHEMES = ("redis", "rediss", "unix")  # what redis-py's from_url reads
REDIS_URL_RULE = (
    "must be a Redis URL redis-py can use: a port from 1 to 65535, a database number "
    "(/0, /1, ...) and only known ?options with valid values"
)
# The longest duration a setting may give: far past any use, and still exact in milliseconds
# in a Lua number and within Redis's PX and EXPIRE (an unbounded one overflowed both).
LONGEST_SECONDS = 10 * 365 * 24 * 3600  # ten years
MARKER = re.compile(r"off|tag|custom_field:[A-Za-z0-9_.\-]{1,100}")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MASK = "***"


def ticketq_version() -> str:
    """The installed distribution's version, so the User-Agent names what really runs."""
    try:
        return version("ticketq")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class Settings(BaseSettings):
    """The one settings object. Field docs are the README's settings table."""

    # TICKETQ_<FIELD> for ticketq's own settings; the two StackOne ones keep StackOne's names.
    # hide_input_in_errors: a ValidationError printed as it is must not show the key either.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,  # inf broke the lease arithmetic; nan passes every bound
    )

    stackone_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="STACKONE_API_KEY",
        description="StackOne API key (secret). Required by workers; never logged or stored.",
    )
    stackone_base_url: str = Field(
        default="https://api.stackone.com",
        validation_alias="STACKONE_BASE_URL",
        description="Base URL of the StackOne API (the stand-in's URL in the demo and tests); "
        "`https://` unless the host is this one (127.0.0.1, ::1, localhost).",
    )
    insecure_http: bool = Field(
        default=False,
        description="Allow an `http://` `STACKONE_BASE_URL` to another host, such as the "
        "stand-in in docker-compose.yml; the key then crosses that network in clear text.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis used as broker and job store: `redis://`, `rediss://` (TLS) or "
        "`unix://`. Its password is masked wherever settings are shown.",
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        le=LONGEST_SECONDS,
        description="Seconds to open a connection to StackOne.",
    )
    read_timeout: float = Field(
        default=75.0,
        gt=0,
        le=LONGEST_SECONDS,
        description="Seconds to wait for StackOne's answer; above its own 60 s limit (408).",
    )
    max_attempts: int = Field(
        default=0,
        ge=0,
        le=100,
        description="An optional cap on requests sent for one job before it ends failed "
        "`exhausted`, on top of `TICKETQ_RETRY_FOR`; 0: no cap, the time budget alone decides.",
    )
    retry_for: float = Field(
        default=24 * 3600.0,
        gt=0,
        le=LONGEST_SECONDS,
        description="Seconds a job keeps retrying 5xx and connection errors, counted from its "
        "first failed attempt (not its creation: waiting for the rate or a paused key is not "
        "failing); a failure after that ends it failed `exhausted`.",
    )
    outage_after: int = Field(
        default=5,
        ge=1,
        description="5xx or connection errors in a row with the API key, from any job on any "
        "worker, that make it an outage: every worker holds its requests and one at a time "
        "probes StackOne, pausing from `TICKETQ_BACKOFF_BASE` and doubling up to "
        "`TICKETQ_BACKOFF_MAX` after each failed probe, until one succeeds.",
    )
    backoff_base: float = Field(
        default=1.0,
        gt=0,
        le=LONGEST_SECONDS,
        description="First backoff ceiling in seconds; doubles per attempt (full jitter).",
    )
    backoff_max: float = Field(
        default=600.0,
        gt=0,
        le=LONGEST_SECONDS,
        description="Longest wait between two attempts, Retry-After included.",
    )
    inprocess_max_delay: float = Field(
        default=5.0,
        ge=0,
        le=LONGEST_SECONDS,
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
        le=LONGEST_SECONDS,
        description="Seconds every worker stops sending with a key StackOne refused (401/403) "
        "before one job probes it again.",
    )
    rate_limit: str = Field(
        default="1000/min",
        description="Requests per API key, shared by every worker on every host: `1000/min`, "
        "`50/s`. ticketq keeps 1.5% and a small interactive burst below it (a window of a "
        "second keeps more, for requests sent late: about 53% of 10/s is used).",
    )
    account_concurrency: int = Field(
        default=10,
        ge=0,
        description="Requests in flight at once per linked account, across all workers "
        "(StackOne advises against many concurrent requests to one account); 0: no cap.",
    )
    account_weights: str = Field(
        default="",
        description="Shares of the key's rate between linked accounts while several have "
        "work waiting, as `acct-1=3,acct-2=1` (an account not named weighs 1): with those "
        "two waiting, acct-1 gets three requests for each of acct-2's.",
    )
    account_rate_limit: str = Field(
        default="",
        description="Requests per linked account, for providers with limits of their own "
        "(`100/min`, `5/s`); empty: only the key's rate.",
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
        le=LONGEST_SECONDS,
        description="Seconds between looks for due retries and jobs whose worker was lost.",
    )
    requeue_after: float = Field(
        default=60.0,
        gt=0,
        le=LONGEST_SECONDS,
        description="A job sent to the queue but not claimed within this many seconds is "
        "sent again, once its lane's queue is empty, in case its message was lost on the "
        "way to a worker (a duplicate is harmless: one claim wins).",
    )
    reconcile_pages: int = Field(
        default=20,
        ge=1,
        description="Pages of 100 recent tickets read when reconciling before giving up.",
    )
    reconcile_settle: float = Field(
        default=300.0,
        ge=0,
        le=LONGEST_SECONDS,
        description="Seconds after an uncertain attempt during which a ticket StackOne does "
        "not list yet is waited for (providers index new tickets with a delay) before the "
        "job is sent again; reconciliation looks again at growing intervals meanwhile.",
    )
    mark_tickets: str = Field(
        default="off",
        description="`tag` adds the tag `ticketq-<job id>` to every ticket, "
        "`custom_field:<name>` puts the job id in that unified custom field; "
        "reconciliation then matches on it alone, exactly. `off`: nothing added (the "
        "marker shows in the customer's tool).",
    )
    visibility_timeout: int = Field(
        default=300,
        ge=10,
        le=LONGEST_SECONDS,
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
        le=LONGEST_SECONDS,
        description="Seconds a succeeded job record (and its ref/idempotency index) is kept.",
    )

    keep_body: bool = Field(
        default=False,
        description="Keep a succeeded job's ticket body in its record; by default it is "
        "dropped once the ticket exists (the record keeps what correlation needs: ids, ref, "
        "batch, account, state, attempts, times).",
    )
    web_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Tokens of the web service (`ticketq web`), as `name:scope:token` "
        "entries separated by commas; scope `read`, `write` (includes read) or `admin` "
        "(includes both); tokens of at least 16 characters. Unset: the service binds "
        "127.0.0.1 only and asks nobody to sign in.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="A token that reads the web service's `/metrics` and nothing else "
        "(a read token also does).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Each worker serves its own Prometheus counters and histograms on this "
        "port (127.0.0.1 only unless `TICKETQ_METRICS_HOST`); unset: none.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="The address a worker's metrics listen on, with `TICKETQ_METRICS_PORT`.",
    )
    log_format: LogFormat = Field(
        default="text",
        description="`text`: a line per event for people; `json`: one JSON object per line.",
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

    @field_validator("stackone_api_key")
    @classmethod
    def _key_is_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty key would start a worker that fails every message (workers refuse an
        unset key themselves; producers need none)."""
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty when set")
        return value

    @field_validator("web_tokens")
    @classmethod
    def _web_tokens_parse(cls, value: SecretStr) -> SecretStr:
        parse_web_tokens(value.get_secret_value())
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_unguessable(cls, value: SecretStr | None) -> SecretStr | None:
        """The metrics token is a bearer token too: the web tokens' rule, never its text."""
        if value is not None and guessable(value.get_secret_value()):
            raise ValueError(
                f"must be at least {SHORTEST_WEB_TOKEN} printable characters, without blanks"
            )
        return value

    @property
    def web_token_entries(self) -> tuple[WebToken, ...]:
        return parse_web_tokens(self.web_tokens.get_secret_value())

    @field_validator("mark_tickets")
    @classmethod
    def _marker_is_known(cls, value: str) -> str:
        """A marker the worker cannot write would leave reconciliation matching on nothing."""
        if not MARKER.fullmatch(value):
            raise ValueError(
                "must be off, tag or custom_field:<name> (a name of letters, digits, "
                "_ . -, at most 100)"
            )
        return value

    @field_validator("stackone_base_url")
    @classmethod
    def _base_url_is_a_url(cls, value: str) -> str:
        """A URL that cannot be sent to would make every attempt fail, ambiguous."""
        if _base_url_parts(value) is None:
            raise ValueError(
                "must be an http(s) URL with a host, like https://api.stackone.com "
                "(an optional port and path; no user, query or fragment)"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_usable(cls, value: str) -> str:
        """Every command builds its Redis client from this URL: one redis-py cannot read
        (a bad port or option) raised a traceback there, and a database path that is not a
        number silently meant database 0. Checked without connecting; the message never shows
        the URL (it may hold a password)."""
        parts = _url_parts(value)
        if parts is None or parts.scheme not in REDIS_SCHEMES:
            raise ValueError("must start with redis://, rediss:// or unix://")
        if not _redis_py_reads(value, parts):
            raise ValueError(REDIS_URL_RULE)
        return value

    @model_validator(mode="after")
    def _key_goes_out_encrypted(self) -> Settings:
        """Basic auth over plain HTTP hands the key to anyone on the way."""
        parts = _base_url_parts(self.stackone_base_url)
        local = parts is not None and parts.hostname in LOCAL_HOSTS
        if parts is not None and parts.scheme == "http" and not local and not self.insecure_http:
            raise ValueError(
                "STACKONE_BASE_URL: must use https:// (http:// only for 127.0.0.1, ::1 or "
                "localhost: the API key would cross the network in clear text)"
            )
        return self

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """``repr`` and ``str`` show the Redis URL without its password."""
        for name, value in super().__repr_args__():
            yield name, redacted_url(value) if name == "redis_url" else value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    @property
    def parsed_rate_limit(self) -> RateLimit:
        return RateLimit.parse(self.rate_limit)

    @field_validator("account_rate_limit")
    @classmethod
    def _account_rate_limit_parses(cls, value: str) -> str:
        if value.strip():
            RateLimit.parse(value)
        return value

    @property
    def parsed_account_rate_limit(self) -> RateLimit | None:
        return RateLimit.parse(self.account_rate_limit) if self.account_rate_limit.strip() else None

    @field_validator("account_weights")
    @classmethod
    def _account_weights_parse(cls, value: str) -> str:
        parse_weights(value)
        return value

    @property
    def parsed_account_weights(self) -> dict[str, float]:
        return parse_weights(self.account_weights)

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


def describe_settings_error(exc: ValidationError) -> str:
    """One line, as every error a command ends with: each problem's variable and the rule it
    breaks, never the value given (it may be the API key or a URL with a password). A rule
    across settings names its variables itself."""
    return "; ".join(_problem(error) for error in exc.errors(include_input=False))


def _problem(error: ErrorDetails) -> str:
    rule = " ".join(error["msg"].removeprefix("Value error, ").split())
    if not error["loc"]:
        return rule
    name = str(error["loc"][0])
    variable = Settings.variable(name) if name in Settings.model_fields else name
    return f"{variable}: {rule}"


def redacted_url(url: str) -> str:
    """``url`` with any password masked, for showing a Redis URL (in the user info, or as
    redis-py's ``?password=`` query parameter)."""
    parts = _url_parts(url)
    if parts is None:
        return MASK  # nothing can be told apart safely
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    query = re.sub(r"(?i)((?:^|&)password=)[^&]*", rf"\g<1>{MASK}", query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Rebuilt by hand: urlunsplit drops the "//" of schemes it does not know (unix://).
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _base_url_parts(url: str) -> SplitResult | None:
    """``url`` split, if it is one the client can send to: http(s), a host, a valid port,
    nothing that is not part of a base (user info, query, fragment) and no blanks."""
    if not url.isprintable() or any(char.isspace() for char in url):
        return None
    parts = _url_parts(url)
    if parts is None:
        return None
    try:
        parts.port  # noqa: B018 -- raises for a port that is not a number in range
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    if "?" in url or "#" in url or not _is_host(parts.hostname):
        return None
    return parts


def _url_parts(url: str) -> SplitResult | None:
    """``url`` split, if it is one at all: a scheme, "://" and brackets that match."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an IPv6 host with a bracket missing
        return None
    return parts if parts.scheme and url.lower().startswith(f"{parts.scheme}://") else None


def _redis_py_reads(url: str, parts: SplitResult) -> bool:
    """Whether redis-py reads ``url`` as it is written: the port, the database and every
    option, down to building (not opening) a connection, which refuses unknown options."""
    if parts.scheme != "unix":
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            return False
        # redis-py reads port 0 as "no port" (6379) and drops a path that is not a number.
        if port == 0 or not re.fullmatch(r"(/[0-9]+)?/?", parts.path):
            return False
    try:
        redis.ConnectionPool.from_url(url).make_connection()
    except (ValueError, TypeError, redis.RedisError):
        return False
    return True


def _is_host(name: str) -> bool:
    """A DNS name or an IP address (what a URL's host may be)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return re.fullmatch(r"[\w-]+(\.[\w-]+)*\.?", name) is not None
    return True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
