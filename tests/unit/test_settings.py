"""Settings: one object, read from the environment, refusing combinations that lose jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from worker.settings import Scope, Settings, describe_settings_error, redacted_url

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_match_stackone_and_a_local_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STACKONE_API_KEY", "STACKONE_BASE_URL", "TICKETQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings()

    assert settings.stackone_base_url == "https://api.stackone.com"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.stackone_api_key is None


def test_values_come_from_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKONE_API_KEY", "sk-secret-value")
    monkeypatch.setenv("TICKETQ_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("TICKETQ_ON_AMBIGUOUS", "park")

    settings = Settings()

    assert settings.max_attempts == 3 and settings.on_ambiguous == "park"
    assert settings.stackone_api_key is not None
    assert settings.stackone_api_key.get_secret_value() == "sk-secret-value"
    assert "sk-secret-value" not in repr(settings) + str(settings.model_dump())


def test_a_retry_delay_longer_than_the_visibility_timeout_is_refused() -> None:
    with pytest.raises(ValidationError, match="TICKETQ_VISIBILITY_TIMEOUT"):
        Settings(visibility_timeout=120, read_timeout=60)


def test_the_user_agent_names_ticketq_and_its_version() -> None:
    assert Settings().user_agent.startswith("ticketq/")


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = README.read_text()
    for name in Settings.model_fields:
        assert f"`{Settings.variable(name)}`" in readme, name


def test_settings_given_by_their_variable_names_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETQ_REDIS_URL", "redis://127.0.0.1:2/0")  # this process's own

    settings = Settings.model_validate(
        {"STACKONE_API_KEY": "sk-child", "TICKETQ_REDIS_URL": "redis://127.0.0.1:1/0", "HOME": "/"}
    )

    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert Settings(TICKETQ_MAX_ATTEMPTS=5).max_attempts == 5
    assert settings.stackone_api_key is not None
    assert settings.stackone_api_key.get_secret_value() == "sk-child"


# --- settings that cannot work are refused at start-up, naming the variable ---------------


def problems(**values: Any) -> str:
    """What ``describe_settings_error`` says about these values, which must be refused."""
    with pytest.raises(ValidationError) as info:
        Settings.model_validate(values)
    return describe_settings_error(info.value)


def test_an_empty_api_key_is_refused_naming_the_variable() -> None:
    assert problems(STACKONE_API_KEY="") == "STACKONE_API_KEY: must not be empty when set"
    assert problems(STACKONE_API_KEY="  ").startswith("STACKONE_API_KEY: ")


@pytest.mark.parametrize(
    "url",
    [
        "api.stackone.com",
        "ftp://api.stackone.com",
        "https://",
        "https://api.stackone.com:99999",
        "https://api.stackone.com:port",
        "https://api.stackone .com",
        "https://api.stackone.com/?x=1",
        "https://api.stackone.com/#top",
        "https://user:pw@api.stackone.com",
        "https://[::1",
        "https://ex%41mple.com",
    ],
)
def test_a_base_url_that_cannot_work_is_refused(url: str) -> None:
    assert problems(STACKONE_BASE_URL=url) == (
        "STACKONE_BASE_URL: must be an http(s) URL with a host, like https://api.stackone.com "
        "(an optional port and path; no user, query or fragment)"
    )


@pytest.mark.parametrize("url", ["http://api.stackone.com", "http://10.0.0.5:8080"])
def test_plain_http_to_a_host_that_is_not_local_is_refused(url: str) -> None:
    assert problems(STACKONE_BASE_URL=url) == (
        "STACKONE_BASE_URL: must use https:// (http:// only for 127.0.0.1, ::1 or localhost: "
        "the API key would cross the network in clear text)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://api.stackone.com",
        "https://api.stackone.com/",
        "https://eu.proxy.example:8443/stackone",
        "http://127.0.0.1:8080",
        "http://localhost:1234/",
        "http://[::1]:9000",
    ],
)
def test_https_base_urls_and_plain_http_to_this_host_are_taken(url: str) -> None:
    assert Settings(stackone_base_url=url).stackone_base_url == url


def test_plain_http_to_another_host_is_taken_only_when_explicitly_allowed() -> None:
    settings = Settings.model_validate(
        {"STACKONE_BASE_URL": "http://fake-api:8080", "TICKETQ_INSECURE_HTTP": "true"}
    )
    assert settings.stackone_base_url == "http://fake-api:8080"


@pytest.mark.parametrize(
    "url", ["foo://x", "http://127.0.0.1:6379", "127.0.0.1:6379", "", "redis:x", "redis://[::1"]
)
def test_a_redis_url_of_an_unknown_scheme_is_refused(url: str) -> None:
    assert problems(TICKETQ_REDIS_URL=url) == (
        "TICKETQ_REDIS_URL: must start with redis://, rediss:// or unix://"
    )


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis.example:6380/1", "unix:///tmp/r.sock"]
)
def test_redis_urls_of_every_known_scheme_are_taken(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


def test_a_settings_error_names_each_variable_and_rule_in_one_line_never_a_value() -> None:
    secret = "sk-adversarial-secret"

    said = problems(
        STACKONE_API_KEY=secret,
        TICKETQ_REDIS_URL="foo://:hunter2@x",
        TICKETQ_MAX_ATTEMPTS="many",
        TICKETQ_CONNECT_TIMEOUT="-1",
        TICKETQ_RATE_LIMIT="fast",
    )

    assert said.split("; ") == [
        "TICKETQ_REDIS_URL: must start with redis://, rediss:// or unix://",
        "TICKETQ_CONNECT_TIMEOUT: Input should be greater than 0",
        "TICKETQ_MAX_ATTEMPTS: Input should be a valid integer, unable to parse string as an "
        "integer",
        "TICKETQ_RATE_LIMIT: must be like 1000/min or 50/s",
    ]
    assert "\n" not in said
    assert "hunter2" not in said and "many" not in said and "fast" not in said


def test_a_rule_across_settings_is_said_without_a_variable_prefix_and_without_the_key() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(stackone_api_key="sk-adversarial", visibility_timeout=120, read_timeout=60)

    said = describe_settings_error(info.value)

    assert said.startswith("TICKETQ_VISIBILITY_TIMEOUT (120s) must exceed")
    assert "sk-adversarial" not in said + str(info.value)


def test_the_raw_validation_error_shows_no_input_either() -> None:
    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"STACKONE_API_KEY": "", "TICKETQ_REDIS_URL": "foo://:hunter2@x"})
    assert "hunter2" not in str(info.value) and "input_value" not in str(info.value)


# --- secrets in reprs ----------------------------------------------------------------------


def test_the_redis_password_is_masked_in_repr_and_str_but_used_to_connect() -> None:
    url = "redis://:hunter2@redis.example:6379/0"

    settings = Settings(redis_url=url)

    for shown in (repr(settings), str(settings)):
        assert "hunter2" not in shown
        assert "redis://:***@redis.example:6379/0" in shown
    assert settings.redis_url == url  # what connect() and create_app() are given


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:hunter2@h:1/0", "redis://user:***@h:1/0"),
        ("rediss://:hunter2@h/0", "rediss://:***@h/0"),
        ("unix://:hunter2@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
        ("unix:///tmp/r.sock?password=hunter2&db=1", "unix:///tmp/r.sock?password=***&db=1"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("redis://:hunter2@[::1", "***"),
    ],
)
def test_redacted_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


# --- values that broke arithmetic, Redis or the URL parser are refused the same way --------

FLOAT_SETTINGS = [
    Settings.variable(name)
    for name, field in Settings.model_fields.items()
    if field.annotation is float
]
# Durations that reach Redis (PX, EXPIRE, scores) or a sum: bounded so they cannot overflow.
LONGEST_SECONDS = 10 * 365 * 24 * 3600  # ten years
DURATION_SETTINGS = [*FLOAT_SETTINGS, "TICKETQ_SUCCEEDED_TTL", "TICKETQ_VISIBILITY_TIMEOUT"]


@pytest.mark.parametrize("variable", FLOAT_SETTINGS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity", "1e400"])
def test_a_float_setting_that_is_not_finite_is_refused_naming_the_variable(
    variable: str, value: str
) -> None:
    assert problems(**{variable: value}) == f"{variable}: Input should be a finite number"


def test_the_float_settings_are_the_ones_that_broke() -> None:
    assert {
        "TICKETQ_CONNECT_TIMEOUT",
        "TICKETQ_READ_TIMEOUT",
        "TICKETQ_INPROCESS_MAX_DELAY",
        "TICKETQ_AUTH_PAUSE",
        "TICKETQ_RETRY_FOR",
        "TICKETQ_BACKOFF_MAX",
    } <= set(FLOAT_SETTINGS)


@pytest.mark.parametrize("variable", DURATION_SETTINGS)
@pytest.mark.parametrize("value", [str(10**12), str(10**20)])
def test_a_duration_too_long_for_redis_is_refused_naming_the_variable(
    variable: str, value: str
) -> None:
    assert problems(**{variable: value}) == (
        f"{variable}: Input should be less than or equal to {LONGEST_SECONDS}"
    )


def test_the_longest_durations_are_taken_and_fit_redis_in_milliseconds() -> None:
    settings = Settings.model_validate(
        {name: str(LONGEST_SECONDS) for name in DURATION_SETTINGS}
        | {"TICKETQ_CONNECT_TIMEOUT": "5", "TICKETQ_READ_TIMEOUT": "75"}
        | {"TICKETQ_INPROCESS_MAX_DELAY": "5"}
    )
    assert settings.succeeded_ttl == LONGEST_SECONDS
    assert settings.lease_seconds == 90
    assert (2 * LONGEST_SECONDS + 5) * 1000 < 2**53  # exact in a Lua number, far inside EXPIRE


REDIS_URL_RULE = (
    "must be a Redis URL redis-py can use: a port from 1 to 65535, a database number "
    "(/0, /1, ...) and only known ?options with valid values"
)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@127.0.0.1:99999/0",
        "redis://127.0.0.1:abc/0",
        "redis://127.0.0.1:0/0",
        "redis://127.0.0.1:6379/0?socket_timeout=abc",
        "redis://127.0.0.1:6379/0?ssl_cert_reqs=bogus",
        "redis://127.0.0.1:6379/0?password=hunter2&bogus=1",
        "redis://127.0.0.1:6379/0?protocol=9",
        "redis://127.0.0.1:6379/0?db=abc",
        "redis://:hunter2@127.0.0.1:6379/abc",
        "redis://127.0.0.1:6379/-1",
        "redis://127.0.0.1:6379/ 1",
        "redis://127.0.0.1:6379/1/2",
        "redis://127.0.0.1:6379/\N{ARABIC-INDIC DIGIT THREE}",
        "rediss://127.0.0.1:6379/0?ssl_cert_reqs=bogus",
        "unix:///tmp/r.sock?db=x",
    ],
)
def test_a_redis_url_that_redis_py_cannot_use_is_refused_without_showing_it(url: str) -> None:
    said = problems(TICKETQ_REDIS_URL=url)

    assert said == f"TICKETQ_REDIS_URL: {REDIS_URL_RULE}"
    assert "hunter2" not in said and "127.0.0.1" not in said


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://user:pw@redis.example/15",
        "redis://[::1]:6379/0?socket_timeout=2&health_check_interval=10",
        "rediss://redis.example:6380/0?ssl_cert_reqs=required",
        "unix:///tmp/r.sock?db=2",
    ],
)
def test_redis_urls_redis_py_can_use_are_taken(url: str) -> None:
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "rate", ["\uff11\uff10/s", "1\u0660/min", "\u0661/s", "1" + "0" * 400 + "/s", "2000000000/s"]
)
def test_a_rate_limit_of_digits_that_are_not_ascii_or_too_many_requests_is_refused(
    rate: str,
) -> None:
    assert problems(TICKETQ_RATE_LIMIT=rate) == "TICKETQ_RATE_LIMIT: must be like 1000/min or 50/s"


# --- web tokens ------------------------------------------------------------------------


def test_web_tokens_are_read_as_named_entries_with_their_scopes() -> None:
    settings = Settings.model_validate(
        {"TICKETQ_WEB_TOKENS": "ops:admin:a" + "x" * 20 + ", intake:write:b" + "y" * 20}
    )

    entries = settings.web_token_entries
    assert [(e.name, e.scope) for e in entries] == [("ops", Scope.ADMIN), ("intake", Scope.WRITE)]
    assert entries[1].token.get_secret_value() == "b" + "y" * 20
    assert Scope.ADMIN.allows(Scope.WRITE) and not Scope.READ.allows(Scope.WRITE)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("ops:owner:" + "s3cret-token-" * 2, "entry 1: the scope must be read, write or admin"),
        ("ops:read:s3cret", "entry 1: the token must be at least 16 printable characters"),
        ("s3cret-token-s3cret-token", "entry 1: the scope must be read, write or admin"),
        ("a:read:" + "s3cret-token-" * 2 + " a:admin:" + "x" * 16, "entry 2: its name is given"),
        ("bad/name:read:" + "s3cret-token-" * 2, "entry 1 must be name:scope:token"),
    ],
)
def test_a_bad_web_token_entry_is_named_by_its_number_never_by_its_text(
    given: str, said: str
) -> None:
    message = problems(TICKETQ_WEB_TOKENS=given)

    assert message.startswith("TICKETQ_WEB_TOKENS: ")
    assert said in message
    assert "s3cret" not in message


@pytest.mark.parametrize("given", ["s3cret", "s3cret-token\t", " " * 20])
def test_a_guessable_metrics_token_is_refused_as_a_web_token_is_never_echoed(given: str) -> None:
    message = problems(TICKETQ_METRICS_TOKEN=given)

    assert message.startswith("TICKETQ_METRICS_TOKEN: ")
    assert "at least 16 printable characters" in message
    assert "s3cret" not in message
