"""Issue 13's scenarios: one API key shared by several linked accounts (fair share), one
account's cap on requests in flight used in full, and the limited import under a busy CPU
(``scenarios.limited_ticketq`` with ``busy`` loops; run from ``__main__``).

The textbook task has neither fair share nor a cap: its one queue is first in, first out
(account B's tickets wait behind account A's, except where A's tasks went back for a retry
after a 429), and it sends as many requests at once as it has threads (50).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ops.bench.measure import percentile
from ops.bench.report import Row
from ops.bench.scenarios import (
    BaselinePhase,
    Bench,
    Meter,
    Outcome,
    Requests,
    TicketqPhase,
    baseline_outcome,
    deadline,
    epoch,
    pct_of_limit,
    row,
    ticketq_outcome,
    tickets,
)

ACCOUNT_A = "acct-a"
ACCOUNT_B = "acct-b"
NO_RATE_LIMIT = "1000000/min"


# --- the arithmetic (pure) -----------------------------------------------------------------


def fair_share_seconds(count: int, rpm: int, weight: float = 1, total_weight: float = 2) -> float:
    """How long ``count`` tickets take at an account's share of a key's limit: its weight
    over the weights of the accounts waiting. 60 at half of 600/min: 12 s."""
    if rpm <= 0 or weight <= 0 or total_weight <= 0:
        return math.nan
    return count / (rpm / 60 * weight / total_weight)


def cap_bound(cap: int, latency_ms: float) -> float:
    """Tickets/s that ``cap`` requests in flight allow when each takes ``latency_ms``."""
    if cap <= 0 or latency_ms <= 0:
        return math.nan
    return cap / (latency_ms / 1000)


def slots_in_use_notes(seen: Requests, rate: float, cap: int) -> str:
    """How much of the time the cap's slots held a request (Little's law: tickets/s times
    the mean request's seconds, over the cap), at the latency the workers measured, which
    on a busy machine is more than the stand-in's own wait."""
    if not seen.timed or not rate:
        return ""
    in_use = 100 * rate * seen.mean / cap
    return (
        f"; as the workers saw it: {seen.mean * 1000:.1f} ms a request, so cap / that "
        f"= {cap_bound(cap, seen.mean * 1000):,.0f}/s and the slots held a request "
        f"{in_use:.0f}% of the time"
    )


def pct_of_bound(rate: float, bound: float) -> float:
    """``rate`` as a percentage of the rate a bound allows (NaN if either is unknown)."""
    if math.isnan(rate) or math.isnan(bound) or bound <= 0:
        return math.nan
    return 100 * rate / bound


def pct_of_limit_between(done: Iterable[float], start: float, end: float, rpm: int) -> float:
    """Tickets created per minute between ``start`` and ``end`` (by their creation times,
    ``done``), as a percentage of ``rpm``."""
    if not end > start:
        return math.nan
    return pct_of_limit(sum(1 for t in done if start <= t <= end), end - start, rpm)


@dataclass(frozen=True)
class Fairness:
    """What account B saw beside account A's import, and what the key's limit carried."""

    b_seconds: float  # B's submission to its last ticket created
    b_fair_seconds: float  # the same at B's share of the limit
    a_seconds: float  # A's submission to its last ticket (NaN: not waited for)
    a_done_when_b_done: int  # A's tickets created by then
    pct_limit_both: float  # created per minute while both had work / the limit, in %

    @property
    def pct_of_fair(self) -> float:
        """B's rate as a percentage of its fair share's (100: exactly its share); NaN if A
        was done before B came (B alone had the whole limit: no share to compare with)."""
        if not self.b_seconds > 0 or math.isnan(self.pct_limit_both):
            return math.nan
        return 100 * self.b_fair_seconds / self.b_seconds


