"""The Celery app factory, configured with the lessons of running Celery on a Redis broker.

Producers and workers build the same app from their settings, so what a producer sends is
exactly what a worker expects. Nothing here runs at import: the producer builds its app
when it is made, the worker where it starts (``worker/delivery/task.py``), which also
registers the task; a producer sends by the task's name and needs no task object.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Queue

from worker.queue.broker import AMQP, TRANSPORT
from worker.settings import Settings
from worker.store.keys import QUEUES

TASK_NAME = "ticketq.run_jobs"
CERT_CHECKS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def broker_tls(redis_url: str) -> dict[str, Any] | None:
    """TLS for a ``rediss://`` broker, checking the server's certificate as the job store's
    redis-py client does (unless the URL's ``ssl_cert_reqs`` says otherwise): kombu's own
    default for ``rediss`` encrypts without checking who answers."""
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss":
        return None
    asked = parse_qs(parts.query).get("ssl_cert_reqs", ["required"])[-1].lower()
    return {"ssl_cert_reqs": CERT_CHECKS.get(asked, ssl.CERT_REQUIRED)}


def create_app(settings: Settings) -> Celery:
    app = Celery("ticketq", broker=settings.redis_url, amqp=AMQP)
    app.conf.update(
        # JSON only: pickle read from a shared Redis is remote code execution.
        task_serializer="json",
        accept_content=["json"],
        # A killed worker's task goes back to the queue instead of vanishing.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Must exceed the longest attempt plus the longest countdown (Settings checks it),
        # or Redis redelivers a message that is still being worked on.
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Look for a dead worker's unacknowledged messages every 5 s (kombu's default
            # is a scan every 100 s), so they come back soon after the visibility timeout.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            # interactive first: a worker drains it before looking at bulk
            "queue_order_strategy": "priority",
        },
        # kombu's Redis transport, minus a race that stops the consumer for good when the
        # connection drops; AMQP above keeps the URL redis:// (see worker/queue/broker.py).
        broker_transport=TRANSPORT,
        broker_use_ssl=broker_tls(settings.redis_url),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # The job record is the result store; Celery's backend would be a second copy.
        task_ignore_result=True,
        task_queues=[Queue(name) for name in QUEUES.values()],
        task_default_queue=QUEUES["interactive"],
        # A worker takes the next message only when a thread is free, so an interactive
        # message never queues inside a worker behind bulk ones it prefetched.
        worker_prefetch_multiplier=1,
        # Flower and `celery events` see each message a worker takes (received, started,
        # succeeded) and each worker's heartbeat: three PUBLISHes a message of up to 50
        # jobs. Not the producer's sent event: one more PUBLISH per message, in the
        # caller's process, for a queue wait the dashboard shows by job.
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
