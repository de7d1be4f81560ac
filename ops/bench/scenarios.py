"""The scenarios: each runs ticketq and the baseline, one after the other, on real processes.

One private ``redis-server`` serves the whole run (flushed between phases); every phase gets
a fresh StackOne stand-in and fresh worker processes, started and stopped here, so a phase
never inherits another's queues, limits or warm caches.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from ops.bench import baseline
from ops.bench.measure import CpuMeter, RssSampler, percentile
from ops.bench.report import Row
from ops.fakeapi_client import FakeApiControl, FakeApiOptions
from ops.processes import ManagedProcess
from ops.redis_server import RedisServer
from ops.stack import LocalStack, StackConfig
from producers.client import Producer
from worker.delivery.metrics import LATENCY_METRIC
from worker.queue.app import create_app
from worker.store.jobs import JobStore, record_fields, record_values
from worker.store.keys import QUEUES, job_key

ACCOUNT = "acct-bench"
BULK_CHUNK = 1_000
POLL_SECONDS = 0.2
CONTROL_ATTEMPTS = 3  # broadcasts to workers before a phase gives up
POLL_WINDOW = 2_000  # job states read per poll: the oldest pending ones
FINAL_BASELINE = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
OUT_OF_THE_WAY = {"TICKETQ_RATE_LIMIT": "1000000/min", "TICKETQ_ACCOUNT_CONCURRENCY": "0"}
SCENARIOS = ("single", "bulk", "limited", "enqueue", "import", "memory", "fair", "cap", "loaded")
BUSY_LOOP = "while True: pass"  # one process keeping one core busy
T = TypeVar("T")
BODY = "p99 checkout latency has been above 2 s for 10 minutes in eu-west-1. " * 3


def ticket(label: str, n: int) -> dict[str, Any]:
    """A realistic create body; the title is unique so the stand-in can count duplicates."""
    return {
        "title": f"bench {label} {n:07d}",
        "content": [{"plain": BODY}],
        "priority": {"value": "high"},
        "tags": ["bench", "checkout"],
    }


def tickets(label: str, count: int) -> list[dict[str, Any]]:
    return [ticket(label, n) for n in range(count)]


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def duplicates(created_by_title: dict[str, int]) -> int:
    return sum(count - 1 for count in created_by_title.values() if count > 1)


def epoch(value: object) -> float | None:
    """A Celery ``date_done`` (datetime or ISO string, naive meaning UTC) as Unix seconds."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return None


@dataclass(frozen=True)
class Options:
    run_dir: Path
    tickets: int  # single, bulk, enqueue
    import_tickets: int  # the rate-limited import
    soak: int
    repeat: int
    latency_ms: float = 20.0
    rpm: int = 1000
    workers: int = 2  # ticketq worker processes
    concurrency: int = 32  # threads per ticketq worker
    baseline_concurrency: int = 50
    interactive_every: float = 0.5
    log: Callable[[str], None] = print
    extra_env: dict[str, str] = field(default_factory=dict)  # every ticketq phase, last


@dataclass
class Progress:
    """Jobs finished so far; written by the waiting loop, read by the RSS sampler."""

    done: int = 0


@dataclass
class Meter:
    """CPU of the workers, the stand-in and Redis over one run, and the workers' RSS."""

    workers: Callable[[], list[int]]
    api_pid: int
    redis_pid: int
    progress: Progress = field(default_factory=Progress)
    own_cpu: float = 0.0  # this process (the producer, and the waiting loop): seconds

    def __post_init__(self) -> None:
        self._own_cpu = 0.0
        self.cpu = CpuMeter(
            {
                "worker": self.workers,
                "api": lambda: [self.api_pid],
                "redis": lambda: [self.redis_pid],
            }
        )
        self.rss = RssSampler(self.workers, progress=lambda: self.progress.done)

    def start(self) -> None:
        self.cpu.start()
        self.rss.start()
        self._own_cpu = time.process_time()

    def stop(self) -> None:
        self.own_cpu = time.process_time() - self._own_cpu
        self.cpu.stop()
        self.rss.stop()

    def fill(self, row: Row, per: int) -> Row:
        return replace(
            row,
            producer_cpu_ms=self.own_cpu * 1000 / per if per else math.nan,
            worker_cpu_ms=self.cpu.ms_per_item("worker", per),
            api_cpu_ms=self.cpu.ms_per_item("api", per),
            redis_cpu_ms=self.cpu.ms_per_item("redis", per),
            peak_rss_mb=self.rss.peak_kib / 1024,
        )


# --- the processes -------------------------------------------------------------------------


