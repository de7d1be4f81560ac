"""Interactive job messages, sent from a background thread with group commit.

``Producer.submit`` returns once the job's record is stored; this thread sends its message.
An idle producer's job goes out on its own at once. A busy producer's jobs gather while the
previous send is on its way and go out together in the next message, a few ids each (as
Kafka's producer batches with ``linger.ms=0``). A worker pays Celery's per-message cost,
about ten times its cost per ticket, once per message rather than once per job, so busy
single-job producers get close to bulk throughput without anyone asking for a batch.

Nothing is lost if the process dies first: a job whose message was never confirmed sent
keeps its outbox entry, and a worker's scheduler sends it after ``TICKETQ_REQUEUE_AFTER``.
``close()``, which also runs at interpreter exit, sends what is left before returning.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("ticketq.producer")
MAX_IDS_PER_SEND = 500  # one send: its ids leave as messages of a few each, confirmed at once
RETRY_PAUSE = 0.5  # seconds between attempts while the broker cannot be reached


class Publisher:
    """Sends job ids through ``send`` (which must put them on the queue and confirm them)."""

    def __init__(self, send: Callable[[list[str]], None]) -> None:
        self._send = send
        self._lock = threading.Condition()
        self._pending: list[str] = []
        self._in_flight = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def put(self, job_id: str) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's thread and its pending ids stay the parent's.
                self._pending, self._in_flight, self._thread = [], 0, None
                self._pid = os.getpid()
            self._pending.append(job_id)
            self._closing = False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ticketq-publisher", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)
            self._lock.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every id put so far is on the queue; False if that took too long."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is pending and stop the thread; what is still unsent after ``timeout``
        stays in the outbox for the scheduler."""
        if not self.flush(timeout):
            with self._lock:
                unsent = len(self._pending) + self._in_flight
            log.warning(
                "%d job messages not sent within %gs; workers will send them later",
                unsent,
                timeout,
            )
        with self._lock:
            self._closing = True
            self._lock.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        atexit.unregister(self.close)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._lock.wait()
                if not self._pending:
                    return
                ids = self._pending[:MAX_IDS_PER_SEND]
                del self._pending[:MAX_IDS_PER_SEND]
                self._in_flight = len(ids)
            try:
                self._send(ids)
            except Exception as exc:  # the thread must outlive any broker failure
                with self._lock:
                    self._in_flight = 0  # back to pending, in the same step: counted once
                    if self._closing:  # close() gave up waiting: the outbox has them
                        self._pending.clear()
                        return
                    self._pending[:0] = ids
                log.warning("could not send %d job messages (%s); trying again", len(ids), exc)
                time.sleep(RETRY_PAUSE)
            finally:
                with self._lock:
                    self._in_flight = 0
                    self._lock.notify_all()
