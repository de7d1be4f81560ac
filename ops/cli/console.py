"""What every ``ticketq`` command shares: its consoles, and how it ends on an error.

A failure a user can cause ends in one line on stderr and a non-zero exit, never a
traceback; an unreachable Redis is said the same way by every command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


@contextmanager
def redis_errors() -> Iterator[None]:
    try:
        yield
    except redis.ConnectionError as exc:
        raise fail(f"cannot reach Redis at the configured TICKETQ_REDIS_URL: {exc}", 1) from None
    except redis.RedisError as exc:
        raise fail(f"Redis refused the request: {exc}", 1) from None


def wide_console(min_width: int) -> Console:
    """``out``, or, without a terminal (a pipe, CI logs), where rich assumes 80 columns, a
    console wide enough for a table of ids."""
    return out if out.is_terminal else Console(width=max(out.width, min_width))
