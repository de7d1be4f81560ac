"""What the benchmark measures, from the outside: percentiles, and the CPU time and memory
of process trees read from ``/proc`` (no dependency; Linux only).

CPU of a tree is the sum, over every live process in it, of ``utime + stime`` (its own
threads) plus ``cutime + cstime`` (children it has reaped), so a child that exits between
two readings is still counted once, in its parent.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CLOCK_TICKS",
    "CpuMeter",
    "ProcStat",
    "RssSampler",
    "cpu_ms_per_item",
    "parse_stat",
    "parse_vmrss_kib",
    "percentile",
    "process_tree",
    "tree_cpu_ticks",
    "tree_rss_kib",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated linearly between closest ranks.

    The same definition as NumPy's default; NaN for no values.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not between 0 and 100")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the benchmark needs; times in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself hold spaces and
    parentheses, so the fields after it are split from the *last* closing parenthesis.
    """
    pid_text, _, _ = text.partition(" (")
    _, _, rest = text.rpartition(") ")
    fields = rest.split()
    # rest starts at field 3 (state): ppid is field 4, utime..cstime fields 14-17.
    return ProcStat(
        pid=int(pid_text),
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def parse_vmrss_kib(text: str) -> int:
    """``VmRSS`` from ``/proc/<pid>/status`` in KiB (0 for a zombie or kernel thread)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _all_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        text = _read(entry / "stat")
        if text is not None:
            stats[int(entry.name)] = parse_stat(text)
    return stats


def process_tree(root: int, stats: Mapping[int, ProcStat]) -> list[int]:
    """``root`` and all its live descendants, from a snapshot of every process's stat."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: list[int] = []
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_ticks(roots: Iterable[int]) -> int:
    """CPU clock ticks used so far by the trees under ``roots``."""
    stats = _all_stats()
    return sum(stats[pid].ticks for root in roots for pid in process_tree(root, stats))


def tree_rss_kib(roots: Iterable[int]) -> int:
    """Resident memory of the trees under ``roots``, in KiB."""
    stats = _all_stats()
    total = 0
    for root in roots:
        for pid in process_tree(root, stats):
            text = _read(PROC / str(pid) / "status")
            total += parse_vmrss_kib(text) if text is not None else 0
    return total


def cpu_ms_per_item(
    ticks_before: int, ticks_after: int, items: int, hz: int = CLOCK_TICKS
) -> float:
    """Milliseconds of CPU per item between two readings of a tree's clock ticks."""
    if items <= 0:
        return math.nan
    return (ticks_after - ticks_before) * 1000 / hz / items


class CpuMeter:
    """CPU of named groups of process trees between ``start()`` and ``stop()``."""

    def __init__(self, groups: Mapping[str, Callable[[], list[int]]]) -> None:
        self._groups = groups
        self._before: dict[str, int] = {}
        self.used: dict[str, int] = {}

    def start(self) -> None:
        self._before = {name: tree_cpu_ticks(roots()) for name, roots in self._groups.items()}

    def stop(self) -> None:
        self.used = {
            name: tree_cpu_ticks(roots()) - self._before[name]
            for name, roots in self._groups.items()
        }

    def ms_per_item(self, name: str, items: int) -> float:
        return cpu_ms_per_item(0, self.used.get(name, 0), items)


@dataclass
class RssSampler:
    """Samples the resident memory of process trees every ``interval`` seconds."""

    roots: Callable[[], list[int]]
    interval: float = 0.5
    progress: Callable[[], int] | None = None  # items done, recorded beside each sample
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, kib, done)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        done = self.progress() if self.progress is not None else 0
        self.samples.append((time.monotonic(), tree_rss_kib(self.roots()), done))

    def start(self) -> None:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    @property
    def peak_kib(self) -> int:
        return max((kib for _, kib, _ in self.samples), default=0)

    def kib_when_done(self, items: int) -> int:
        """RSS of the first sample taken once at least ``items`` were done (else the last)."""
        for _, kib, done in self.samples:
            if done >= items:
                return kib
        return self.samples[-1][1] if self.samples else 0
