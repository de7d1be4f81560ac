"""One real installation for the integration tests: a private redis-server on a free port,
the StackOne stand-in over HTTP, and a real ``celery worker`` process.

Retry timings are shortened so the suite runs in seconds; the worker otherwise runs with
the defaults a user gets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack, StackConfig
from producers.client import Producer
from tests.integration.support import FAST_RETRIES


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    run_dir: Path = tmp_path_factory.mktemp("stack")
    config = StackConfig(run_dir=run_dir, workers=1, settings_env=dict(FAST_RETRIES))
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="session")
def producer(stack: LocalStack) -> Producer:
    return Producer(stack.settings())


@pytest.fixture(scope="session")
def fake_api(stack: LocalStack) -> Iterator[FakeApiControl]:
    control = FakeApiControl(stack.fake_api_url)
    yield control
    control.close()


@pytest.fixture
def title() -> str:
    """A title no other test uses, so the stand-in's per-title counts are this test's own."""
    return f"Integration ticket {uuid.uuid4().hex[:10]}"