def fairness(
    a_done: Sequence[float],
    b_done: Sequence[float],
    a_start: float,
    b_start: float,
    rpm: int,
    b_fair_seconds: float,
    a_waited: bool = True,
) -> Fairness:
    """From the creation times of A's and B's tickets and when each was submitted. Both
    have work from B's submission until the first of them is done."""
    b_end = max(b_done, default=math.nan)
    a_end = max(a_done, default=math.nan) if a_waited else math.inf
    both_end = min(b_end, a_end)
    return Fairness(
        b_seconds=b_end - b_start,
        b_fair_seconds=b_fair_seconds,
        a_seconds=a_end - a_start if a_waited else math.nan,
        a_done_when_b_done=sum(1 for t in a_done if t <= b_end),
        pct_limit_both=pct_of_limit_between([*a_done, *b_done], b_start, both_end, rpm),
    )


def fairness_notes(f: Fairness, a_count: int, b_count: int, share: str) -> str:
    text = (
        f"B's {b_count:,} done {f.b_seconds:.1f} s after its submission; its fair share "
        f"({share} of the limit) {f.b_fair_seconds:.1f} s; "
    )
    if math.isnan(f.a_seconds):
        text += f"A: {f.a_done_when_b_done:,} of {a_count:,} done by then (not waited for)"
    else:
        text += f"A's {a_count:,} done in {f.a_seconds:.0f} s ({f.a_done_when_b_done:,} by B's end)"
    if math.isnan(f.pct_limit_both):
        return text + "; never both with work (A was done before B came)"
    return text + f"; limit used while both had work: {f.pct_limit_both:.1f}%"


# --- fair share between two accounts --------------------------------------------------------


@dataclass(frozen=True)
class FairOptions:
    a_tickets: int = 1_500  # account A's bulk import
    b_tickets: int = 60  # account B's, submitted ``delay`` seconds later
    rpm: int = 600  # the key's limit, enforced by the stand-in and set in ticketq
    delay: float = 5.0
    weights: tuple[int, int] = (1, 3)  # A's and B's in the weighted variant
    weighted: bool = True  # run the weighted variant (waits for B only)


def weights_env(weights: tuple[int, int]) -> str:
    """``TICKETQ_ACCOUNT_WEIGHTS`` for A and B."""
    return f"{ACCOUNT_A}={weights[0]},{ACCOUNT_B}={weights[1]}"


Submit = Callable[[Sequence[dict[str, Any]], str], list[str]]  # (tickets, account) -> ids


def _submit_a_then_b(
    submit: Submit, fair: FairOptions
) -> tuple[list[str], list[str], float, float]:
    """A's import, then B's ``fair.delay`` seconds after A's began; returns both id lists
    and both submission times (Unix)."""
    a_start = time.time()
    a_ids = submit(tickets("fair-a", fair.a_tickets), ACCOUNT_A)
    time.sleep(max(0.0, a_start + fair.delay - time.time()))
    b_start = time.time()
    b_ids = submit(tickets("fair-b", fair.b_tickets), ACCOUNT_B)
    return a_ids, b_ids, a_start, b_start


def _ticketq_done(p: TicketqPhase, ids: Sequence[str]) -> list[float]:
    return [done for state, _, done in p.times(ids) if state == "succeeded" and done]


