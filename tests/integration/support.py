"""What several integration test files share: fast retry settings and running ``ticketq``."""

from __future__ import annotations

import subprocess
import sys

from ops.stack import LocalStack

# Retry timings short enough for tests; everything else is what a user gets.
FAST_RETRIES = {
    "TICKETQ_BACKOFF_BASE": "0.2",
    "TICKETQ_BACKOFF_MAX": "10",
    "TICKETQ_INPROCESS_MAX_DELAY": "1",
    "TICKETQ_MAX_ATTEMPTS": "4",
}


def ticketq(stack: LocalStack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The ``ticketq`` command as a user runs it, configured for ``stack``."""
    return subprocess.run(
        [sys.executable, "-m", "ops.cli.app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=stack.child_env(),
        timeout=60,
    )
