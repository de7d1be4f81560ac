"""Logs and metrics from a real worker: a stack of its own whose worker logs JSON and serves
its metrics on a port of its own; real jobs through the stand-in; then the worker's
``/metrics``, its log file and the web service's fleet ``/metrics`` read as an operator's
tools would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ops.fakeapi_client import FakeApiControl
from ops.stack import LocalStack, StackConfig
from ops.web.app import create_app
from producers.client import Producer
from tests.integration.support import FAST_RETRIES
from tests.unit.test_metrics import samples, value
from worker.contract import JobRecord, JobState
from worker.settings import Settings

pytestmark = pytest.mark.integration

ACCOUNT = "acct-observed"
READ_TOKEN = "reader-" + uuid.uuid4().hex
METRICS_TOKEN = "scraper-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        run_dir=tmp_path_factory.mktemp("observed"),
        worker_concurrency=4,
        worker_metrics=True,
        settings_env={**FAST_RETRIES, "TICKETQ_LOG_FORMAT": "json"},
    )
    with LocalStack(config) as stack:
        yield stack


@pytest.fixture(scope="module")
def finished(observed: LocalStack) -> dict[str, JobRecord]:
    """Two tickets created and one refused with a 422, by the observed worker."""
    control = FakeApiControl(observed.fake_api_url)
    refused = f"Refused {uuid.uuid4().hex[:8]}"
    control.script(refused, {"status": 422, "message": "Summary is required"})
    control.close()
    with Producer(observed.settings()) as producer:
        handles = {
            title: producer.submit(ACCOUNT, {"title": title}, ref=f"ref-{title}")
            for title in (refused, "Created one", "Created two")
        }
        return {title: handle.wait(timeout=30) for title, handle in handles.items()}


def log_entries(stack: LocalStack) -> list[dict[str, Any]]:
    """Every line of the worker's log, each parsed as the JSON object it must be."""
    text = Path(stack.workers[0].log_path).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_workers_metrics_port_serves_its_counters_after_real_jobs(
    observed: LocalStack, finished: dict[str, JobRecord]
) -> None:
    states = sorted(record.state for record in finished.values())
    assert states == [JobState.FAILED, JobState.SUCCEEDED, JobState.SUCCEEDED]

    text = httpx.get(observed.metrics_url(observed.workers[0]), timeout=5).text

    found = samples(text)
    assert value(found, "ticketq_attempts_total", outcome="succeeded", status_class="2xx") == 2
    assert value(found, "ticketq_attempts_total", outcome="failed", status_class="4xx") == 1
    assert value(found, "ticketq_stackone_latency_seconds_count") == 3
    assert value(found, "ticketq_retries_total", reason="server_error", where="in_delivery") == 0


def test_every_line_the_worker_logs_is_json_and_a_422_is_a_warning_naming_account_and_ref(
    observed: LocalStack, finished: dict[str, JobRecord]
) -> None:
    entries = log_entries(observed)

    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry["message"].endswith(" ready.") for entry in entries)  # Celery's own
    attempts = {entry["job"]: entry for entry in entries if entry["message"].startswith("attempt ")}
    refused = next(r for r in finished.values() if r.state == JobState.FAILED)
    line = attempts[refused.job_id]
    assert (line["level"], line["status"], line["outcome"]) == ("WARNING", 422, "failed")
    assert (line["account"], line["ref"], line["attempt"]) == (ACCOUNT, refused.ref, 1)
    assert line["error"] == "Summary is required" and line["latency_ms"] > 0
    created = [attempts[r.job_id] for r in finished.values() if r.state == JobState.SUCCEEDED]
    assert [(c["level"], c["status"], c["outcome"]) for c in created] == [
        ("INFO", 201, "succeeded")
    ] * 2


def test_the_web_services_metrics_need_a_token_and_show_the_fleet(
    observed: LocalStack, finished: dict[str, JobRecord]
) -> None:
    env = {
        **observed.child_env(),
        "TICKETQ_WEB_TOKENS": f"ops:read:{READ_TOKEN}",
        "TICKETQ_METRICS_TOKEN": METRICS_TOKEN,
    }
    settings = Settings.model_validate(env)
    with TestClient(create_app(settings)) as client:
        refused = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        by_reader = client.get("/metrics", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    assert refused.status_code == wrong.status_code == 401
    assert refused.json()["error"]["status"] == 401
    assert READ_TOKEN not in wrong.text and METRICS_TOKEN not in refused.text
    assert by_reader.status_code == scraped.status_code == 200
    found = samples(scraped.text)
    assert value(found, "ticketq_jobs", lane="interactive", state="succeeded") >= 2
    assert value(found, "ticketq_jobs", lane="interactive", state="failed") >= 1
    assert value(found, "ticketq_workers_alive") == 1
    assert value(found, "ticketq_rate_limit_per_minute") > 0
