"""One asyncio event loop per worker process, in its own thread, for every HTTP request.

Celery's threads run deliveries; each hands the requests of its batch to this loop and
waits for them, so fifty tickets of a bulk message are fifty concurrent requests on one
aiohttp connection pool rather than fifty threads blocked on sockets.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoop:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ticketq-http", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for its result (from any other thread)."""
        return self.submit(coroutine).result()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Start ``coroutine`` on the loop; its result comes in the future returned."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)
