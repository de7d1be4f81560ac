"""Child processes that ticketq starts for itself (stand-in API, workers), and stops again.

Each child runs in its own session with its output in a log file, so a test can kill it
with a real signal and a person can read what it said.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path


class ProcessFailed(RuntimeError):
    """A child exited or did not become ready; carries the tail of its log."""


class ManagedProcess:
    def __init__(self, name: str, args: list[str], log_path: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = dict(env)
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def ticketq(
        cls, name: str, command: list[str], log_path: Path, env: Mapping[str, str]
    ) -> ManagedProcess:
        """A ``ticketq`` sub-command run by this same interpreter (so the same venv)."""
        return cls(name, [sys.executable, "-m", "ops.cli", *command], log_path, env)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ProcessFailed(f"{self.name} was never started")
        return self._proc.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.is_running():
                raise ProcessFailed(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name} not {what} after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def wait_for_log(self, text: str, timeout: float) -> None:
        self.wait_until(lambda: text in self.log_text(), timeout, f"logging {text!r}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.is_running():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a Celery worker's warm shutdown), then SIGKILL if it does not go."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole session: a worker's pool children die with it."""
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
