"""The README's answer table, row by row: what a delivery decides for each StackOne answer,
each admission refusal and each claimed job, without Redis, HTTP or a clock.

Failures for a status are built with ``kind_for_status``, as the client builds them, so
each row is tested from the status to the decision. Every backoff draw here is its
ceiling (1 s after the first attempt, doubling), so waits are exact.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from worker.contract import ErrorKind, JobSpec, JobState, TicketIds
from worker.delivery.decisions import (
    DEFAULT_429_PAUSE,
    IN_LINE,
    Again,
    Decision,
    Decisions,
    Job,
    KeyAccepted,
    KeyFailing,
    KeyRefused,
    Moment,
    PauseAccount,
    PauseKey,
    Reconcile,
)
from worker.delivery.reconcile import Candidates
from worker.delivery.retry import RetryPolicy
from worker.limits.keyhealth import KeyRefusal
from worker.limits.rate import LATE, Admission, Reason
from worker.settings import Settings
from worker.stackone.answers import Failure, TicketCreated, kind_for_status
from worker.store.jobs import Claim, Lane, Transition, stamp

NOW = 1_700_000_000.0
SENT_AT = NOW - 2.0
CALM = Moment(now=NOW, spent=0.0, stopping=False)
STOPPING = dataclasses.replace(CALM, stopping=True)
DAY = 24 * 3600.0
SPEC = JobSpec.model_validate({"account_id": "acct", "ticket": {"title": "Checkout is down"}})
TICKET = TicketIds(id="t-1", remote_id="PROJ-1")
CONNECTION_REFUSED = Failure(ErrorKind.RETRYABLE, "could not connect: connection refused")
READ_TIMEOUT = Failure(ErrorKind.AMBIGUOUS, "read timeout after 75s; the request was sent")


class Top(random.Random):
    """Every jitter draw is the top of its range: the backoff ceiling itself."""

    def random(self) -> float:
        return 1.0


def rules(**overrides: Any) -> Decisions:
    values: dict[str, Any] = {
        "max_attempts": 3,
        "backoff_base": 1.0,
        "backoff_max": 600.0,
        "inprocess_max_delay": 5.0,
        "auth_pause": 30.0,
        "scheduler_interval": 1.0,
        "on_ambiguous": "reconcile",
    }
    settings = Settings(**(values | overrides))
    return Decisions(settings, RetryPolicy(settings, rng=Top()))


def claimed(
    attempts: int = 0,
    uncertain_since: float | None = None,
    lane: str = "interactive",
    reconcile_first: bool = False,
    failing_since: float | None = None,
) -> Job:
    """A job as claimed, ``attempts`` made by earlier deliveries, the first of them failed
    at ``failing_since``."""
    claim = Claim(
        job_id="job-1",
        token="token",
        spec_json=SPEC.model_dump_json(),
        attempts=attempts,
        uncertain_since=uncertain_since,
        reconcile_first=reconcile_first,
        lane="bulk" if lane == "bulk" else "interactive",
        failing_since=failing_since,
    )
    return Job(claim, SPEC, uncertain_since, failing_since=failing_since)


def sent(attempts_before: int = 0, probe: bool = False, failing_since: float | None = None) -> Job:
    """A job whose request in this delivery went out at ``SENT_AT``."""
    return claimed(attempts_before, failing_since=failing_since).sent(SENT_AT, probe)


def answer(
    status: int, retry_after: str | None = None, provider_errors: list[Any] | None = None
) -> Failure:
    return Failure(kind_for_status(status), f"HTTP {status}", status, provider_errors, retry_after)


def http_date(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, UTC), usegmt=True)


def recorded(decision: Decision | Reconcile, state: JobState) -> Transition:
    assert isinstance(decision, Decision), decision
    assert isinstance(decision.step, Transition), decision.step
    assert decision.step.state == state
    return decision.step


def handed_back(decision: Decision | Reconcile, due_in: float, kind: ErrorKind) -> Transition:
    """The job waits in the due index, due ``due_in`` seconds after ``NOW``."""
    waiting = recorded(decision, JobState.RETRYING)
    assert waiting.due_at == pytest.approx(NOW + due_in)
    assert waiting.error is not None and waiting.error.kind == kind
    return waiting


def ended(decision: Decision | Reconcile, kind: ErrorKind) -> Transition:
    done = recorded(decision, JobState.FAILED)
    assert done.error is not None and done.error.kind == kind
    return done


# --- 201 -------------------------------------------------------------------------------


@pytest.mark.parametrize("probe", [False, True])
def test_a_201_succeeds_with_the_ticket_counts_the_attempt_and_tells_the_key_health(
    probe: bool,
) -> None:
    decision = rules().answered(sent(probe=probe), TicketCreated(TICKET), CALM)

    done = recorded(decision, JobState.SUCCEEDED)
    assert done.ticket == TICKET and done.attempts == 1
    assert decision.effects == (KeyAccepted(probe),)


# --- 429 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [
        ("20", 20.0),
        ("1", 1.0),  # even a short one: every worker waits, not just this delivery
        (http_date(NOW + 45), 45.0),
        (None, DEFAULT_429_PAUSE),
        ("soon", DEFAULT_429_PAUSE),
    ],
)
def test_a_429_from_stackone_pauses_the_key_for_its_retry_after_without_counting_the_attempt(
    retry_after: str | None, pause: float
) -> None:
    decision = rules().answered(sent(), answer(429, retry_after), CALM)

    waiting = handed_back(decision, pause, ErrorKind.RETRYABLE)
    assert waiting.attempts == 0 and decision.job.attempts == 0
    assert decision.effects == (PauseKey(pause),)


@pytest.mark.parametrize(("retry_after", "pause"), [("20", 20.0), (None, DEFAULT_429_PAUSE)])
def test_a_429_carrying_provider_errors_pauses_only_the_linked_account(
    retry_after: str | None, pause: float
) -> None:
    throttled = answer(429, retry_after, provider_errors=[{"status": 429}])

    decision = rules().answered(sent(), throttled, CALM)

    assert handed_back(decision, pause, ErrorKind.RETRYABLE).attempts == 0
    assert decision.effects == (PauseAccount("acct", pause),)


def test_a_429_on_the_last_attempt_does_not_exhaust_the_job() -> None:
    decision = rules().answered(sent(attempts_before=2), answer(429, "5"), CALM)

    assert handed_back(decision, 5.0, ErrorKind.RETRYABLE).attempts == 0


# --- 500, 502, 503, 504, connection refused -------------------------------------------

RETRYABLE = [answer(500), answer(502), answer(503), answer(504), CONNECTION_REFUSED]


@pytest.mark.parametrize("failure", RETRYABLE)
def test_a_server_error_or_refused_connection_is_retried_in_the_worker_when_the_backoff_is_short(
    failure: Failure,
) -> None:
    decision = rules().answered(sent(), failure, CALM)

    assert decision.step == Again(1.0) and decision.job.attempts == 1
    assert decision.job.failing_since == SENT_AT
    assert decision.effects == (KeyFailing(False, failure.message),)


@pytest.mark.parametrize("failure", RETRYABLE)
def test_the_backoff_doubles_with_the_attempts_made_and_never_undercuts_retry_after(
    failure: Failure,
) -> None:
    second = rules().answered(sent(attempts_before=1), failure, CALM)
    floored = rules().answered(sent(), dataclasses.replace(failure, retry_after="3"), CALM)

    assert second.step == Again(2.0)
    assert floored.step == Again(3.0)


@pytest.mark.parametrize("failure", RETRYABLE)
def test_a_server_error_with_a_long_retry_after_is_handed_back_due_then(
    failure: Failure,
) -> None:
    decision = rules().answered(sent(), dataclasses.replace(failure, retry_after="30"), CALM)

    waiting = handed_back(decision, 30.0, ErrorKind.RETRYABLE)
    assert waiting.attempts == 1 and waiting.error is not None
    assert waiting.error.message == failure.message


@pytest.mark.parametrize("failure", RETRYABLE)
def test_a_delivery_that_has_waited_its_share_hands_even_a_short_retry_back(
    failure: Failure,
) -> None:
    late = dataclasses.replace(CALM, spent=4.5)

    decision = rules().answered(sent(), failure, late)

    handed_back(decision, 1.0, ErrorKind.RETRYABLE)


@pytest.mark.parametrize("failure", RETRYABLE)
def test_a_server_error_on_the_last_attempt_an_attempts_cap_allows_ends_the_job_exhausted(
    failure: Failure,
) -> None:
    decision = rules().answered(sent(attempts_before=2), failure, CALM)

    done = ended(decision, ErrorKind.EXHAUSTED)
    assert done.error is not None
    assert done.error.message == f"gave up after 3 attempts over 2s; last error: {failure.message}"
    assert done.attempts == 1
    assert decision.effects == (KeyFailing(False, failure.message),)


@pytest.mark.parametrize("failure", RETRYABLE)
def test_the_first_failure_starts_the_retry_budget_and_is_kept_with_the_job(
    failure: Failure,
) -> None:
    decision = rules().answered(sent(), dataclasses.replace(failure, retry_after="30"), CALM)

    waiting = handed_back(decision, 30.0, ErrorKind.RETRYABLE)
    assert waiting.fields == {"failing_since": stamp(SENT_AT)}


def test_a_later_failure_keeps_the_first_failures_time() -> None:
    decision = rules(max_attempts=0).answered(
        sent(3, failing_since=NOW - 600), answer(503, "30"), CALM
    )

    waiting = handed_back(decision, 30.0, ErrorKind.RETRYABLE)
    assert waiting.fields == {"failing_since": stamp(NOW - 600)}


@pytest.mark.parametrize("failure", RETRYABLE)
def test_without_an_attempts_cap_a_job_retries_for_the_whole_budget_whatever_its_attempts(
    failure: Failure,
) -> None:
    job = sent(attempts_before=60, failing_since=NOW - DAY + 60)

    decision = rules(max_attempts=0).answered(job, failure, CALM)

    waiting = handed_back(decision, 600.0, ErrorKind.RETRYABLE)  # the backoff, capped
    assert waiting.attempts == 1


@pytest.mark.parametrize("failure", RETRYABLE)
def test_a_failure_once_the_first_is_older_than_the_budget_ends_the_job_exhausted(
    failure: Failure,
) -> None:
    job = sent(attempts_before=40, failing_since=NOW - DAY)

    decision = rules(max_attempts=0).answered(job, failure, CALM)

    done = ended(decision, ErrorKind.EXHAUSTED)
    assert done.error is not None
    assert done.error.message == (
        f"gave up after 41 attempts over 24.0 h; last error: {failure.message}"
    )


def test_the_budget_is_retry_for_seconds() -> None:
    job = sent(attempts_before=5, failing_since=NOW - 90)

    in_time = rules(max_attempts=0, retry_for=120).answered(job, answer(503, "60"), CALM)
    too_late = rules(max_attempts=0, retry_for=90).answered(job, answer(503), CALM)

    handed_back(in_time, 60.0, ErrorKind.RETRYABLE)
    ended(too_late, ErrorKind.EXHAUSTED)


def test_an_ambiguous_answer_once_the_budget_is_spent_is_parked_not_exhausted() -> None:
    job = sent(attempts_before=9, failing_since=NOW - DAY - 1)

    decision = rules(max_attempts=0, on_ambiguous="retry").answered(job, READ_TIMEOUT, CALM)

    done = ended(decision, ErrorKind.UNCERTAIN)
    assert done.error is not None and "gave up after 10 attempts over 24.0 h" in done.error.message


def test_the_probe_of_an_outage_failing_again_says_so_to_the_outage() -> None:
    decision = rules().answered(sent(probe=True), answer(503), CALM)

    assert decision.effects == (KeyFailing(True, "HTTP 503"),)


def test_a_stopping_worker_hands_a_short_retry_back_instead_of_waiting() -> None:
    decision = rules().answered(sent(), answer(503), STOPPING)

    handed_back(decision, 1.0, ErrorKind.RETRYABLE)


# --- 400, 404, 409, 412, 422, 501 -----------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 409, 412, 422, 501])
def test_a_refusal_of_the_request_fails_the_job_at_once_keeping_stackones_words(
    status: int,
) -> None:
    refusal = answer(status, provider_errors=[{"raw": "bad priority"}])

    decision = rules().answered(sent(), refusal, CALM)

    done = ended(decision, ErrorKind.TERMINAL)
    assert done.error is not None and done.error.message == f"HTTP {status}"
    assert done.error.status == status and done.error.provider_errors == [{"raw": "bad priority"}]
    assert done.attempts == 1 and decision.effects == ()


def test_a_request_the_client_could_not_send_as_given_fails_as_invalid() -> None:
    invalid = Failure(ErrorKind.INVALID, "account id is not a valid HTTP header value")

    ended(rules().answered(sent(), invalid, CALM), ErrorKind.INVALID)


# --- 401, 403 --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("attempts_before", [0, 2])
def test_a_refused_key_marks_the_key_refused_and_the_job_waits_the_pause_uncounted(
    status: int, attempts_before: int
) -> None:
    decision = rules().answered(sent(attempts_before), answer(status), CALM)

    waiting = handed_back(decision, 30.0, ErrorKind.BAD_CREDENTIALS)
    assert waiting.attempts == 0
    assert decision.effects == (KeyRefused(status, f"HTTP {status}", NOW),)


# --- 408, read timeout ----------------------------------------------------------------

AMBIGUOUS = [answer(408), READ_TIMEOUT]


@pytest.mark.parametrize("failure", AMBIGUOUS)
def test_an_ambiguous_answer_under_reconcile_is_handed_back_uncertain_since_the_request(
    failure: Failure,
) -> None:
    decision = rules(on_ambiguous="reconcile").answered(sent(), failure, CALM)

    waiting = handed_back(decision, 1.0, ErrorKind.AMBIGUOUS)
    assert waiting.uncertain_since == SENT_AT and waiting.attempts == 1
    assert waiting.fields == {"failing_since": stamp(SENT_AT)}
    assert decision.effects == ()  # not a sign of an outage: StackOne may have made it


@pytest.mark.parametrize("failure", AMBIGUOUS)
def test_an_ambiguous_answer_under_retry_is_sent_again_in_the_worker(failure: Failure) -> None:
    decision = rules(on_ambiguous="retry").answered(sent(), failure, CALM)

    assert decision.step == Again(1.0)
    assert decision.job.uncertain_since == SENT_AT and not decision.job.settled


@pytest.mark.parametrize("failure", AMBIGUOUS)
def test_an_ambiguous_answer_under_park_ends_the_job_for_a_person_to_decide(
    failure: Failure,
) -> None:
    decision = rules(on_ambiguous="park").answered(sent(), failure, CALM)

    done = ended(decision, ErrorKind.UNCERTAIN)
    assert done.error is not None
    assert done.error.message == f"the ticket may exist: {failure.message}"


@pytest.mark.parametrize("policy", ["reconcile", "retry"])
def test_an_ambiguous_answer_on_the_last_attempt_is_parked_not_exhausted(policy: str) -> None:
    decision = rules(on_ambiguous=policy).answered(sent(attempts_before=2), READ_TIMEOUT, CALM)

    done = ended(decision, ErrorKind.UNCERTAIN)
    assert done.error is not None and "gave up after 3 attempts over 2s" in done.error.message


# --- not admitted ----------------------------------------------------------------------

ORDINARY_WAITS = [Reason.KEY_PAUSED, Reason.ACCOUNT_PAUSED, Reason.ACCOUNT_BUSY]


@pytest.mark.parametrize("reason", [Reason.KEY_PAUSED, Reason.ACCOUNT_PAUSED])
def test_a_short_wait_for_the_limits_is_spent_in_the_worker(reason: Reason) -> None:
    decision = rules().not_admitted(claimed(), Admission(reason, 0.5), None, CALM)

    assert decision.step == Again(0.5) and decision.effects == ()


def test_a_job_held_back_by_its_accounts_cap_waits_for_a_slot_while_it_may() -> None:
    """The runner sends it as soon as a slot comes free; the cap's wait (a poll's, at most
    a second) would only send it round again to be refused."""
    moment = dataclasses.replace(CALM, spent=1.5)

    decision = rules().not_admitted(claimed(), Admission(Reason.ACCOUNT_BUSY, 0.5), None, moment)

    assert decision.job.awaits_slot and decision.step == Again(3.5)


@pytest.mark.parametrize("reason", ORDINARY_WAITS)
def test_a_long_wait_for_the_limits_hands_the_job_back_unsent_and_uncounted(
    reason: Reason,
) -> None:
    decision = rules().not_admitted(claimed(), Admission(reason, 12.0), None, CALM)

    waiting = handed_back(decision, 12.0, ErrorKind.RETRYABLE)
    name = reason.name.lower().replace("_", " ")
    assert waiting.error is not None
    assert waiting.error.message == f"waiting for the rate limit ({name}, 12.0s)"
    assert waiting.attempts == 0
    assert not waiting.held_back  # the fleet's numbers count the rate's apart


def test_a_stopping_worker_does_not_wait_for_the_limits_in_process() -> None:
    decision = rules().not_admitted(claimed(), Admission(Reason.KEY_PAUSED, 0.5), None, STOPPING)

    handed_back(decision, 0.5, ErrorKind.RETRYABLE)


def test_a_job_held_back_by_an_outage_briefly_waits_for_the_probe_in_the_worker() -> None:
    decision = rules().not_admitted(claimed(), Admission(Reason.OUTAGE, 0.5), None, CALM)

    assert decision.step == Again(0.5) and decision.effects == ()


def test_a_job_held_back_by_an_outage_waits_past_the_pause_unfailed_and_uncounted() -> None:
    job = claimed(attempts=4, failing_since=NOW - DAY - 1)  # even past its budget

    decision = rules().not_admitted(job, Admission(Reason.OUTAGE, 12.0), None, CALM)

    waiting = handed_back(decision, 12.0 + 1.0, ErrorKind.RETRYABLE)  # and a backoff draw
    assert waiting.error is not None
    assert waiting.error.message.startswith("waiting: StackOne is failing for every request")
    assert waiting.attempts == 0 and decision.effects == ()
    assert waiting.fields == {"failing_since": stamp(NOW - DAY - 1)}
    assert not waiting.held_back  # an outage holds it, not the rate


def test_a_job_held_back_by_a_refused_key_waits_past_the_pause_naming_the_refusal() -> None:
    refusal = KeyRefusal(401, "invalid key", since=NOW - 5, paused_until=NOW + 25)

    decision = rules().not_admitted(claimed(), Admission(Reason.KEY_REFUSED, 25.0), refusal, CALM)

    waiting = handed_back(decision, 25.0 + 1.0, ErrorKind.BAD_CREDENTIALS)
    assert waiting.error is not None and waiting.error.status == 401
    assert "refused the API key (401: invalid key)" in waiting.error.message
    assert waiting.attempts == 0 and decision.effects == ()


def test_a_job_held_back_by_a_refused_key_whose_refusal_is_gone_still_waits() -> None:
    decision = rules().not_admitted(claimed(), Admission(Reason.KEY_REFUSED, 2.0), None, CALM)

    waiting = handed_back(decision, 2.0 + 1.0, ErrorKind.BAD_CREDENTIALS)
    assert waiting.error is not None and waiting.error.status is None
    assert waiting.error.message.startswith("waiting: StackOne refused the API key; one request")


@pytest.mark.parametrize("lane", ["interactive", "bulk"])
def test_a_job_given_its_moment_waits_for_it_in_the_worker_then_goes_unasked(lane: Lane) -> None:
    decision = rules().not_admitted(claimed(lane=lane), Admission(Reason.RESERVED, 0.4), None, CALM)

    assert decision.step == Again(0.4)
    assert decision.job.reserved(NOW + 0.4) and decision.job.reserved(NOW + 0.4 + LATE)
    assert not decision.job.reserved(NOW + 0.4 + LATE + 0.01)  # too late: it asks again
    assert not decision.job.sent(NOW + 0.4, probe=False).reserved(NOW + 0.4)


def test_a_stopping_worker_hands_back_a_job_given_a_moment_instead_of_waiting_for_it() -> None:
    decision = rules().not_admitted(claimed(), Admission(Reason.RESERVED, 0.4), None, STOPPING)

    assert handed_back(decision, 0.4, ErrorKind.RETRYABLE).held_back


@pytest.mark.parametrize("lane", ["interactive", "bulk"])
def test_a_job_in_its_lanes_line_is_handed_back_until_released_unsent_and_uncounted(
    lane: Lane,
) -> None:
    decision = rules().not_admitted(claimed(lane=lane), Admission(Reason.LINE, 75.0), None, CALM)

    waiting = handed_back(decision, 75.0, ErrorKind.RETRYABLE)
    assert waiting.held_back and waiting.attempts == 0
    assert waiting.error is not None and waiting.error.message == IN_LINE


def test_a_stopping_worker_lets_no_job_wait_for_the_rate() -> None:
    assert rules().holds(STOPPING) == {"interactive": 0.0, "bulk": 0.0}
    assert rules().holds(dataclasses.replace(CALM, spent=0.5)) == {"interactive": 4.5, "bulk": 1.5}


def test_a_bulk_job_waiting_for_its_account_takes_the_ordinary_wait() -> None:
    decision = rules().not_admitted(
        claimed(lane="bulk"), Admission(Reason.ACCOUNT_BUSY, 3.0), None, CALM
    )

    assert decision.step == Again(5.0)


def test_a_job_held_back_by_its_accounts_cap_waits_for_a_slot_and_no_other_wait_does() -> None:
    """The runner ends that wait as soon as a slot of the account comes free; a wait for
    the rate or a pause is slept out, whatever the job waited for before."""
    busy = rules().not_admitted(claimed(), Admission(Reason.ACCOUNT_BUSY, 1.0), None, CALM)
    then_rate = rules().not_admitted(busy.job, Admission(Reason.RESERVED, 0.5), None, CALM)

    assert busy.job.awaits_slot and busy.step == Again(5.0)
    assert not then_rate.job.awaits_slot
    assert not busy.job.sent(NOW, probe=False).awaits_slot


# --- after claiming --------------------------------------------------------------------


def test_a_claimed_job_with_attempts_left_is_sent_at_once() -> None:
    decision = rules().after_claiming(claimed(attempts=2), CALM)

    assert isinstance(decision, Decision) and decision.step == Again(0.0)


def test_a_claimed_job_with_every_attempt_a_cap_allows_used_is_parked_unsent() -> None:
    done = ended(rules().after_claiming(claimed(attempts=3), CALM), ErrorKind.UNCERTAIN)

    assert done.error is not None and "gave up after 3 attempts" in done.error.message
    assert done.attempts == 0


def test_without_an_attempts_cap_a_claimed_job_is_sent_whatever_its_attempts() -> None:
    decision = rules(max_attempts=0).after_claiming(claimed(attempts=100), CALM)

    assert isinstance(decision, Decision) and decision.step == Again(0.0)


def test_a_claimed_job_past_its_retry_budget_still_gets_its_last_try() -> None:
    job = claimed(attempts=30, failing_since=NOW - 2 * DAY)

    decision = rules(max_attempts=0).after_claiming(job, CALM)

    assert isinstance(decision, Decision) and decision.step == Again(0.0)


def test_an_uncertain_job_is_parked_under_park() -> None:
    decision = rules(on_ambiguous="park").after_claiming(claimed(uncertain_since=SENT_AT), CALM)

    done = ended(decision, ErrorKind.UNCERTAIN)
    assert done.error is not None and "an earlier attempt may have made it" in done.error.message


def test_an_uncertain_job_is_sent_again_under_retry() -> None:
    decision = rules(on_ambiguous="retry").after_claiming(claimed(uncertain_since=SENT_AT), CALM)

    assert isinstance(decision, Decision) and decision.step == Again(0.0)
    assert decision.job.uncertain_since == SENT_AT


@pytest.mark.parametrize(
    ("policy", "reconcile_first"), [("reconcile", False), ("park", True), ("retry", True)]
)
def test_an_uncertain_job_is_reconciled_first_under_reconcile_or_when_replayed(
    policy: str, reconcile_first: bool
) -> None:
    job = claimed(uncertain_since=SENT_AT, reconcile_first=reconcile_first)

    decision = rules(on_ambiguous=policy).after_claiming(job, CALM)

    assert decision == Reconcile(job, SENT_AT)


# --- after reconciling -----------------------------------------------------------------


SETTLED = NOW - 301.0  # an uncertain attempt older than the default settle time (300 s)


def test_a_ticket_found_by_reconciling_is_adopted_without_sending() -> None:
    job = claimed(attempts=1, uncertain_since=SENT_AT)
    found = Candidates(same=(TICKET, TicketIds(id="t-2", remote_id=None)))

    done = recorded(rules().after_reconciling(job, found, CALM), JobState.SUCCEEDED)

    assert done.ticket == TICKET and done.attempts == 0


def test_a_ticket_told_apart_by_its_title_alone_is_left_to_a_person_naming_the_candidates() -> None:
    found = Candidates(maybe=tuple(f"t-{n}" for n in range(12)))
    waiting = rules().after_reconciling(claimed(1, uncertain_since=SENT_AT), found, CALM)
    handed_back(waiting, 2.0, ErrorKind.AMBIGUOUS)  # its own may be listed yet: look again

    decision = rules().after_reconciling(claimed(1, uncertain_since=SETTLED), found, CALM)

    error = ended(decision, ErrorKind.UNCERTAIN).error
    assert error is not None
    assert "12 ticket(s) with the job's title" in error.message
    assert "t-0, t-1" in error.message and "t-9 and 2 more" in error.message
    assert "t-10" not in error.message


def test_a_same_ticket_is_adopted_even_when_others_match_on_the_title_alone() -> None:
    found = Candidates(same=(TICKET,), maybe=("t-9",))

    decision = rules().after_reconciling(claimed(1, uncertain_since=SENT_AT), found, CALM)

    assert recorded(decision, JobState.SUCCEEDED).ticket == TICKET


@pytest.mark.parametrize(("ago", "due_in"), [(0.2, 1.0), (2.0, 2.0), (40.0, 40.0), (290.0, 10.0)])
def test_no_ticket_listed_soon_after_the_attempt_waits_for_the_listing_at_growing_intervals(
    ago: float, due_in: float
) -> None:
    job = claimed(1, uncertain_since=NOW - ago)

    decision = rules().after_reconciling(job, Candidates(), CALM)

    waiting = handed_back(decision, due_in, ErrorKind.AMBIGUOUS)
    assert waiting.uncertain_since == NOW - ago  # still uncertain: it reconciles again
    assert waiting.attempts == 0


def test_no_ticket_listed_once_the_settle_time_has_passed_sends_again_no_longer_uncertain() -> None:
    decision = rules().after_reconciling(claimed(1, uncertain_since=SETTLED), Candidates(), CALM)

    assert decision.step == Again(0.0)
    assert decision.job.uncertain_since is None and decision.job.settled
    later = rules().answered(decision.job.sent(NOW, False), answer(503, "30"), CALM)
    waiting = handed_back(later, 30.0, ErrorKind.RETRYABLE)
    assert waiting.uncertain_since is None
    assert waiting.fields == {
        "uncertain_since": "",
        "reconcile_first": "",
        "failing_since": stamp(NOW),
    }


def test_a_settle_time_of_zero_sends_again_at_once() -> None:
    job = claimed(1, uncertain_since=NOW - 0.1)

    decision = rules(reconcile_settle=0).after_reconciling(job, Candidates(), CALM)

    assert decision.step == Again(0.0)


def test_no_ticket_found_for_a_job_with_every_attempt_used_parks_it() -> None:
    found = Candidates()

    decision = rules().after_reconciling(claimed(3, uncertain_since=SETTLED), found, CALM)

    ended(decision, ErrorKind.UNCERTAIN)


@pytest.mark.parametrize(("retry_after", "due_in"), [(None, 2.0), ("45", 45.0)])
def test_a_listing_that_failed_leaves_the_job_uncertain_to_reconcile_again_later(
    retry_after: str | None, due_in: float
) -> None:
    job = claimed(attempts=2, uncertain_since=SENT_AT, reconcile_first=True)

    decision = rules().after_reconciling(job, answer(503, retry_after), CALM)

    waiting = handed_back(decision, due_in, ErrorKind.RETRYABLE)
    assert waiting.error is not None
    assert waiting.error.message == "reconciling before sending again: HTTP 503"
    assert waiting.uncertain_since == SENT_AT and waiting.attempts == 0
    assert waiting.fields == {}


# --- decisions are values --------------------------------------------------------------


def test_a_decision_returns_the_changed_job_and_leaves_the_callers_job_as_it_was() -> None:
    job = sent()

    decision = rules().answered(job, answer(429, "20"), CALM)

    assert (job.attempts, decision.job.attempts) == (1, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.attempts = 5  # type: ignore[misc]


@pytest.mark.parametrize("retry_after", ["1000000000000", http_date(NOW + 10**9)])
def test_a_429_pauses_no_longer_than_the_backoff_cap_whatever_its_retry_after_says(
    retry_after: str,
) -> None:
    longest = 600.0  # the backoff_max of rules()

    decision = rules().answered(sent(), answer(429, retry_after), CALM)

    assert handed_back(decision, longest, ErrorKind.RETRYABLE).attempts == 0
    assert decision.effects == (PauseKey(longest),)
