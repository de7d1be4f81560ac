"""The arithmetic of issue 13's bench scenarios: fair share, the cap's bound, limit use."""

from __future__ import annotations

import math

import pytest

from ops.bench.__main__ import cap_options, fair_options, parse_args, sizes
from ops.bench.scenarios import Requests
from ops.bench.sharing import (
    Fairness,
    cap_bound,
    fair_share_seconds,
    fairness,
    fairness_notes,
    pct_of_bound,
    pct_of_limit_between,
    slots_in_use_notes,
    weights_env,
)


def test_an_accounts_fair_share_is_its_weight_over_the_weights_waiting() -> None:
    assert fair_share_seconds(60, 600) == pytest.approx(12.0)  # half of 10/s
    assert fair_share_seconds(60, 600, weight=3, total_weight=4) == pytest.approx(8.0)
    assert fair_share_seconds(60, 600, weight=1, total_weight=1) == pytest.approx(6.0)
    assert math.isnan(fair_share_seconds(60, 0))


def test_the_caps_bound_is_requests_in_flight_over_latency() -> None:
    assert cap_bound(10, 20) == pytest.approx(500.0)
    assert cap_bound(10, 500) == pytest.approx(20.0)
    assert math.isnan(cap_bound(0, 20))  # no cap: no bound from it


def test_pct_of_bound_is_the_rate_over_what_the_bound_allows() -> None:
    assert pct_of_bound(58, 500) == pytest.approx(11.6)
    assert pct_of_bound(16.5, 1000 / 60) == pytest.approx(99.0)
    assert math.isnan(pct_of_bound(100, math.nan))
    assert math.isnan(pct_of_bound(math.nan, 500))


def test_slots_in_use_are_the_rate_times_the_latency_the_workers_saw_over_the_cap() -> None:
    seen = Requests(1000, 1000 * 0.025).since(Requests(0, 0.0))  # 25 ms a request
    notes = slots_in_use_notes(seen, 396.0, 10)  # 396/s x 25 ms = 9.9 of 10 in flight
    assert "25.0 ms a request" in notes
    assert "400/s" in notes
    assert "99% of the time" in notes
    assert slots_in_use_notes(Requests(0, 0.0), 396.0, 10) == ""  # nothing timed: no claim


def test_limit_use_between_two_moments_counts_only_what_was_created_then() -> None:
    done = [0.5, 1.0, 2.0, 3.0, 7.0]
    # 3 created in [1, 4]: 3 in 3 s is 60/min, 10% of 600/min
    assert pct_of_limit_between(done, 1.0, 4.0, 600) == pytest.approx(10.0)
    assert math.isnan(pct_of_limit_between(done, 4.0, 4.0, 600))


def test_fairness_times_b_from_its_submission_and_limit_use_while_both_had_work() -> None:
    a_done = [float(t) for t in range(1, 21)]  # A: one a second from 1 to 20
    b_done = [7.0, 9.0, 11.0]  # B submitted at 5, done at 11
    f = fairness(a_done, b_done, a_start=0.0, b_start=5.0, rpm=120, b_fair_seconds=3.0)
    assert f.b_seconds == pytest.approx(6.0)
    assert f.a_seconds == pytest.approx(20.0)
    assert f.a_done_when_b_done == 11
    # while both had work (5 to 11 s): A 7 (5..11) + B 3 = 10 in 6 s = 100/min of 120
    assert f.pct_limit_both == pytest.approx(100 * 100 / 120)
    assert f.pct_of_fair == pytest.approx(50.0)  # 6 s against a fair 3 s


def test_fairness_without_waiting_for_a_leaves_as_time_unknown() -> None:
    f = fairness([1.0, 2.0, 9.0], [4.0], 0.0, 3.0, 60, 1.0, a_waited=False)
    assert math.isnan(f.a_seconds)
    assert f.a_done_when_b_done == 2
    assert "2 of 3 done by then (not waited for)" in fairness_notes(f, 3, 1, "3/4")


def test_fairness_notes_say_when_the_accounts_never_overlapped() -> None:
    f = Fairness(0.3, 4.0, 3.0, 150, math.nan)
    text = fairness_notes(f, 150, 20, "1/2")
    assert text.startswith("B's 20 done 0.3 s after its submission; its fair share (1/2")
    assert text.endswith("never both with work (A was done before B came)")
    assert math.isnan(f.pct_of_fair)  # B had the whole limit: no share to compare with


def test_weights_are_given_to_ticketq_as_its_setting_reads_them() -> None:
    assert weights_env((1, 3)) == "acct-a=1,acct-b=3"


def test_issue_13_scenarios_are_chosen_by_name_with_sizes_from_the_command_line() -> None:
    args = parse_args(["--scenarios", "fair,cap", "--fair-tickets", "100", "--cap", "4"])
    assert args.chosen == {"fair", "cap"}
    size = sizes(args)
    fair, cap = fair_options(args, size), cap_options(args, size)
    assert (fair.a_tickets, fair.b_tickets, fair.rpm, fair.weights) == (100, 60, 600, (1, 3))
    assert (cap.cap, cap.tickets, cap.slow_rpm, cap.slow_baseline) == (4, 3_000, 1_000, False)
    quick = sizes(parse_args(["--quick"]))
    assert quick.cap_tickets < 3_000 and quick.fair_tickets < 1_500


def test_settings_for_every_ticketq_phase_come_as_ticketq_name_value() -> None:
    args = parse_args(["--ticketq-env", "TICKETQ_ACCOUNT_RATE_LIMIT=120/min"])
    assert args.extra_env == {"TICKETQ_ACCOUNT_RATE_LIMIT": "120/min"}
    with pytest.raises(SystemExit):
        parse_args(["--ticketq-env", "STACKONE_API_KEY=x"])