def fair_ticketq(bench: Bench, fair: FairOptions, weighted: bool = False) -> Row:
    """A's import and B's tickets in the bulk lane of one key. Weighted: A and B have
    ``fair.weights`` (``TICKETQ_ACCOUNT_WEIGHTS``) and only B is waited for."""
    env = {"TICKETQ_RATE_LIMIT": f"{fair.rpm}/min"}
    weights = fair.weights if weighted else (1, 1)
    if weighted:
        env["TICKETQ_ACCOUNT_WEIGHTS"] = weights_env(weights)
    name = "fair-weighted-ticketq" if weighted else "fair-ticketq"
    with bench.ticketq(name, settings_env=env, rpm_limit=fair.rpm) as p:
        meter = p.meter()
        meter.start()
        a_ids, b_ids, a_start, b_start = _submit_a_then_b(
            lambda items, account: p.submit_bulk(items, account), fair
        )
        expected = (fair.a_tickets + fair.b_tickets) / fair.rpm * 60
        unfinished = p.wait(b_ids, 120 + 3 * expected, meter.progress)
        if not weighted:
            unfinished += p.wait(a_ids, 120 + 3 * expected, meter.progress)
        meter.stop()
        stats = p.control.stats()
        a_done, b_done = _ticketq_done(p, a_ids), _ticketq_done(p, b_ids)
        outcome = ticketq_outcome(p.times([*a_ids, *b_ids]))
        b_outcome = ticketq_outcome(p.times(b_ids))
    result = fairness(
        a_done,
        b_done,
        a_start,
        b_start,
        fair.rpm,
        fair_share_seconds(fair.b_tickets, fair.rpm, weights[1], sum(weights)),
        a_waited=not weighted,
    )
    done = _fair_row(
        "ticketq", fair, weights, outcome, b_outcome, stats, meter, result, len(unfinished)
    )
    if not weighted:
        return done
    # A was not waited for: figures over the run would mix a finished B with half of A.
    return replace(
        done,
        scenario=f"fair share, weights {weights[0]}:{weights[1]}",
        tickets_per_s=math.nan,
        producer_cpu_ms=math.nan,
        worker_cpu_ms=math.nan,
        api_cpu_ms=math.nan,
        redis_cpu_ms=math.nan,
        failed=b_outcome.not_ok,
        pct_limit=None,
    )


def _baseline_done(ids: Sequence[str], metas: dict[str, dict[str, Any]]) -> list[float]:
    done = []
    for task_id in ids:
        meta = metas.get(task_id)
        if meta is not None and meta.get("status") == "SUCCESS":
            at = epoch(meta.get("date_done"))
            if at is not None:
                done.append(at)
    return done


def fair_baseline(bench: Bench, fair: FairOptions) -> Row:
    """The same submissions to the textbook task: one FIFO queue, no limiter of its own."""
    with bench.baseline("fair-baseline", rpm_limit=fair.rpm) as p:
        submitted: dict[str, float] = {}
        meter = p.meter()
        meter.start()
        a_ids, b_ids, a_start, b_start = _submit_a_then_b(
            lambda items, account: p.submit(items, submitted, account), fair
        )
        expected = (fair.a_tickets + fair.b_tickets) / fair.rpm * 60
        metas = p.wait([*a_ids, *b_ids], 600 + 2 * expected, meter.progress)
        meter.stop()
        stats = p.control.stats()
    outcome = baseline_outcome([*a_ids, *b_ids], submitted, metas)
    b_outcome = baseline_outcome(b_ids, submitted, metas)
    result = fairness(
        _baseline_done(a_ids, metas),
        _baseline_done(b_ids, metas),
        a_start,
        b_start,
        fair.rpm,
        fair_share_seconds(fair.b_tickets, fair.rpm),
    )
    unfinished = len(a_ids) + len(b_ids) - len(metas)
    return _fair_row("baseline", fair, (1, 1), outcome, b_outcome, stats, meter, result, unfinished)


def _fair_row(
    system: str,
    fair: FairOptions,
    weights: tuple[int, int],
    outcome: Outcome,
    b_outcome: Outcome,
    stats: dict[str, Any],
    meter: Meter,
    result: Fairness,
    unfinished: int,
) -> Row:
    """tickets/s, CPU, 429s, dups and % of limit over the run; p50/p99 of B's tickets;
    % of bound: B's rate against its fair share's."""
    share = f"{weights[1]}/{sum(weights)}"
    notes = fairness_notes(result, fair.a_tickets, fair.b_tickets, share)
    if system == "baseline":
        notes = "one FIFO queue, no fair share: " + notes
    if unfinished:
        notes += f"; {unfinished} unfinished at the deadline"
    done = row("fair share", system, outcome, stats, meter, notes)
    return replace(
        done,
        p50_s=percentile(b_outcome.latencies, 50),
        p99_s=percentile(b_outcome.latencies, 99),
        pct_limit=pct_of_limit(outcome.succeeded, outcome.span, fair.rpm),
        pct_bound=result.pct_of_fair,
    )


