"""Whether StackOne is failing for our API key, shared by every worker through Redis.

During an outage every request fails with a 5xx or a connection error. Left to their own
backoff, jobs would keep every worker thread sending into it (jobs x attempts) and each
job would spend its retry budget. Instead, once ``outage_after`` requests in a row failed
(any job, any worker), admission holds every request with the key (``Reason.OUTAGE``):
the jobs wait as ``retrying`` without spending attempts, and one request at a time probes
StackOne, first after the backoff base, then after twice the last pause, up to the backoff
cap. The first success, probe or not, ends the outage. Its start and its end are each said
once, by the worker that saw them.
"""

from __future__ import annotations

import logging

from worker.settings import Settings
from worker.store.limits import LimitStore
from worker.text import printable

__all__ = ["FAILURE_WINDOW", "OUTAGE_ENDED", "OUTAGE_STARTED", "KeyOutage"]

log = logging.getLogger("ticketq.worker")

# What the log says (operators and the chaos tests look for these).
OUTAGE_STARTED = "StackOne is failing for API key"
OUTAGE_ENDED = "StackOne works again for API key"
FAILURE_WINDOW = 60.0  # seconds: failures further apart than this are not "in a row"
LAST_ERROR_CHARS = 200  # of the last failure's message in the log line


class KeyOutage:
    def __init__(self, store: LimitStore, key_fingerprint: str, settings: Settings) -> None:
        self.fingerprint = key_fingerprint
        self._store = store  # the same key state the limiter admits by
        self._failures_in_a_row = settings.outage_after
        self._first_pause = settings.backoff_base
        self._longest_pause = settings.backoff_max
        self._seen_failure = False  # since this worker's last success

    def failed(self, probe: bool, message: str) -> None:
        """A request with the key failed with a 5xx or a connection error. A failed probe
        pauses the outage again, longer; any other failure counts towards starting one."""
        self._seen_failure = True
        if probe:
            pause = self._store.extend_outage(self._longest_pause)
            if pause is not None:
                log.info(
                    "StackOne still failing (%s); next probe in %.1fs",
                    printable(message[:LAST_ERROR_CHARS]),
                    pause,
                )
                return
        count = self._store.note_failure(FAILURE_WINDOW)
        if count >= self._failures_in_a_row and self._store.start_outage(self._first_pause):
            log.error(
                "%s %s: %d requests in a row failed (last: %s); every worker holds its "
                "requests, jobs wait unfailed, and one request at a time tests StackOne",
                OUTAGE_STARTED,
                self.fingerprint,
                count,
                printable(message[:LAST_ERROR_CHARS]),  # one line, no escape codes
            )

    def works(self, probe: bool) -> None:
        """A request with the key succeeded: if this worker saw failures, or the request was
        a probe, forget the failures in a row and end the outage, saying so once."""
        if self._seen_failure or probe:
            self._seen_failure = False
            if self._store.end_outage():
                log.warning("%s %s; sending resumes", OUTAGE_ENDED, self.fingerprint)
