"""The broker: kombu's Redis transport with its race mended, under a URL that says redis://
(Celery's logs and Flower read the scheme; Flower finds its broker by it)."""

from __future__ import annotations

import ssl
from types import SimpleNamespace

import pytest
import redis
from flower.utils.broker import Broker, Redis

from ops.redis_server import RedisServer
from worker.queue.app import create_app
from worker.queue.broker import Channel, Transport
from worker.settings import Settings

URL = "redis://:hunter2@127.0.0.1:6390/3"


def test_the_broker_url_celery_and_flower_see_says_redis_while_the_mended_transport_is_used() -> (
    None
):
    app = create_app(Settings(redis_url=URL))

    for connection in (app.connection_for_write(), app.connection_for_read()):
        with connection:
            assert connection.as_uri() == "redis://:**@127.0.0.1:6390/3"
            assert connection.as_uri(include_password=True) == URL
            assert connection.get_transport_cls() is Transport
            with connection.clone() as clone:  # a reconnect's copy keeps the mended transport
                assert clone.get_transport_cls() is Transport


def test_flower_finds_a_redis_broker_behind_the_apps_url() -> None:
    app = create_app(Settings(redis_url=URL))
    with app.connection() as connection:
        broker = Broker(connection.as_uri(include_password=True))

    assert isinstance(broker, Redis)
    assert (broker.host, broker.port, broker.vhost) == ("127.0.0.1", 6390, 3)


def test_a_channel_whose_connection_is_gone_raises_a_connection_error_celery_recovers_from() -> (
    None
):
    channel = Channel.__new__(Channel)  # as kombu leaves it once the connection is torn down
    channel.connection = SimpleNamespace(client=None)

    with pytest.raises(redis.exceptions.ConnectionError):
        channel._connparams()
    assert redis.exceptions.ConnectionError in Transport.connection_errors


@pytest.mark.parametrize(
    ("url", "checks"),
    [
        ("rediss://:hunter2@127.0.0.1:6390/3", ssl.CERT_REQUIRED),
        ("rediss://127.0.0.1:6390/3?ssl_cert_reqs=none", ssl.CERT_NONE),
    ],
)
def test_a_rediss_broker_connects_over_tls_checking_the_certificate_as_the_job_store_does(
    url: str, checks: ssl.VerifyMode
) -> None:
    app = create_app(Settings(redis_url=url))

    with app.connection_for_write() as connection:
        assert connection.ssl == {"ssl_cert_reqs": checks}
        assert connection.get_transport_cls() is Transport


def test_a_plain_redis_broker_asks_for_no_tls() -> None:
    with create_app(Settings(redis_url=URL)).connection_for_write() as connection:
        assert not connection.ssl


def test_a_channel_sends_its_commands_through_one_client_for_as_long_as_its_pool_lasts(
    redis_server: RedisServer,
) -> None:
    # kombu built a redis-py client for every put, ack and event (about 0.14 ms each here):
    # a client is a handle on the channel's pool, so one serves every command.
    app = create_app(Settings(redis_url=redis_server.url))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        channel.basic_publish(channel.prepare_message("x"), exchange="", routing_key="q")
        assert channel.client.llen("q") == 1  # it still sends

        channel._disconnect_pools()  # after a fork or a lost connection: a new pool
        with channel.conn_or_acquire() as after:
            assert after is not first
            assert after.connection_pool is channel.pool
            assert after.llen("q") == 1