# --- the account cap -----------------------------------------------------------------------


@dataclass(frozen=True)
class CapOptions:
    tickets: int = 3_000  # per lane at the short latency
    cap: int = 10  # TICKETQ_ACCOUNT_CONCURRENCY
    latency_ms: float = 20.0
    slow_tickets: int = 1_500  # the bulk import at the long latency
    slow_latency_ms: float = 500.0
    slow_rpm: int = 1_000  # the key's limit there (binding: below cap / latency)
    slow_baseline: bool = False  # also the textbook task there (429s; slow)


def _lane_rows(
    p: TicketqPhase, scenario: str, count: int, cap: int, bound: float, bound_text: str
) -> list[Row]:
    """One bulk import (``submit_many``) and as many single jobs (``submit``), one after
    the other in the same phase; tickets/s and % of bound of each, and with a cap, how
    much of the time its slots held a request, at the latency the workers saw."""
    rows = []
    for lane in ("bulk", "single"):
        items = tickets(f"cap-{lane}", count)
        p.control.reset()
        before = p.requests_seen()
        meter = p.meter()
        meter.start()
        if lane == "single":
            ids = [p.producer.submit(ACCOUNT_A, item).job_id for item in items]
        else:
            ids = p.submit_bulk(items, ACCOUNT_A)
        unfinished = p.wait(ids, deadline(len(ids)), meter.progress)
        meter.stop()
        outcome = ticketq_outcome(p.times(ids))
        seen = p.requests_seen().since(before)
        notes = bound_text
        if cap:
            notes += slots_in_use_notes(seen, outcome.rate(), cap)
        if unfinished:
            notes += f"; {len(unfinished)} unfinished at the deadline"
        done = row(f"{scenario}, {lane}", "ticketq", outcome, p.control.stats(), meter, notes)
        rows.append(replace(done, pct_bound=pct_of_bound(done.tickets_per_s, bound)))
    return rows


def cap_ticketq(bench: Bench, cap: CapOptions) -> list[Row]:
    """At ``cap.latency_ms``, the rate out of the way: the cap, then no cap (reference)."""
    rows = []
    bound = cap_bound(cap.cap, cap.latency_ms)
    for value in (cap.cap, 0):
        env = {"TICKETQ_RATE_LIMIT": NO_RATE_LIMIT, "TICKETQ_ACCOUNT_CONCURRENCY": str(value)}
        scenario = f"cap {value}, {cap.latency_ms:g} ms"
        with bench.ticketq(f"cap{value}-ticketq", settings_env=env,
                           latency_ms=cap.latency_ms, worker_metrics=True) as p:  # fmt: skip
            if value:
                text = f"bound: cap {value} / {cap.latency_ms:g} ms = {bound:,.0f}/s"
                rows += _lane_rows(p, scenario, cap.tickets, value, bound, text)
            else:
                threads = bench.options.workers * bench.options.concurrency
                text = (
                    f"reference, no cap: {threads} worker threads / {cap.latency_ms:g} ms = "
                    f"{cap_bound(threads, cap.latency_ms):,.0f}/s, and the CPU"
                )
                rows += _lane_rows(p, scenario, cap.tickets, 0, math.nan, text)
    return rows


def cap_baseline(bench: Bench, cap: CapOptions) -> list[Row]:
    """The textbook task has no cap: ``.delay()`` in a loop, up to its threads in flight.
    Run once per ticketq lane so each has its side-by-side row."""
    threads = bench.options.baseline_concurrency
    notes = (
        f"no cap: .delay() in a loop, up to its {threads} threads in flight "
        f"({threads} / {cap.latency_ms:g} ms = {cap_bound(threads, cap.latency_ms):,.0f}/s)"
    )
    rows = []
    with bench.baseline("cap-baseline", latency_ms=cap.latency_ms) as p:
        for lane in ("bulk", "single"):
            rows.append(_baseline_run(p, f"cap {cap.cap}, {cap.latency_ms:g} ms, {lane}",
                                      tickets(f"cap-{lane}", cap.tickets), notes))  # fmt: skip
    return rows


