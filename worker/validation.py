"""Turn pydantic's validation errors into one line a person can act on.

Producers, the CLI and the worker all report bad input the same way: the path of the
offending field and what is wrong with it, never a traceback.
"""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
