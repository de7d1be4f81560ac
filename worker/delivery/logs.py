"""The worker's log as JSON (``TICKETQ_LOG_FORMAT=json``): one object per line, for a log
pipeline to read without parsing text.

Every line has ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; a line
whose message has fields of its own (an ``Attempt``: ``log_fields()``) has them as keys
too, and a line with a traceback has it as ``exception``. Celery's own lines take the same
form: the worker puts this formatter on the handlers Celery sets up
(``worker/delivery/task.py``), and ``ticketq worker`` logs JSON before Celery sets up
its logging, Python's warnings included (Celery's notice about running as root comes
then). One line stays text: the notice Celery prints straight to standard output when
told to shut down (``worker: Warm shutdown (MainProcess)``). Non-ASCII is escaped, so no
control character, line separator or bidi override from outside text reaches the log as it is.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "json_from_start", "use_json"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record.msg, "log_fields", None)
        if callable(fields):
            entry.update(fields())
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def use_json(logger: logging.Logger) -> None:
    """Every handler of ``logger`` writes JSON lines."""
    formatter = JsonFormatter()
    for handler in logger.handlers:
        handler.setFormatter(formatter)


def json_from_start() -> None:
    """JSON lines from now on, before Celery sets up its own handlers (which it then
    replaces this one with), and Python's warnings as log lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