class Bench:
    """The private Redis every phase shares, and the phases' stacks."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.redis = RedisServer(options.run_dir / "redis")
        self._client: redis.Redis | None = None

    def __enter__(self) -> Bench:
        self.redis.start()
        self._client = redis.Redis.from_url(self.redis.url)
        baseline.configure(self.baseline_url)  # the producer side, in this process
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
        baseline.app.close()
        self.redis.stop()

    @property
    def client(self) -> redis.Redis:
        assert self._client is not None, "the bench has not started"
        return self._client

    @property
    def redis_pid(self) -> int:
        pid = self.redis.pid
        assert pid is not None, "redis-server is not running"
        return pid

    @property
    def baseline_url(self) -> str:
        """The baseline's broker and result backend: the same Redis, database 1."""
        return self.redis.url.rsplit("/", 1)[0] + "/1"

    def flush(self) -> None:
        self.client.flushall()

    def used_memory(self) -> int:
        time.sleep(0.2)
        return int(self.client.info("memory")["used_memory"])

    def fake_api(self, rpm_limit: int | None, latency_ms: float | None = None) -> FakeApiOptions:
        """The stand-in's options: the run's latency unless a scenario sets its own."""
        latency = self.options.latency_ms if latency_ms is None else latency_ms
        return FakeApiOptions(latency_ms=latency, rpm_limit=rpm_limit)

    @contextlib.contextmanager
    def ticketq(
        self,
        name: str,
        *,
        settings_env: dict[str, str],
        rpm_limit: int | None = None,
        workers: int | None = None,
        latency_ms: float | None = None,
        worker_metrics: bool = False,
    ) -> Iterator[TicketqPhase]:
        self.flush()
        config = StackConfig(
            run_dir=self.options.run_dir / name,
            workers=self.options.workers if workers is None else workers,
            worker_concurrency=self.options.concurrency,
            redis_url=self.redis.url,
            fake_api=self.fake_api(rpm_limit, latency_ms),
            settings_env={**settings_env, **self.options.extra_env},
            worker_metrics=worker_metrics,
        )
        with LocalStack(config) as stack:
            phase = TicketqPhase(self, stack)
            try:
                yield phase
            finally:
                phase.close()

    @contextlib.contextmanager
    def baseline(
        self,
        name: str,
        *,
        rpm_limit: int | None = None,
        start_worker: bool = True,
        latency_ms: float | None = None,
    ) -> Iterator[BaselinePhase]:
        self.flush()
        config = StackConfig(
            run_dir=self.options.run_dir / name,
            workers=0,
            redis_url=self.redis.url,
            fake_api=self.fake_api(rpm_limit, latency_ms),
        )
        with LocalStack(config) as stack:
            phase = BaselinePhase(self, stack, self.options.run_dir / name)
            try:
                if start_worker:
                    phase.start_worker()
                yield phase
            finally:
                phase.close()


class Requests(NamedTuple):
    """Create requests the workers timed: how many, and their seconds in all."""

    timed: int
    seconds: float

    def since(self, before: Requests) -> Requests:
        return Requests(self.timed - before.timed, self.seconds - before.seconds)

    @property
    def mean(self) -> float:
        """Seconds a request took on average, as the workers saw it (nan if none)."""
        return self.seconds / self.timed if self.timed else math.nan


class TicketqPhase:
    def __init__(self, bench: Bench, stack: LocalStack) -> None:
        self.bench = bench
        self.stack = stack
        self.producer = Producer(stack.settings())
        self.control = FakeApiControl(stack.fake_api_url)

    @property
    def store(self) -> JobStore:
        return self.producer.store

    def worker_pids(self) -> list[int]:
        return [worker.pid for worker in self.stack.workers if worker.is_running()]

    def meter(self) -> Meter:
        assert self.stack.fake_api is not None
        return Meter(self.worker_pids, self.stack.fake_api.pid, self.bench.redis_pid)

    def requests_seen(self) -> Requests:
        """The create requests the workers have timed so far, from their metrics (the
        phase must have started them with ``worker_metrics``)."""
        seen = Requests(0, 0.0)
        for worker in self.stack.workers:
            text = httpx.get(self.stack.metrics_url(worker), timeout=5).text
            for family in text_string_to_metric_families(text):
                if family.name != LATENCY_METRIC:
                    continue
                for sample in family.samples:
                    if sample.name == f"{LATENCY_METRIC}_count":
                        seen = Requests(seen.timed + int(sample.value), seen.seconds)
                    elif sample.name == f"{LATENCY_METRIC}_sum":
                        seen = Requests(seen.timed, seen.seconds + sample.value)
        return seen

    def submit_bulk(self, items: Sequence[dict[str, Any]], account: str = ACCOUNT) -> list[str]:
        ids: list[str] = []
        for chunk in chunks(items, BULK_CHUNK):
            ids += self.producer.submit_many(account, chunk).job_ids
        return ids

    def wait(self, ids: Sequence[str], timeout: float, progress: Progress) -> list[str]:
        """Wait until every job is final; returns those that were not by the deadline."""

        def finished(window: list[str]) -> dict[str, object]:
            states = self.store.states(window)
            return {i: s for i, s in zip(window, states, strict=True) if s and s.is_final}

        done = wait_windowed(ids, finished, timeout, progress)
        return [job_id for job_id in ids if job_id not in done]

    def times(self, ids: Sequence[str]) -> list[tuple[str, float, float | None]]:
        """(state, created_at, finished_at) of each job, read in pipelined batches."""
        out: list[tuple[str, float, float | None]] = []
        names = ("state", "created_at", "finished_at")
        for chunk in chunks(ids, 5_000):
            with self.store.redis.pipeline(transaction=False) as pipe:
                for job_id in chunk:
                    pipe.hmget(job_key(job_id), *record_fields(names))
                rows = [record_values(names, row) for row in pipe.execute()]
                for state, created, finished in rows:
                    out.append(
                        (
                            state or "missing",
                            float(created) if created else math.nan,
                            float(finished) if finished else None,
                        )
                    )
        return out

    def close(self) -> None:
        self.control.close()