def _baseline_run(
    p: BaselinePhase, scenario: str, items: Sequence[dict[str, Any]], notes: str
) -> Row:
    p.control.reset()
    meter = p.meter()
    submitted: dict[str, float] = {}
    meter.start()
    ids = p.submit(items, submitted, ACCOUNT_A)
    metas = p.wait(ids, deadline(len(ids)), meter.progress)
    meter.stop()
    if len(metas) < len(ids):
        notes += f"; {len(ids) - len(metas)} unfinished at the deadline"
    return row(scenario, "baseline", baseline_outcome(ids, submitted, metas),
               p.control.stats(), meter, notes)  # fmt: skip


def slow_scenario(cap: CapOptions) -> str:
    return f"cap {cap.cap}, {cap.slow_latency_ms:g} ms, limit {cap.slow_rpm}/min, bulk"


def cap_slow_ticketq(bench: Bench, cap: CapOptions) -> Row:
    """At ``cap.slow_latency_ms`` the cap allows more than the key's limit: the limit binds.
    % of bound: tickets/s against the lower of the two."""
    env = {
        "TICKETQ_RATE_LIMIT": f"{cap.slow_rpm}/min",
        "TICKETQ_ACCOUNT_CONCURRENCY": str(cap.cap),
    }
    allowed = cap_bound(cap.cap, cap.slow_latency_ms)
    bound = min(allowed, cap.slow_rpm / 60)
    with bench.ticketq("cap-slow-ticketq", settings_env=env, rpm_limit=cap.slow_rpm,
                       latency_ms=cap.slow_latency_ms) as p:  # fmt: skip
        meter = p.meter()
        meter.start()
        ids = p.submit_bulk(tickets("cap-slow", cap.slow_tickets), ACCOUNT_A)
        unfinished = p.wait(ids, 120 + 3 * cap.slow_tickets / bound, meter.progress)
        meter.stop()
        outcome = ticketq_outcome(p.times(ids))
        stats = p.control.stats()
    notes = (
        f"bound: the limit, {cap.slow_rpm / 60:.1f}/s (cap {cap.cap} / "
        f"{cap.slow_latency_ms:g} ms = {allowed:.1f}/s)"
    )
    if unfinished:
        notes += f"; {len(unfinished)} unfinished at the deadline"
    done = row(slow_scenario(cap), "ticketq", outcome, stats, meter, notes)
    return replace(
        done,
        pct_limit=pct_of_limit(outcome.succeeded, outcome.span, cap.slow_rpm),
        pct_bound=pct_of_bound(done.tickets_per_s, bound),
    )


def cap_slow_baseline(bench: Bench, cap: CapOptions) -> Row:
    threads = bench.options.baseline_concurrency
    with bench.baseline("cap-slow-baseline", rpm_limit=cap.slow_rpm,
                        latency_ms=cap.slow_latency_ms) as p:  # fmt: skip
        submitted: dict[str, float] = {}
        meter = p.meter()
        meter.start()
        ids = p.submit(tickets("cap-slow", cap.slow_tickets), submitted, ACCOUNT_A)
        expected = cap.slow_tickets / cap.slow_rpm * 60
        metas = p.wait(ids, 600 + 2 * expected, meter.progress)
        meter.stop()
        stats = p.control.stats()
    outcome = baseline_outcome(ids, submitted, metas)
    notes = f"no cap and no limiter: up to its {threads} threads in flight, 429s retried"
    if len(metas) < len(ids):
        notes += f"; {len(ids) - len(metas)} unfinished at the deadline"
    done = row(slow_scenario(cap), "baseline", outcome, stats, meter, notes)
    return replace(done, pct_limit=pct_of_limit(outcome.succeeded, outcome.span, cap.slow_rpm))
