"""The web service's app: one FastAPI application, built from the settings.

All its state is in Redis (jobs, batches, sessions), so any number of processes may serve
it behind a load balancer. Its parts join here: the intake and reads under ``/v1``, the
dashboard at ``/``, the fleet's metrics at ``/metrics``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ops.web import actions, api, dashboard
from ops.web.auth import TokenBook, local_only
from ops.web.body import add_body_schemas
from ops.web.errors import install_error_handlers
from ops.web.metrics import router as metrics_router
from producers.client import Producer
from worker.queue.app import create_app as create_celery
from worker.settings import Settings, ticketq_version
from worker.store import connect


class NoSniff:
    """Every answer says ``X-Content-Type-Options: nosniff``, JSON and errors included, so
    no browser reads an answer holding outside text as a page or a script. Plain ASGI, so
    request bodies still stream to the caps unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_marked)


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; it connects to Redis when it starts serving."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = connect(settings, ride_out_restarts=False)
        # One producer per process: its publisher thread sends what the intake queued.
        app.state.producer = Producer(settings, ride_out_restarts=False)
        app.state.celery = create_celery(settings)  # replays send through it
        try:
            yield
        finally:
            app.state.producer.close()
            app.state.redis.close()

    app = FastAPI(
        title="ticketq",
        version=ticketq_version(),
        description="Ticket creation through StackOne, queued: intake, job status, batches.",
        lifespan=lifespan,
        # No Swagger UI or ReDoc: they load scripts from a CDN onto the dashboard's origin,
        # beside its session cookie. The document itself is at /openapi.json.
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(local_only)],  # without tokens: this host's pages only
    )
    app.state.settings = settings
    app.state.tokens = TokenBook.from_settings(settings)
    install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(actions.router)
    add_body_schemas(app)
    dashboard.install(app)
    app.include_router(metrics_router)
    app.add_middleware(NoSniff)
    return app
