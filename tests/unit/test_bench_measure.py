"""The benchmark's pure measuring parts: percentiles and CPU/RSS accounting from /proc."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops.bench.measure import (
    CLOCK_TICKS,
    ProcStat,
    cpu_ms_per_item,
    parse_stat,
    parse_vmrss_kib,
    percentile,
    process_tree,
    tree_cpu_ticks,
    tree_rss_kib,
)

# A real line's shape: comm with a space and a parenthesis, then 50 fields.
STAT = (
    "4242 (celery (w) 1) S 4200 4242 4242 0 -1 4194560 12345 0 0 0 "
    "1500 250 30 7 20 0 53 0 1234567 987654321 20000 18446744073709551615 "
    "1 1 0 0 0 0 0 16781312 17002 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0"
)


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_percentile_of_one_value_and_of_none() -> None:
    assert percentile([7.5], 99) == 7.5
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_percentile_ignores_input_order() -> None:
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0


@given(st.lists(st.floats(-1e6, 1e6), min_size=1), st.floats(0, 100))
def test_percentile_lies_within_the_values(values: list[float], q: float) -> None:
    result = percentile(values, q)
    assert min(values) - 1e-6 <= result <= max(values) + 1e-6


def test_parse_stat_reads_past_a_command_name_with_spaces_and_parentheses() -> None:
    stat = parse_stat(STAT)
    assert stat == ProcStat(pid=4242, ppid=4200, utime=1500, stime=250, cutime=30, cstime=7)
    assert stat.ticks == 1787


def test_parse_vmrss() -> None:
    status = "Name:\tcelery\nVmPeak:\t  300000 kB\nVmRSS:\t   91234 kB\nThreads:\t53\n"
    assert parse_vmrss_kib(status) == 91234
    assert parse_vmrss_kib("Name:\tkthreadd\nThreads:\t1\n") == 0


def test_cpu_ms_per_item() -> None:
    # 250 ticks at 100 Hz = 2.5 s of CPU over 1,000 tickets = 2.5 ms each
    assert cpu_ms_per_item(1000, 1250, 1000, hz=100) == pytest.approx(2.5)
    assert math.isnan(cpu_ms_per_item(0, 10, 0, hz=100))


def stat(pid: int, ppid: int, ticks: int = 0) -> ProcStat:
    return ProcStat(pid=pid, ppid=ppid, utime=ticks, stime=0, cutime=0, cstime=0)


def test_process_tree_finds_every_descendant_and_nothing_else() -> None:
    stats = {s.pid: s for s in [stat(1, 0), stat(10, 1), stat(11, 10), stat(12, 11), stat(20, 1)]}
    assert sorted(process_tree(10, stats)) == [10, 11, 12]
    assert process_tree(99, stats) == []


def test_this_process_is_measured_from_proc() -> None:
    sum(i * i for i in range(200_000))  # burn a little CPU
    assert tree_cpu_ticks([os.getpid()]) > 0
    assert tree_rss_kib([os.getpid()]) > 1024
    assert CLOCK_TICKS > 0
