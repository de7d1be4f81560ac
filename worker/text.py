"""Outside text made safe to show: one line, nothing a terminal or a log reader obeys.

Account ids, refs, provider messages and driver errors come from outside. Written as they
are, a newline in one forges a log line of its own and an escape sequence drives the
terminal that shows the log; ``printable`` is the one place that makes such text inert, for
the worker's log and for the CLI (``ops/cli/console.py``) alike.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 and C1 controls, DEL, line/paragraph separators and the bidirectional marks and
# overrides (which reorder what a terminal shows): shown as escapes, never as they are.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``str(text)`` on one line, each control character as a visible escape (``\\n``,
    ``\\x1b``, ``\\u202e``); everything else, backslashes included, as it is."""
    return _CONTROL.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
