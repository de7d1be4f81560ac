"""kombu's Redis transport, with one race mended.

When the broker connection drops while messages are unacknowledged, Celery closes the
connection and kombu puts those messages back. If the connection was already torn down by
then (a task thread acking at that moment, in the threads pool), kombu reads its host
from ``None`` and raises ``AttributeError``, which Celery treats as unrecoverable: the
consumer stops for good and the process lingers without consuming. The chaos test of a
Redis restart found it. Raising the connection error that it is lets Celery reconnect;
the messages stay in kombu's unacked set in Redis and come back after the visibility
timeout, and their jobs' leases in the due index bring the jobs back sooner.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

# What ``broker_transport`` names: kombu resolves "module:Class" itself.
TRANSPORT = "worker.queue.broker:Transport"


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous)
        return params


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = Channel
