"""kombu's Redis transport, with one race mended and one client per pool, behind a broker
URL that still says ``redis://``.

When the broker connection drops while messages are unacknowledged, Celery closes the
connection and kombu puts those messages back. If the connection was already torn down by
then (a task thread acking at that moment, in the threads pool), kombu reads its host
from ``None`` and raises ``AttributeError``, which Celery treats as unrecoverable: the
consumer stops for good and the process lingers without consuming. The chaos test of a
Redis restart found it. Raising the connection error that it is lets Celery reconnect;
the messages stay in kombu's unacked set in Redis and come back after the visibility
timeout, and their jobs' leases in the due index bring the jobs back sooner.

Naming the transport by its import path (``broker_transport``) would also make kombu write
the broker's URL as ``worker.queue.broker:Transport://...``: in the workers' logs, and to
Flower, which reads the URL's scheme to find the broker and so answered its Broker tab
with 404 and its queue lengths with "'redis' broker is not supported". kombu's connection
names a transport through ``resolve_aliases`` (it writes ``pyamqp`` as ``amqp``); the
app's connections (``AMQP.Connection``) add this transport to it as ``redis``, so every
URL Celery and Flower see says ``redis://`` while the mended transport is the one used.
"""

from __future__ import annotations

from typing import Any, ClassVar

import redis
from celery.app import amqp
from kombu import connection as kombu_connection
from kombu.transport import redis as kombu_redis

# What ``broker_transport`` names: kombu resolves "module:Class" itself.
TRANSPORT = "worker.queue.broker:Transport"


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    _shared: redis.Redis | None = None

    def _create_client(self, asynchronous: bool = False) -> redis.Redis:
        """One client for every command the channel sends while its pool lasts: kombu
        built a redis-py client for each put, ack and event (about 0.14 ms apiece here, a
        message's worth of them about 1 ms of a worker's CPU). A client is only a handle
        on the pool, safe to share between threads; a new pool (after a fork or a lost
        connection) gets a new one. The consumer's own client (``asynchronous``) is
        kombu's."""
        if asynchronous:
            own: redis.Redis = super()._create_client(asynchronous=True)
            return own
        shared = self._shared
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared = super()._create_client()
        return shared

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous)
        return params


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel


class Connection(kombu_connection.Connection):  # type: ignore[misc]
    """A broker connection whose URL says ``redis://`` for the mended transport (its
    ``clone`` keeps the transport itself: kombu resolves aliases only for display)."""

    resolve_aliases: ClassVar[dict[str, str]] = {
        **kombu_connection.resolve_aliases,
        TRANSPORT: "redis",
    }


class AMQP(amqp.AMQP):  # type: ignore[misc]
    """Celery's broker side of the app, opening every connection as ``Connection``."""

    Connection = Connection
    BrokerConnection = Connection
