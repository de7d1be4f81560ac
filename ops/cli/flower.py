"""``ticketq flower``: Celery's Flower on ticketq's own Celery app, so it reads the broker
the settings name (``TICKETQ_REDIS_URL``), through the transport the workers use, and
knows ticketq's queues. Arguments after the command go to Flower (``--port``,
``--basic-auth``, ...).

Flower listens on every address unless told; this listens on 127.0.0.1 unless an
``--address`` follows. Flower's API (``/api/...``) answers only with ``--basic-auth`` or
``--auth`` set, or ``FLOWER_UNAUTHENTICATED_API=true``: Flower's own rule.
"""

from __future__ import annotations

import importlib.util

import typer

from ops.cli.console import fail, load_settings

flower_app = typer.Typer()

# Before the user's arguments: the last --address given is the one Flower uses.
LOOPBACK = "--address=127.0.0.1"


@flower_app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Run Flower (Celery's monitor) on ticketq's broker, on 127.0.0.1:5555 unless "
    "--address/--port follow; extra arguments go to Flower.",
)
def flower(ctx: typer.Context) -> None:
    if importlib.util.find_spec("flower") is None:
        raise fail("Flower is not installed: pip install 'ticketq[flower]'")
    from worker.queue.app import create_app

    create_app(load_settings()).start(["flower", LOOPBACK, *ctx.args])
