"""A whole ticketq installation on this machine: Redis, the StackOne stand-in and workers.

``ticketq demo`` and the integration tests both run on this, so what the demo shows is
what the tests check: real processes talking over real sockets.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from ops.fakeapi_client import FakeApiOptions
from ops.processes import ManagedProcess, ProcessFailed
from ops.redis_server import RedisServer, free_port
from worker.settings import Settings


@dataclass
class StackConfig:
    run_dir: Path
    workers: int = 1
    worker_concurrency: int = 8
    redis_url: str | None = None  # an existing Redis to use; None starts a private one
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    fake_api: FakeApiOptions = field(default_factory=FakeApiOptions)
    settings_env: dict[str, str] = field(default_factory=dict)  # extra TICKETQ_* for workers
    worker_metrics: bool = False  # each worker serves its metrics on a port of its own


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.redis: RedisServer | None = None
        self.fake_api_port = free_port()
        self.fake_api: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.metrics_ports: dict[str, int] = {}  # worker name -> its TICKETQ_METRICS_PORT
        self._redis_url = config.redis_url

    @property
    def redis_url(self) -> str:
        if self._redis_url is None:
            raise RuntimeError("the stack has not started")
        return self._redis_url

    @property
    def fake_api_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_api_port}"

    def child_env(self) -> dict[str, str]:
        """The environment each child builds its Settings from; the key travels only here."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("TICKETQ_")}
        env.update(
            {
                "STACKONE_API_KEY": self.config.api_key,
                "STACKONE_BASE_URL": self.fake_api_url,
                "TICKETQ_REDIS_URL": self.redis_url,
                "TICKETQ_WORKER_CONCURRENCY": str(self.config.worker_concurrency),
                "PYTHONUNBUFFERED": "1",
                **self.config.settings_env,
            }
        )
        return env

    def settings(self) -> Settings:
        """Settings for a producer in this process, pointing at this stack."""
        return Settings.model_validate(self.child_env())

    def start(self) -> None:
        run_dir = self.config.run_dir
        if self._redis_url is None:
            self.redis = RedisServer(run_dir / "redis")
            self.redis.start()
            self._redis_url = self.redis.url
        self.start_fake_api()
        for _ in range(self.config.workers):
            self.start_worker()

    def start_fake_api(self, tries: int = 3) -> None:
        """Start the stand-in on a free port. A port found free can be taken before the
        stand-in binds it (an outgoing connection gets it): then a new port, a few times."""
        for _ in range(tries - 1):
            try:
                self._start_fake_api()
                return
            except ProcessFailed as exc:
                if "address already in use" not in str(exc):
                    raise
                self.fake_api_port = free_port()
        self._start_fake_api()

    def _start_fake_api(self) -> None:
        options = self.config.fake_api
        command = [
            "fake-api",
            "--port",
            str(self.fake_api_port),
            "--latency-ms",
            str(options.latency_ms),
            "--error-rate",
            str(options.error_rate),
            "--list-lag-ms",
            str(options.list_lag_ms),
            "--list-style",
            options.list_style,
        ]
        if options.rpm_limit is not None:
            command += ["--rpm", str(options.rpm_limit)]
        self.fake_api = ManagedProcess.ticketq(
            "fake-api", command, self.config.run_dir / "fake-api.log", self.child_env()
        )
        self.fake_api.start()
        self.fake_api.wait_until(self._fake_api_answers, timeout=20, what="answering")

    def start_worker(self) -> ManagedProcess:
        index = len(self.workers)
        env = self.child_env()
        name = f"worker-{index}"
        if self.config.worker_metrics:  # workers on one host need a port each
            self.metrics_ports[name] = free_port()
            env["TICKETQ_METRICS_PORT"] = str(self.metrics_ports[name])
        worker = ManagedProcess.ticketq(
            name,
            ["worker", "--hostname", f"w{index}-{secrets.token_hex(3)}@%h", "--loglevel", "INFO"],
            self.config.run_dir / f"{name}.log",
            env,
        )
        worker.start()
        worker.wait_for_log(" ready.", timeout=60)
        self.workers.append(worker)
        return worker

    def metrics_url(self, worker: ManagedProcess) -> str:
        """Where ``worker`` serves its metrics (``StackConfig.worker_metrics``)."""
        return f"http://127.0.0.1:{self.metrics_ports[worker.name]}/metrics"

    def _fake_api_answers(self) -> bool:
        try:
            return httpx.get(f"{self.fake_api_url}/_fake/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.fake_api is not None:
            self.fake_api.stop()
        if self.redis is not None:
            self.redis.stop()

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
