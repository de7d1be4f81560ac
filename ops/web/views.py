"""What the dashboard draws, decided without Redis or HTTP: readable times and ages, the
throughput chart's geometry, progress bars' segments, the banners and the state table.

The templates only place what these functions computed, so the page's arithmetic is
tested here, on numbers, and the templates stay free of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.contract import JobState
from worker.store.batches import Progress
from worker.store.stats import KeyStatus, Minute, Snapshot

# A job's states in the order of its life, then a record gone (expired or purged).
STATES = tuple(str(state) for state in JobState)
# A progress bar's segments, finished first, from the left.
BAR_ORDER = ("succeeded", "failed", "cancelled", "running", "retrying", "queued", "missing")
CHART_WIDTH = 600
CHART_HEIGHT = 120
CHART_MINUTES = 60


def utc(moment: float | datetime | None) -> str:
    """A time as people read it, in UTC; "" for none."""
    if moment is None:
        return ""
    at = moment if isinstance(moment, datetime) else datetime.fromtimestamp(moment, UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def duration(seconds: float | None) -> str:
    """A span in its two largest units: "8 s", "3 min 5 s", "2 h", "3 d 4 h"."""
    if seconds is None:
        return ""
    whole = max(0, int(seconds))
    for index, (size, name) in enumerate(UNITS):
        if whole >= size or size == 1:
            first, rest = divmod(whole, size)
            text = f"{first} {name}"
            if size > 1:
                next_size, next_name = UNITS[index + 1]
                if rest // next_size:
                    text += f" {rest // next_size} {next_name}"
            return text
    raise AssertionError("unreachable: the last unit is one second")


def ago(moment: float | datetime | None, now: float) -> str:
    """How long before ``now`` a moment was ("3 min 5 s ago"), or after ("in 30 s")."""
    if moment is None:
        return ""
    at = moment.timestamp() if isinstance(moment, datetime) else moment
    # A moment within a second after ``now`` was read is the clocks' skew, not the future.
    return f"in {duration(at - now)}" if at >= now + 1 else f"{duration(now - at)} ago"


def reread_after(progress: Progress, took: float) -> float:
    """How long a batch's progress may be shown before it is read again (seconds), given
    that reading it took ``took`` seconds: it looks at every job of the batch (1.5 s for
    120,000 on an idle machine), so at most a sixth of the time goes to reading, and at
    least 1.5 s pass between reads; a finished batch changes only if a job of it is
    replayed, so it waits 30 s at least."""
    return max(30.0 if progress.done else 1.5, 5 * took)


@dataclass(frozen=True)
class Segment:
    """One coloured part of a progress bar, in percent of its width."""

    state: str
    count: int
    x: float
    width: float


def segments(counts: Mapping[str, int]) -> list[Segment]:
    """A bar of jobs by state (finished first), each part as wide as its share."""
    total = sum(counts.values())
    found: list[Segment] = []
    x = 0.0
    for state in (*BAR_ORDER, *sorted(set(counts) - set(BAR_ORDER))):
        n = counts.get(state, 0)
        if n and total:
            width = 100.0 * n / total
            found.append(Segment(state, n, round(x, 3), round(width, 3)))
            x += width
    return found


@dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart: finished jobs stacked, in SVG units."""

    x: float
    width: float
    parts: list[tuple[str, float, float]]  # (state, y, height), bottom first
    minute: Minute


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    peak: int  # the most jobs finished in one minute (the scale's top)
    bars: list[Bar]
    finished: int  # in the whole hour
    attempts: int  # requests sent in the whole hour


def chart(minutes: Sequence[Minute]) -> Chart:
    """The last hour's finished jobs per minute, as stacked bars on a fixed-size canvas."""
    shown = list(minutes)[-CHART_MINUTES:]
    peak = max((m.succeeded + m.failed + m.cancelled for m in shown), default=0)
    slot = CHART_WIDTH / CHART_MINUTES
    offset = CHART_MINUTES - len(shown)  # fewer minutes known: they are the latest
    bars = []
    for index, minute in enumerate(shown):
        base = float(CHART_HEIGHT)
        parts = []
        for state in ("succeeded", "failed", "cancelled"):
            n = getattr(minute, state)
            height = CHART_HEIGHT * n / peak if peak else 0.0
            if height:
                base -= height
                parts.append((state, round(base, 2), round(height, 2)))
        bars.append(Bar(round((offset + index) * slot + 1, 2), round(slot - 2, 2), parts, minute))
    return Chart(
        CHART_WIDTH,
        CHART_HEIGHT,
        peak,
        bars,
        finished=sum(m.succeeded + m.failed + m.cancelled for m in shown),
        attempts=sum(m.attempts for m in shown),
    )


@dataclass(frozen=True)
class LaneRow:
    lane: str
    counts: list[int]  # in the order of STATES
    total: int


def state_table(jobs: Mapping[str, Mapping[str, int]]) -> list[LaneRow]:
    """Jobs per lane (rows) and state (columns, in ``STATES`` order), then a total row."""
    rows = [
        LaneRow(lane, [by_state.get(s, 0) for s in STATES], sum(by_state.values()))
        for lane, by_state in sorted(jobs.items())
    ]
    totals = [sum(row.counts[i] for row in rows) for i in range(len(STATES))]
    return [*rows, LaneRow("all", totals, sum(totals))]


@dataclass(frozen=True)
class Banner:
    """A warning across the top of the page while StackOne cannot be used."""

    title: str
    detail: str


def banners(snapshot: Snapshot) -> list[Banner]:
    """One banner per API key StackOne refuses or whose requests an outage holds."""
    now = snapshot.at.timestamp()
    found = []
    for key in snapshot.keys:
        if key.refused:
            found.append(_refused(key, now))
        if key.outage:
            until = f" until {utc(key.paused_until)}" if key.paused_until else ""
            found.append(
                Banner(
                    f"StackOne is failing for key {key.fingerprint}",
                    f"Most requests fail (5xx or connection errors): workers hold their "
                    f"requests{until}, one probe at a time; jobs wait, unfailed.",
                )
            )
    return found


def _refused(key: KeyStatus, now: float) -> Banner:
    since = f" since {utc(key.refused_since)} ({ago(key.refused_since, now)})"
    why = f": {key.refusal}" if key.refusal else ""
    return Banner(
        f"StackOne refuses the API key {key.fingerprint}",
        f"Refused{since if key.refused_since else ''}{why}. Workers take no work for this "
        "key until a request succeeds again; check STACKONE_API_KEY.",
    )
