"""``ticketq web``: the web service (intake, dashboard, metrics) on uvicorn.

Without ``TICKETQ_WEB_TOKENS`` nobody signs in, so it serves 127.0.0.1 only and says so;
asked for another address without tokens, it refuses in one line.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ops.cli.console import err, fail, load_settings, say

web_app = typer.Typer()


@web_app.command(help="Serve the web service: HTTP intake, the ops dashboard and /metrics.")
def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    import uvicorn

    from ops.web.app import create_app
    from ops.web.auth import is_loopback

    settings = load_settings()
    if not settings.web_token_entries:
        if not is_loopback(host):
            raise fail(
                f"--host {host}: TICKETQ_WEB_TOKENS is not set, so anyone reaching this "
                "address could act on every job; set tokens, or serve 127.0.0.1"
            )
        say("TICKETQ_WEB_TOKENS is not set: serving this host only, without sign-in", err)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
