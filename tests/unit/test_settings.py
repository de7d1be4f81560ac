"""Settings: one object, read from the environment, refusing combinations that lose jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.settings import Settings

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
