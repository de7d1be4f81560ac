"""The private redis-server: own port, queue-safe config, survives kill -9 via AOF."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import ops.redis_server as redis_server_module
from ops.redis_server import (
    RedisServer,
    RedisServerError,
    free_port,
    redis_answers,
    redis_binary,
)

SYSTEM_REDIS_PORT = 6379


def _process_gone(pid: int) -> bool:
    """True when no process (not even a zombie) has this pid any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_aof_written(client: redis.Redis, timeout: float = 5.0) -> None:
    """Wait until Redis has written its AOF buffer to the file.

    What a kill -9 of the server can lose is what is still in that buffer, not what
    awaits fsync (the kernel keeps that). Redis writes before replying, except while a
    slow background fsync makes it postpone the write, so this is normally immediate.
    """
    deadline = time.monotonic() + timeout
    while client.info("persistence")["aof_buffer_length"] != 0:
        assert time.monotonic() < deadline, "AOF buffer not written within 5 s"
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
    try:
        yield c
    finally:
        c.close()


def test_redis_binary_is_an_executable() -> None:
    path = Path(redis_binary())
    assert path.name == "redis-server"
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert port != SYSTEM_REDIS_PORT
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_answers_ping_on_its_own_port(server: RedisServer, client: redis.Redis) -> None:
    assert server.port != SYSTEM_REDIS_PORT
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    assert redis_answers(server.url)
    assert client.ping() is True
    info = client.info("server")
    # The Redis that answers is the process we started, not some other server.
    assert info["process_id"] == server.pid
    assert info["tcp_port"] == server.port
    assert server.running


def test_config_is_queue_safe(server: RedisServer, client: redis.Redis) -> None:
    config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["save"] == ""
    assert config["bind"] == "127.0.0.1"
    assert config["protected-mode"] == "yes"
    assert Path(str(config["dir"])) == server.data_dir.resolve()
    assert Path(str(config["logfile"])) == server.log_path
    assert server.log_path.is_file()


def test_appendonly_can_be_switched_off(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r", appendonly=False) as srv:
        c = redis.Redis.from_url(srv.url, decode_responses=True)
        try:
            assert c.config_get("appendonly") == {"appendonly": "no"}
        finally:
            c.close()


def test_data_survives_kill_and_restart(server: RedisServer, client: redis.Redis) -> None:
    client.set("job:1", "accepted")
    client.hset("job:2", mapping={"state": "retrying", "attempts": "3"})
    client.rpush("queue", *[f"m{i}" for i in range(100)])
    # Production settings (everysec), no sleep for fsync: kill -9 kills the process, not
    # the kernel, so the written-but-unsynced AOF survives. Only wait for the write.
    _wait_aof_written(client)
    port, pid = server.port, server.pid
    assert pid is not None

    server.kill()

    assert _process_gone(pid)  # killed and reaped: no zombie either
    assert not server.running
    assert not redis_answers(server.url)

    server.restart()

    assert server.port == port
    assert server.pid != pid
    assert client.get("job:1") == "accepted"
    assert client.hgetall("job:2") == {"state": "retrying", "attempts": "3"}
    assert client.lrange("queue", 0, -1) == [f"m{i}" for i in range(100)]


def test_restart_of_a_running_server_stops_it_first(
    server: RedisServer, client: redis.Redis
) -> None:
    client.set("k", "v")
    old_pid = server.pid
    assert old_pid is not None
    server.restart()
    assert _process_gone(old_pid)
    assert client.get("k") == "v"  # graceful stop flushes the AOF


def test_stop_is_idempotent(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path / "r")
    srv.stop()  # never started
    srv.start()
    pid = srv.pid
    assert pid is not None
    srv.stop()
    assert _process_gone(pid)
    assert not redis_answers(srv.url)
    srv.stop()
    srv.kill()  # also a no-op once stopped
    assert srv.pid is None
    assert not srv.running


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "r") as srv:
        assert redis_answers(srv.url)
        pid = srv.pid
    assert pid is not None
    assert _process_gone(pid)
    assert not redis_answers(srv.url)


def test_start_twice_is_an_error(server: RedisServer) -> None:
    with pytest.raises(RedisServerError, match="already running"):
        server.start()


def test_taken_port_fails_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        srv = RedisServer(tmp_path / "r", port=port)
        with pytest.raises(RedisServerError, match=f"port {port}") as excinfo:
            srv.start(timeout=5)
        assert "Address already in use" in str(excinfo.value)
        assert not srv.running


def test_not_fooled_by_another_redis_on_the_port(server: RedisServer, tmp_path: Path) -> None:
    """A Redis that answers PING on our port but is not our process is not success."""
    intruder = RedisServer(tmp_path / "other", port=server.port)
    with pytest.raises(RedisServerError, match="Address already in use"):
        intruder.start(timeout=5)
    assert not intruder.running
    assert redis_answers(server.url)  # the first server is untouched


def test_auto_chosen_port_taken_meanwhile_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = redis_server_module.free_port
        monkeypatch.setattr(
            redis_server_module, "free_port", lambda: next(ports, None) or real_free_port()
        )
        with RedisServer(tmp_path / "r") as srv:
            assert srv.port != taken
            assert redis_answers(srv.url)


def test_redis_answers_is_false_when_nothing_listens() -> None:
    started = time.monotonic()
    assert redis_answers(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5) is False
    assert time.monotonic() - started < 2


def test_redis_answers_is_false_for_a_non_redis_peer() -> None:
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", 0))
        peer.listen()  # accepts, never answers
        port = peer.getsockname()[1]
        assert redis_answers(f"redis://127.0.0.1:{port}/0", timeout=0.3) is False