class BaselinePhase:
    def __init__(self, bench: Bench, stack: LocalStack, run_dir: Path) -> None:
        self.bench = bench
        self.stack = stack
        self.run_dir = run_dir
        self.app: Celery = baseline.app
        self.task = baseline.create_ticket
        self.control = FakeApiControl(stack.fake_api_url)
        self.worker: ManagedProcess | None = None

    def start_worker(self) -> None:
        env = self.stack.child_env()
        env.update(
            {
                baseline.REDIS_URL_ENV: self.bench.baseline_url,
                baseline.API_URL_ENV: self.stack.fake_api_url,
                baseline.API_KEY_ENV: self.stack.config.api_key,
            }
        )
        self.worker = ManagedProcess(
            "baseline-worker",
            [
                *celery_command(),
                "-A",
                "ops.bench.baseline",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(self.bench.options.baseline_concurrency),
                "--loglevel",
                "INFO",
                "--hostname",
                f"baseline-{time.monotonic_ns()}@%h",
            ],
            self.run_dir / "baseline-worker.log",
            env,
        )
        self.worker.start()
        self.worker.wait_for_log(" ready.", timeout=60)

    def worker_pids(self) -> list[int]:
        return [self.worker.pid] if self.worker is not None and self.worker.is_running() else []

    def meter(self) -> Meter:
        assert self.stack.fake_api is not None
        return Meter(self.worker_pids, self.stack.fake_api.pid, self.bench.redis_pid)

    def submit(
        self,
        items: Sequence[dict[str, Any]],
        submitted: dict[str, float],
        account: str = ACCOUNT,
    ) -> list[str]:
        ids = []
        for item in items:
            started = time.time()
            task_id: str = self.task.delay(account, item).id
            submitted[task_id] = started
            ids.append(task_id)
        return ids

    def wait(
        self, ids: Sequence[str], timeout: float, progress: Progress
    ) -> dict[str, dict[str, Any]]:
        """Final result metas by task id (read from the result backend) as they arrive."""
        backend = self.app.backend

        def finished(window: list[str]) -> dict[str, dict[str, Any]]:
            raws = backend.client.mget([backend.get_key_for_task(task_id) for task_id in window])
            metas = (backend.decode_result(raw) if raw else None for raw in raws)
            return {
                task_id: meta
                for task_id, meta in zip(window, metas, strict=True)
                if meta is not None and meta.get("status") in FINAL_BASELINE
            }

        return wait_windowed(ids, finished, timeout, progress)

    def close(self) -> None:
        try:
            if self.worker is not None:
                self.worker.stop()
        finally:
            self.control.close()


def wait_windowed(
    ids: Sequence[str],
    finished: Callable[[list[str]], dict[str, T]],
    timeout: float,
    progress: Progress,
) -> dict[str, T]:
    """Poll the oldest ``POLL_WINDOW`` unfinished ids until all are finished or the time is
    up; ``finished`` returns what it found final in a window, by id."""
    deadline = time.monotonic() + timeout
    found: dict[str, T] = {}
    pending = list(ids)
    while pending:
        window = pending[:POLL_WINDOW]
        found |= finished(window)
        left = [item for item in window if item not in found]
        pending = left + pending[POLL_WINDOW:]
        progress.done = len(ids) - len(pending)
        if left:
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_SECONDS)
    return found


