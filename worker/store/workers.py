"""Which worker processes are alive, for the fleet's numbers (worker/store/stats.py).

Each worker process writes a heartbeat into one hash (``ticketq:workers``, a field per
process) from its scheduler thread, every scheduler interval: who it is and until when it
counts as alive. A clean stop removes it; a worker that dies simply stops beating, and its
entry is read as gone once its deadline passes (the next heartbeat of any worker deletes
it). One hash, so the snapshot reads every worker in one command.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import redis

from worker.store.keys import WORKERS

# A worker unheard of for this long (or three scheduler intervals, if longer) is gone.
WORKER_TIMEOUT = 15.0


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process says of itself; never its API key, only the key's fingerprint."""

    name: str  # Celery's node name, e.g. celery@host
    pid: int
    concurrency: int
    started_at: float  # Unix seconds
    key_fingerprint: str

    @property
    def field(self) -> str:
        """Its field in the hash: two processes given one node name stay apart."""
        return f"{self.name}/{self.pid}"


@dataclass(frozen=True)
class Beat:
    """A heartbeat as read back: the worker, when it was last heard of, until when it counts."""

    worker: WorkerInfo
    seen_at: float
    alive_until: float


class Heartbeat:
    """One worker process's heartbeat: ``beat`` every scheduler interval, ``stop`` once.

    ``stop`` may run on another thread (Celery's shutdown signal) while the scheduler
    thread beats: a beat after the stop would bring the entry back, so both hold a lock and
    no beat follows a stop."""

    def __init__(self, client: redis.Redis, worker: WorkerInfo, interval: float) -> None:
        self._redis = client
        self._worker = worker
        self._timeout = max(WORKER_TIMEOUT, 3 * interval)
        self._lock = threading.Lock()
        self._stopped = False

    def beat(self, now: float) -> None:
        """Say this worker is alive, and forget workers whose deadline has passed."""
        entry = {**asdict(self._worker), "seen_at": now, "alive_until": now + self._timeout}
        with self._lock:
            if self._stopped:
                return
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(WORKERS, self._worker.field, json.dumps(entry))
                # The hash outlives its last worker by one timeout, no longer.
                pipe.expire(WORKERS, int(self._timeout) + 1)
                pipe.hgetall(WORKERS)
                *_, raw = pipe.execute()
        gone = [name for name, beat in _decoded(raw).items() if beat.alive_until <= now]
        if gone:
            self._redis.hdel(WORKERS, *gone)

    def stop(self) -> None:
        """A clean stop: the worker is gone now, not at its deadline."""
        with self._lock:
            self._stopped = True
            self._redis.hdel(WORKERS, self._worker.field)


def alive(raw: Mapping[str, str], now: float) -> list[Beat]:
    """The workers alive at ``now`` among a ``WORKERS`` hash's entries, by name."""
    beats = [beat for beat in _decoded(raw).values() if beat.alive_until > now]
    return sorted(beats, key=lambda beat: (beat.worker.name, beat.worker.pid))


def _decoded(raw: Mapping[str, str]) -> dict[str, Beat]:
    """Each field's heartbeat; an entry this version cannot read counts as gone."""
    beats = {}
    for field, text in raw.items():
        try:
            entry = json.loads(text)
            seen_at, alive_until = float(entry.pop("seen_at")), float(entry.pop("alive_until"))
            beats[field] = Beat(WorkerInfo(**entry), seen_at, alive_until)
        except (ValueError, TypeError, KeyError, AttributeError):
            beats[field] = Beat(WorkerInfo("?", 0, 0, 0.0, ""), 0.0, 0.0)
    return beats
