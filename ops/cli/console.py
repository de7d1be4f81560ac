"""What every ``ticketq`` command shares: its consoles, the settings, how outside text is
printed, and how a command ends on an error.

A failure a user can cause ends in one line on stderr and a non-zero exit, never a
traceback; an unreachable Redis and a bad setting are said the same way by every command.

Text that comes from outside (account ids, refs, body keys, file names, provider messages,
driver errors) goes through ``safe`` and nothing else: Rich would read ``[/x]`` in it as
markup (and crash, or make a link of ``[link=...]``), and a terminal would obey escape
sequences in it. Lines are printed unwrapped, so a log or a pipe gets one line per message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from producers.client import BrokerError, broker_errors
from worker.settings import Settings, describe_settings_error, get_settings
from worker.text import printable

out = Console()
err = Console(stderr=True)


def safe(text: object) -> Text:
    """Outside text as Rich shows it literally: no markup, control characters as escapes
    (``worker.text.printable``, which the worker's log uses too)."""
    return Text(printable(text))


def say(message: str, console: Console = out) -> None:
    """One line of plain text (outside text included), never wrapped."""
    console.print(safe(message), soft_wrap=True)


def print_json(data: object) -> None:
    """JSON for a program to read: every non-ASCII or control character as a ``\\u`` escape,
    so the output is the same data and safe on a terminal."""
    out.print_json(json.dumps(data), ensure_ascii=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(Text.assemble(("error:", "red"), " ", safe(message)), soft_wrap=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    """The process's settings; a bad variable ends the command with one line naming it."""
    try:
        return get_settings()
    except ValidationError as exc:
        raise fail(describe_settings_error(exc)) from None


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis failing, through the store or the producer, as one line: the producer's words."""
    try:
        with broker_errors():
            yield
    except BrokerError as exc:
        raise fail(str(exc), 1) from None


def wide_console(min_width: int) -> Console:
    """``out``, or, without a terminal (a pipe, CI logs), where rich assumes 80 columns, a
    console wide enough for a table of ids."""
    return out if out.is_terminal else Console(width=max(out.width, min_width))


def utc_time(moment: float | None) -> str:
    """A Unix time as people read it, in UTC; "" for none."""
    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