def celery_command() -> list[str]:
    import sys

    return [sys.executable, "-m", "celery"]


# --- outcomes -> rows ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What one system did with one batch of jobs: latencies and the time they spanned."""

    submitted: int
    latencies: list[float]  # of succeeded jobs, seconds
    first_submit: float
    last_done: float
    not_ok: int
    first_done: float = math.nan
    starts: list[float] = field(default_factory=list)  # submit time of each latency

    @property
    def succeeded(self) -> int:
        return len(self.latencies)

    @property
    def span(self) -> float:
        return max(self.last_done - self.first_submit, 1e-9)

    def rate(self) -> float:
        return self.succeeded / self.span if self.succeeded else 0.0


def ticketq_outcome(times: Sequence[tuple[str, float, float | None]]) -> Outcome:
    ok = [(created, done) for state, created, done in times if state == "succeeded" and done]
    latencies = [done - created for created, done in ok]
    created = [c for _, c, _ in times if not math.isnan(c)]
    finished = [d for _, _, d in times if d is not None]
    return Outcome(
        submitted=len(times),
        latencies=latencies,
        first_submit=min(created, default=math.nan),
        last_done=max(finished, default=math.nan),
        not_ok=sum(1 for state, _, _ in times if state != "succeeded"),
        first_done=min(finished, default=math.nan),
        starts=[created for created, _ in ok],
    )


def baseline_outcome(
    ids: Sequence[str], submitted: dict[str, float], metas: dict[str, dict[str, Any]]
) -> Outcome:
    latencies, done_times, starts = [], [], []
    for task_id in ids:
        meta = metas.get(task_id)
        if meta is None:
            continue
        done = epoch(meta.get("date_done"))
        if done is None and isinstance(meta.get("result"), dict):
            done = float(meta["result"].get("finished_at", math.nan))
        if done is None:
            continue
        done_times.append(done)
        if meta.get("status") == "SUCCESS":
            latencies.append(done - submitted[task_id])
            starts.append(submitted[task_id])
    return Outcome(
        submitted=len(ids),
        latencies=latencies,
        first_submit=min((submitted[i] for i in ids), default=math.nan),
        last_done=max(done_times, default=math.nan),
        not_ok=len(ids) - len(latencies),
        first_done=min(done_times, default=math.nan),
        starts=starts,
    )


def row(
    scenario: str,
    system: str,
    outcome: Outcome,
    stats: dict[str, Any],
    meter: Meter | None,
    notes: str = "",
) -> Row:
    result = Row(
        scenario=scenario,
        system=system,
        tickets=outcome.submitted,
        tickets_per_s=outcome.rate(),
        p50_s=percentile(outcome.latencies, 50),
        p99_s=percentile(outcome.latencies, 99),
        duplicates=duplicates(stats.get("created_by_title", {})),
        http_429=int(stats.get("by_status", {}).get("429", 0)),
        failed=outcome.not_ok,
        notes=notes,
    )
    return meter.fill(result, outcome.submitted) if meter is not None else result


def pct_of_limit(created: int, seconds: float, rpm: int) -> float:
    """Tickets created per minute over ``seconds``, as a percentage of ``rpm``."""
    if seconds <= 0 or rpm <= 0:
        return math.nan
    return 100 * created / (seconds / 60) / rpm


# --- scenarios: single and bulk ------------------------------------------------------------


def deadline(count: int) -> float:
    return 120 + count / 20


def throughput_ticketq(bench: Bench, scenario: str) -> list[Row]:
    """``single`` (Producer.submit, interactive lane) or ``bulk`` (submit_many)."""
    options = bench.options
    rows = []
    with bench.ticketq(f"{scenario}-ticketq", settings_env=dict(OUT_OF_THE_WAY)) as phase:
        for run in range(options.repeat):
            items = tickets(f"{scenario}-{run}", options.tickets)
            phase.control.reset()
            meter = phase.meter()
            meter.start()
            started = time.perf_counter()
            if scenario == "single":
                ids = [phase.producer.submit(ACCOUNT, item).job_id for item in items]
            else:
                ids = phase.submit_bulk(items)
            submit_rate = len(ids) / (time.perf_counter() - started)
            unfinished = phase.wait(ids, deadline(len(ids)), meter.progress)
            meter.stop()
            outcome = ticketq_outcome(phase.times(ids))
            notes = f"submitted at {submit_rate:,.0f}/s"
            if unfinished:
                notes += f"; {len(unfinished)} unfinished at the deadline"
            rows.append(row(scenario, "ticketq", outcome, phase.control.stats(), meter, notes))
            options.log(f"  ticketq {scenario} run {run + 1}: {rows[-1].tickets_per_s:,.0f}/s")
    return rows


