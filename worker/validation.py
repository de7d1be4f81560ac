"""Turn pydantic's validation errors into one line a person can act on.

Producers, the CLI and the worker all report bad input the same way: the path of the
offending field and what is wrong with it, never a traceback. The line is bounded: the
first ``MAX_ERRORS`` errors, then how many more (200,000 unknown fields would otherwise
print megabytes), each path and message cut to ``MAX_PART_CHARS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

MAX_ERRORS = 20
MAX_PART_CHARS = 200


Path = Callable[[tuple[int | str, ...]], str]  # an error's loc as the message names it


def dotted(loc: tuple[int | str, ...]) -> str:
    """``ticket.content.0.plain``: how producers, the CLI and the worker name a field."""
    return ".".join(str(part) for part in loc)


def describe_validation_error(exc: ValidationError, path: Path = dotted) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return describe_errors(errors, path)


def describe_errors(errors: Sequence[ErrorDetails], path: Path = dotted) -> str:
    """One line for pydantic's errors, each field named by ``path``."""
    parts = []
    for error in errors[:MAX_ERRORS]:
        where = path(tuple(error["loc"])) or "body"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{_cut(where)}: {_cut(message)}")
    return bounded(parts, len(errors))


def bounded(first: Sequence[str], total: int, what: str = "") -> str:
    """At most ``MAX_ERRORS`` of ``first`` joined on one line, then how many of ``total``
    were left out (``what`` names them, as in "and 9,980 more invalid tickets")."""
    shown = list(first[:MAX_ERRORS])
    if total > len(shown):
        shown.append(f"and {total - len(shown):,} more{what}")
    return "; ".join(shown)


def _cut(text: str) -> str:
    """At most ``MAX_PART_CHARS`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= MAX_PART_CHARS else text[: MAX_PART_CHARS - 1] + "…"
