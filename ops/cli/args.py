"""Command-line text arguments must be UTF-8: Python hands over other bytes as lone
surrogates (``\\udcff``), which no Redis key, JSON text or terminal line can hold. Every
command checks its text arguments here first, and refuses one that is not UTF-8 in one line
naming it (exit 2), before it can crash deeper down."""

from __future__ import annotations

from collections.abc import Iterable

from ops.cli.console import fail


def utf8(**arguments: str | Iterable[str] | None) -> None:
    """Each argument, by its name on the command line (``ref`` for ``--ref``, ``JOB_ID`` for a
    positional one), must be valid UTF-8 text; a list is checked item by item."""
    for name, value in arguments.items():
        values = [value] if isinstance(value, str) else list(value or ())
        for text in values:
            try:
                text.encode()
            except UnicodeEncodeError:
                shown = name if name.isupper() else "--" + name.replace("_", "-")
                raise fail(f"{shown} is not valid UTF-8") from None