def throughput_baseline(bench: Bench, scenario: str) -> list[Row]:
    """The baseline has no bulk notion: both scenarios are ``.delay()`` in a loop."""
    options = bench.options
    rows = []
    with bench.baseline(f"{scenario}-baseline") as phase:
        for run in range(options.repeat):
            items = tickets(f"{scenario}-{run}", options.tickets)
            phase.control.reset()
            meter = phase.meter()
            submitted: dict[str, float] = {}
            meter.start()
            started = time.perf_counter()
            ids = phase.submit(items, submitted)
            submit_rate = len(ids) / (time.perf_counter() - started)
            metas = phase.wait(ids, deadline(len(ids)), meter.progress)
            meter.stop()
            outcome = baseline_outcome(ids, submitted, metas)
            notes = f"submitted at {submit_rate:,.0f}/s"
            if len(metas) < len(ids):
                notes += f"; {len(ids) - len(metas)} unfinished at the deadline"
            rows.append(row(scenario, "baseline", outcome, phase.control.stats(), meter, notes))
            options.log(f"  baseline {scenario} run {run + 1}: {rows[-1].tickets_per_s:,.0f}/s")
    return rows


# --- scenario: the rate-limited import, and interactive latency during it -------------------


class Ticker(threading.Thread):
    """Calls ``submit(n)`` every ``interval`` seconds until stopped; keeps what it returns."""

    def __init__(self, submit: Callable[[int], str], interval: float) -> None:
        super().__init__(name="interactive-ticker", daemon=True)
        self._submit = submit
        self._interval = interval
        self._stop_event = threading.Event()
        self.ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        try:
            while not self._stop_event.wait(
                max(0.0, start + n * self._interval - time.monotonic())
            ):
                self.ids.append(self._submit(n))
                n += 1
        except BaseException as exc:  # reported by the scenario, not lost in a thread
            self.error = exc

    def stop(self) -> list[str]:
        self._stop_event.set()
        self.join()
        if self.error is not None:
            raise RuntimeError("the interactive submitter failed") from self.error
        return self.ids


def import_with_ticker(
    meter: Meter,
    submit_import: Callable[[], list[str]],
    submit_one: Callable[[int], str],
    wait_import: Callable[[list[str]], T],
    every: float,
) -> tuple[list[str], T, list[str]]:
    """The measuring frame both systems share: submit the import, then an interactive
    ticket every ``every`` seconds until the import is waited out. Returns the import's
    ids, what its wait returned, and the interactive ids."""
    meter.start()
    ids = submit_import()
    ticker = Ticker(submit_one, every)
    ticker.start()
    try:
        waited = wait_import(ids)
    finally:
        interactive_ids = ticker.stop()
    return ids, waited, interactive_ids


@contextlib.contextmanager
def busy_cpu(processes: int) -> Iterator[list[int]]:
    """``processes`` busy loops (at the bench's own nice level) for the length of the block:
    a competing load that keeps the cores busy, as a neighbour on a shared host does.
    Yields their pids; they are killed and reaped when the block ends."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(processes)]
    try:
        yield [loop.pid for loop in loops]
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()


def limited_ticketq(bench: Bench, busy: int = 0, suffix: str = "") -> list[Row]:
    """The rate-limited import with interactive tickets beside it; with ``busy`` busy loops
    running from the moment the stack is up (its rows' scenarios end in ``suffix``)."""
    options = bench.options
    settings_env = {"TICKETQ_RATE_LIMIT": f"{options.rpm}/min"}
    count = options.import_tickets
    with (
        bench.ticketq(
            f"limited-ticketq{busy or ''}", settings_env=settings_env, rpm_limit=options.rpm
        ) as p,
        busy_cpu(busy),
    ):
        interactive_producer = Producer(p.stack.settings())

        def submit_one(n: int) -> str:
            return interactive_producer.submit(ACCOUNT, ticket("interactive", n)).job_id

        meter = p.meter()
        expected = count / options.rpm * 60
        ids, unfinished, interactive_ids = import_with_ticker(
            meter,
            lambda: p.submit_bulk(tickets("import", count)),
            submit_one,
            lambda ids: p.wait(ids, 120 + 3 * expected, meter.progress),
            options.interactive_every,
        )
        unfinished += p.wait(interactive_ids, 60, Progress())
        meter.stop()
        stats = p.control.stats()
        bulk = ticketq_outcome(p.times(ids))
        quick = ticketq_outcome(p.times(interactive_ids))
    return _limited_rows(
        "ticketq", bulk, quick, stats, meter, options, len(unfinished), suffix, busy
    )


def limited_baseline(bench: Bench, busy: int = 0, suffix: str = "") -> list[Row]:
    options = bench.options
    count = options.import_tickets
    with (
        bench.baseline(f"limited-baseline{busy or ''}", rpm_limit=options.rpm) as p,
        busy_cpu(busy),
    ):
        submitted: dict[str, float] = {}

        def submit_one(n: int) -> str:
            started = time.time()
            task_id: str = baseline.create_ticket.delay(ACCOUNT, ticket("interactive", n)).id
            submitted[task_id] = started
            return task_id

        meter = p.meter()
        expected = count / options.rpm * 60
        ids, metas, interactive_ids = import_with_ticker(
            meter,
            lambda: p.submit(tickets("import", count), submitted),
            submit_one,
            lambda ids: p.wait(ids, 600 + 2 * expected, meter.progress),
            options.interactive_every,
        )
        metas.update(p.wait(interactive_ids, 300, Progress()))
        meter.stop()
        stats = p.control.stats()
        unfinished = len(ids) + len(interactive_ids) - len(metas)
        bulk = baseline_outcome(ids, submitted, metas)
        quick = baseline_outcome(interactive_ids, submitted, metas)
    return _limited_rows("baseline", bulk, quick, stats, meter, options, unfinished, suffix, busy)


def _limited_rows(
    system: str,
    bulk: Outcome,
    quick: Outcome,
    stats: dict[str, Any],
    meter: Meter,
    options: Options,
    unfinished: int,
    suffix: str = "",
    busy: int = 0,
) -> list[Row]:
    first = min(bulk.first_submit, quick.first_submit)
    last = max(x for x in (bulk.last_done, quick.last_done) if not math.isnan(x))
    created = int(stats.get("created", 0))
    all_jobs = Outcome(
        submitted=bulk.submitted + quick.submitted,
        latencies=bulk.latencies + quick.latencies,
        first_submit=first,
        last_done=last,
        not_ok=bulk.not_ok + quick.not_ok,
    )
    notes = f"{created:,} created in {last - first:,.0f} s, {stats.get('requests', 0):,} requests"
    if busy:
        notes += f"; {busy} busy loops kept the cores busy"
    if unfinished:
        notes += f"; {unfinished} unfinished at the deadline"
    import_row = row(f"limited import{suffix}", system, all_jobs, stats, meter, notes)
    import_row = replace(
        import_row,
        tickets=bulk.submitted,
        p50_s=percentile(bulk.latencies, 50),
        p99_s=percentile(bulk.latencies, 99),
        failed=bulk.not_ok,
        pct_limit=pct_of_limit(created, last - first, options.rpm),
    )
    interactive_row = Row(
        scenario=f"interactive{suffix}",
        system=system,
        tickets=quick.submitted,
        p50_s=percentile(quick.latencies, 50),
        p99_s=percentile(quick.latencies, 99),
        failed=quick.not_ok,
        notes=slow_notes(quick, first, options.interactive_every),
    )
    return [import_row, interactive_row]


def slow_notes(outcome: Outcome, start: float, every: float, limit: float = 2.0) -> str:
    """How many interactive tickets took longer than ``limit``, and when they were sent."""
    slow = sorted(
        (begun - start, latency)
        for begun, latency in zip(outcome.starts, outcome.latencies, strict=True)
        if latency > limit
    )
    text = f"one every {every:g} s during the import; {len(slow)} over {limit:g} s"
    if slow:
        text += f" (max {max(lat for _, lat in slow):.1f} s; sent at " + ", ".join(
            f"{offset:.0f}" for offset, _ in slow[:12]
        )
        text += (", ..." if len(slow) > 12 else "") + " s into the import)"
    return text


# --- scenario: enqueue speed from a JSONL file ---------------------------------------------


def write_jsonl(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for n in range(count):
            out.write(json.dumps(ticket("enqueue", n)) + "\n")
    return path


def enqueue_ticketq(bench: Bench, path: Path, count: int) -> Row:
    bench.flush()
    producer = Producer(_producer_settings(bench))

    def enqueue() -> None:
        with path.open() as lines:
            batch: list[dict[str, Any]] = []
            refs: list[str] = []
            for number, line in enumerate(lines, 1):
                batch.append(json.loads(line))
                refs.append(f"line-{number}")
                if len(batch) == BULK_CHUNK:
                    producer.submit_many(ACCOUNT, batch, refs=refs)
                    batch, refs = [], []
            if batch:
                producer.submit_many(ACCOUNT, batch, refs=refs)

    return _measure_enqueue(bench, "ticketq", count, "validated", enqueue)


def enqueue_baseline(bench: Bench, path: Path, count: int) -> Row:
    bench.flush()
    task = baseline.create_ticket

    def enqueue() -> None:
        with path.open() as lines:
            for line in lines:
                task.delay(ACCOUNT, json.loads(line))

    return _measure_enqueue(bench, "baseline", count, "not validated", enqueue)


def _measure_enqueue(
    bench: Bench, system: str, count: int, validation: str, enqueue: Callable[[], None]
) -> Row:
    """Time one system's way of putting ``count`` JSONL lines on its queue, with no worker
    running: wall time, this process's CPU, Redis's CPU and Redis's growth per job."""
    redis_cpu = CpuMeter({"redis": lambda: [bench.redis_pid]})
    before = bench.used_memory()
    redis_cpu.start()
    cpu, started = time.process_time(), time.perf_counter()
    enqueue()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    redis_cpu.stop()
    queued = bench.used_memory() - before
    return Row(
        scenario="enqueue",
        system=system,
        tickets=count,
        tickets_per_s=count / elapsed,
        redis_cpu_ms=redis_cpu.ms_per_item("redis", count),
        notes=f"{validation}; producer CPU {cpu * 1000 / count:.3f} ms/job; "
        f"Redis {queued / count:,.0f} B/queued job",
    )


def _producer_settings(bench: Bench) -> Any:
    from worker.settings import Settings

    return Settings(redis_url=bench.redis.url)


# --- scenario: `ticketq import` of a large file -------------------------------------------


def write_import_file(path: Path, count: int) -> Path:
    """The bench's tickets as a file ``ticketq import`` reads: JSONL bodies, or CSV with the
    same fields in columns (by the path's extension)."""
    with path.open("w", newline="") as out:
        if path.suffix == ".jsonl":
            out.writelines(json.dumps(ticket("import", n)) + "\n" for n in range(count))
            return path
        writer = csv.writer(out)
        writer.writerow(["title", "description", "priority", "tags"])
        for n in range(count):
            body = ticket("import", n)
            plain = body["content"][0]["plain"]
            writer.writerow([body["title"], plain, "high", ";".join(body["tags"])])
    return path


def import_cli(bench: Bench, path: Path, count: int) -> Row:
    """``ticketq import FILE`` run as a person runs it, as its own process, no worker
    running: the whole command's wall time (start-up included) and that process's own CPU
    and peak RSS, from ``wait4`` (not sampled, so no peak is missed)."""
    bench.flush()
    env = {**os.environ, "TICKETQ_REDIS_URL": bench.redis.url}
    command = [sys.executable, "-m", "ops.cli.app", "import", str(path), "--account-id", ACCOUNT]
    redis_cpu = CpuMeter({"redis": lambda: [bench.redis_pid]})
    redis_cpu.start()
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        said = output.read().decode(errors="replace")
    redis_cpu.stop()
    if process.returncode != 0 or f"accepted {count:,}," not in said:
        raise RuntimeError(f"ticketq import {path.name} failed ({process.returncode}): {said}")
    return Row(
        scenario=f"import ({path.suffix.lstrip('.')})",
        system="ticketq",
        tickets=count,
        tickets_per_s=count / elapsed,
        producer_cpu_ms=(usage.ru_utime + usage.ru_stime) * 1000 / count,
        redis_cpu_ms=redis_cpu.ms_per_item("redis", count),
        peak_rss_mb=usage.ru_maxrss / 1024,
        notes=f"`ticketq import` of a {path.stat().st_size / 1e6:,.0f} MB file: "
        f"{elapsed:.1f} s in all; peak RSS and producer CPU are that process's",
    )


# --- scenario: memory over a soak ----------------------------------------------------------


def _soak_notes(meter: Meter, count: int, queued: float, finished: float) -> tuple[str, float]:
    samples = meter.rss.samples
    ready = samples[0][1] / 1024 if samples else math.nan
    warm = meter.rss.kib_when_done(max(1, count // 10)) / 1024
    half = meter.rss.kib_when_done(max(1, count // 2)) / 1024
    end = samples[-1][1] / 1024 if samples else math.nan
    growth = end - warm
    notes = (
        f"RSS MB: queue full {ready:.0f}, after 10% {warm:.0f}, 50% {half:.0f}, "
        f"end {end:.0f} ({growth:+.1f} after 10%); "
        f"Redis B/job: queued {queued:,.0f}, finished {finished:,.0f}"
    )
    return notes, growth


@dataclass(frozen=True)
class Drained:
    """A queue filled with the workers stopped, then worked off."""

    outcome: Outcome
    stats: dict[str, Any]
    meter: Meter
    queued_bytes: float  # Redis used_memory growth per job, queued
    finished_bytes: float  # and once every job is final
    unfinished: int


def consuming(app: Celery, queues: Sequence[str], on: bool, workers: int) -> None:
    """Tell every worker to stop (or start) consuming ``queues``, by Celery remote control,
    so a queue can be filled while the workers are up and then worked off by all at once.
    A worker only just started may miss a broadcast, so each is tried a few times (adding
    or cancelling a consumer twice is harmless)."""
    command = app.control.add_consumer if on else app.control.cancel_consumer
    for queue in queues:
        replies: list[Any] = []
        for _ in range(CONTROL_ATTEMPTS):
            replies = command(queue, reply=True, timeout=5.0, limit=workers) or []
            if len(replies) >= workers:
                break
        else:
            verb = "add" if on else "cancel"
            raise RuntimeError(f"{verb} consumer {queue}: {len(replies)}/{workers} answered")


def drain_ticketq(bench: Bench, name: str, items: Sequence[dict[str, Any]], lane: str) -> Drained:
    """``lane`` "single": one ``Producer.submit`` per job; "bulk": ``submit_many``."""
    with bench.ticketq(name, settings_env=dict(OUT_OF_THE_WAY)) as phase:
        control = create_app(phase.stack.settings())
        queues = list(QUEUES.values())
        workers = len(phase.stack.workers)
        try:
            consuming(control, queues, False, workers)
            before = bench.used_memory()
            if lane == "single":
                ids = [phase.producer.submit(ACCOUNT, item).job_id for item in items]
            else:
                ids = phase.submit_bulk(items)
            queued = (bench.used_memory() - before) / len(ids)
            meter = phase.meter()
            meter.start()
            started = time.time()
            consuming(control, queues, True, workers)
        finally:
            control.close()
        unfinished = phase.wait(ids, deadline(len(ids)), meter.progress)
        meter.stop()
        finished = (bench.used_memory() - before) / len(ids)
        outcome = replace(ticketq_outcome(phase.times(ids)), first_submit=started)
        stats = phase.control.stats()
    return Drained(outcome, stats, meter, queued, finished, len(unfinished))


def drain_baseline(bench: Bench, name: str, items: Sequence[dict[str, Any]]) -> Drained:
    with bench.baseline(name) as phase:
        queues = [phase.app.conf.task_default_queue]
        consuming(phase.app, queues, False, 1)
        before = bench.used_memory()
        submitted: dict[str, float] = {}
        ids = phase.submit(items, submitted)
        queued = (bench.used_memory() - before) / len(ids)
        meter = phase.meter()
        meter.start()
        started = time.time()
        consuming(phase.app, queues, True, 1)
        metas = phase.wait(ids, deadline(len(ids)), meter.progress)
        meter.stop()
        finished = (bench.used_memory() - before) / len(ids)
        outcome = replace(baseline_outcome(ids, submitted, metas), first_submit=started)
        stats = phase.control.stats()
    return Drained(outcome, stats, meter, queued, finished, len(ids) - len(metas))


def drained_row(scenario: str, system: str, result: Drained, notes: str = "") -> Row:
    if result.unfinished:
        notes += f"; {result.unfinished} unfinished at the deadline"
    done = row(scenario, system, result.outcome, result.stats, result.meter, notes)
    return _without_latency(replace(done, producer_cpu_ms=math.nan))


def queued_first(bench: Bench, scenario: str) -> list[Row]:
    """The engine alone: the jobs are queued before the workers start (no producer racing
    the workers for the cores); tickets/s is the drain rate, worker start-up included."""
    count = bench.options.tickets
    name = f"{scenario} (queued first)"
    ours = drain_ticketq(bench, f"{scenario}-drain-ticketq", tickets("drain", count), scenario)
    theirs = drain_baseline(bench, f"{scenario}-drain-baseline", tickets("drain", count))
    return [drained_row(name, "ticketq", ours), drained_row(name, "baseline", theirs)]


def soak(bench: Bench, count: int) -> tuple[list[Row], float]:
    """Memory: RSS after 10% of ``count`` tickets vs at the end, and Redis bytes per job."""
    rows, growth = [], math.nan
    for system in ("ticketq", "baseline"):
        items = tickets("soak", count)
        if system == "ticketq":
            result = drain_ticketq(bench, "soak-ticketq", items, "bulk")
        else:
            result = drain_baseline(bench, "soak-baseline", items)
        notes, system_growth = _soak_notes(
            result.meter, count, result.queued_bytes, result.finished_bytes
        )
        if system == "ticketq":
            growth = system_growth
        rows.append(drained_row("memory", system, result, notes))
    return rows, growth


def _without_latency(result: Row) -> Row:
    """Queued up front, a soak's latencies are queueing time, not the system's: left out."""
    return replace(result, p50_s=math.nan, p99_s=math.nan)
