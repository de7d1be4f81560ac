"""Reconciliation, end to end: a job whose answer was lost finds and adopts the ticket its
own attempt created, and no other (README, "One ticket per job, and its own"; issue 10).

Real ``celery worker`` processes against the stand-in, which creates the ticket and then
drops the connection (or answers 408, creating nothing), while someone else creates
same-titled tickets in the window, the listing lags creation, or shows tickets as a
provider maps them back (HTML content, lists reversed, tags lowercased) or by title only.
Each test proves, by ticket id against the stand-in's own listing and counts:
- a lost answer adopts the job's own ticket, never someone else's same-titled one, with the
  listing verbatim or provider-shaped;
- behind a listing that lags 5 s and the production settle time, the job adopts its ticket
  once listed and nothing is sent twice; a 408 that created nothing waits the settle time,
  then is sent once more;
- jobs of one bulk message, reconciled in one delivery: same title and different content,
  each adopts its own; identical bodies (2 and 4 jobs), each adopts a different one;
- a listing that carries only titles leaves the job to a person (failed ``uncertain``,
  naming the candidates), and sends nothing again;
- with ``TICKETQ_MARK_TICKETS=tag``, identical jobs and someone else's identical ticket:
  each job adopts exactly the ticket carrying its own marker.

Tickets someone else creates carry a unified custom field that matching never compares
(``ORIGIN``), so that the test, and only the test, can tell them from ours. The stacks
where jobs must be reconciled together retry a lost answer within a millisecond and have
a rate limit high enough to send a batch in one round, so that the batch's lost attempts
fall due in one scheduler tick and ride one message back (checked: one claim for all).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ops.fakeapi_client import FakeApiControl, ListStyle
from ops.stack import LocalStack
from producers.client import Producer
from tests.chaos.conftest import StackFactory
from tests.chaos.support import (
    ACCOUNT,
    Row,
    listed_tickets,
    wait_final,
    worker_logs,
)
from worker.contract import ErrorKind, JobRecord, JobState
from worker.delivery.matching import MARKER_TAG_PREFIX
from worker.delivery.runner import ADOPTED, RESENT
from worker.settings import Settings
from worker.store.keys import job_key

pytestmark = pytest.mark.chaos

Report = Callable[[Row], None]

ORIGIN = {"written_by": "someone else"}  # on others' tickets; matching never compares it
DROP: dict[str, Any] = {"create_then_drop": True}
LAG_MS = 5000
SHORT_SETTLE = 6.0
PRODUCTION_SETTLE = Settings.model_fields["reconcile_settle"].default

# A lost answer falls due again within a millisecond, and a batch goes out in one round.
TOGETHER = {"TICKETQ_BACKOFF_BASE": "0.001", "TICKETQ_RATE_LIMIT": "60000/min"}
ENVS = {
    "short settle": {**TOGETHER, "TICKETQ_RECONCILE_SETTLE": str(SHORT_SETTLE)},
    "production settle": {"TICKETQ_RECONCILE_SETTLE": str(PRODUCTION_SETTLE)},
    "marked": {**TOGETHER, "TICKETQ_MARK_TICKETS": "tag"},
}


@dataclass
class Stand:
    stack: LocalStack
    producer: Producer
    fake: FakeApiControl


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Stand]]:
    """The stack for an env of ``ENVS``, started when a test first asks for it."""
    factory = StackFactory(tmp_path_factory.mktemp("reconcile"))
    started: dict[str, Stand] = {}

    def stand_for(env: str) -> Stand:
        if env not in started:
            stack = factory(workers=1, env=ENVS[env])
            started[env] = Stand(stack, Producer(stack.settings()), factory.fake_api(stack))
        return started[env]

    try:
        yield stand_for
    finally:
        for each in started.values():
            each.producer.close()
        factory.stop_all()


@dataclass
class Outcome:
    """How a scenario ended, read from outside the worker."""

    found: dict[str, JobRecord]
    ours: list[dict[str, Any]]  # tickets our client created with the title, as sent
    elsewhere: list[dict[str, Any]]  # tickets someone else created with it
    counted: tuple[int, int]  # the stand-in's own counts of the two
    arrivals: list[float]  # create requests for the title, Unix times
    adopted: dict[str, str]  # job id -> the ticket the worker log says it adopted
    seconds: float

    @property
    def held(self) -> dict[str, str | None]:
        return {job: r.ticket.id if r.ticket else None for job, r in self.found.items()}

    def row(self, scenario: str, fault: str, own: Mapping[str, set[str]], node: pytest.Item) -> Row:
        uncertain = [
            r for r in self.found.values() if r.error and r.error.kind == ErrorKind.UNCERTAIN
        ]
        return Row.of(
            scenario,
            fault,
            self.found,
            tickets=len(self.ours),
            elsewhere=len(self.elsewhere),
            duplicates=max(0, len(self.ours) - len(self.found)),
            wrong=wrong_adoptions(self.held, own),
            adopted_uncertain=f"adopted {len(self.adopted)}, uncertain {len(uncertain)}",
            seconds=self.seconds,
            nodeid=node.nodeid,
        )

    def check_counts(self, where: LocalStack) -> None:
        """The stand-in's counts agree with its listing; no create request was repeated."""
        assert self.counted == (len(self.ours), len(self.elsewhere)), where.config.run_dir
        assert len(self.arrivals) == len(self.found), f"sent again; logs in {where.config.run_dir}"


def start(stand: Stand, style: ListStyle, lag_ms: float = 0.0) -> tuple[float, int]:
    """Set the listing for this scenario; returns the clock and the others' count so far."""
    stand.fake.configure(list_style=style, list_lag_ms=lag_ms)
    return time.monotonic(), int(stand.fake.stats()["created_elsewhere"])


def finish(stand: Stand, title: str, job_ids: Sequence[str], since: tuple[float, int]) -> Outcome:
    found = wait_final(stand.producer, list(job_ids), timeout=40)
    seconds = time.monotonic() - since[0]
    stand.fake.configure(list_style="verbatim", list_lag_ms=0)  # the truth: all, as sent
    titled = [t for t in listed_tickets(stand.stack) if t["title"] == title]
    stats = stand.fake.stats()
    log = worker_logs(stand.stack)
    adopted = {
        job: ticket
        for job, ticket in re.findall(rf"job (\S+): {ADOPTED} (\S+)", log)
        if job in found
    }
    return Outcome(
        found=found,
        ours=[t for t in titled if t.get("unified_custom_fields") != ORIGIN],
        elsewhere=[t for t in titled if t.get("unified_custom_fields") == ORIGIN],
        counted=(stats["created_by_title"].get(title, 0), stats["created_elsewhere"] - since[1]),
        arrivals=stand.fake.arrivals(title),
        adopted=adopted,
        seconds=seconds,
    )


def wrong_adoptions(held: Mapping[str, str | None], own: Mapping[str, set[str]]) -> int:
    """Jobs holding a ticket they did not create: someone else's, or another job's."""
    holders = Counter(ticket for ticket in held.values() if ticket)
    return sum(
        1 for job, t in held.items() if t and (t not in own.get(job, set()) or holders[t] > 1)
    )


def own_by_body(
    ours: list[dict[str, Any]], bodies: Mapping[str, dict[str, Any]]
) -> dict[str, set[str]]:
    """Each job's tickets: ours carrying every field the job sent, as sent."""
    return {
        job: {t["id"] for t in ours if all(t.get(k) == v for k, v in body.items())}
        for job, body in bodies.items()
    }


def own_by_marker(ours: list[dict[str, Any]], job_ids: Sequence[str]) -> dict[str, set[str]]:
    return {
        job: {t["id"] for t in ours if MARKER_TAG_PREFIX + job in t.get("tags", [])}
        for job in job_ids
    }


def one_delivery(stand: Stand, job_ids: Sequence[str]) -> bool:
    """Whether the jobs' last claim was one claim (a delivery claims its batch at one time)."""
    claimed = {stand.producer.store.redis.hget(job_key(job), "claimed_at") for job in job_ids}
    return len(claimed) == 1


def seen(check: Callable[[], bool], within: float) -> bool:
    """Whether ``check`` came true within the time (polled; the scenario asserts it later,
    after its row is reported)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def titled(name: str) -> str:
    return f"Checkout  is down {name}-{uuid.uuid4().hex[:8]}"  # two spaces: providers collapse


def plain(text: str) -> list[dict[str, str]]:
    return [{"plain": text}]


def by_others(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {**body, "content": plain(text), "unified_custom_fields": ORIGIN}


# --- 1: someone else's same-titled ticket in the window --------------------------------------

TEXTS = {
    "plain": "Card payments fail for EU customers.\nSteps: pay & <confirm>, then wait.",
    # A report about entities shown raw: its text must survive the provider's escaping.
    "quoting html": "The invoice shows &amp; instead of & since the upgrade.",
}


@pytest.mark.parametrize(
    ("style", "text"), [("verbatim", "plain"), ("provider", "plain"), ("provider", "quoting html")]
)
def test_a_lost_answer_adopts_the_jobs_own_ticket_never_someone_elses_same_titled_one(
    stand: Callable[[str], Stand],
    style: ListStyle,
    text: str,
    report: Report,
    request: pytest.FixtureRequest,
) -> None:
    one = stand("short settle")
    title = titled("elsewhere")
    body = {
        "title": title,
        "content": plain(TEXTS[text]),
        "tags": ["Payments", "EU"],
        "assignees": ["agent-1", "agent-2"],
    }
    since = start(one, style)
    one.fake.create_elsewhere(ACCOUNT, by_others(body, "Checkout is slow for me."))
    one.fake.script(title, {**DROP, "also_elsewhere": by_others(body, "Checkout is down here.")})
    job = one.producer.submit(ACCOUNT, body).job_id
    outcome = finish(one, title, [job], since)
    own = own_by_body(outcome.ours, {job: body})
    report(
        outcome.row(
            "reconcile: others' same title",
            f"drop; 2 by others (1 in window); {style} listing; {text} text",
            own,
            request.node,
        )
    )

    logs = one.stack.config.run_dir
    assert len(outcome.elsewhere) == 2
    ours = [t["id"] for t in outcome.ours]
    assert len(ours) == 1, f"job {job} holds {outcome.held[job]} of ours {ours}; logs in {logs}"
    assert outcome.held == {job: ours[0]}, f"{outcome.found}; logs in {logs}"
    assert outcome.adopted == outcome.held
    outcome.check_counts(one.stack)


# --- 2: listing lag ----------------------------------------------------------------------------


def test_a_lost_answer_behind_a_lagging_listing_is_adopted_once_listed_never_sent_twice(
    stand: Callable[[str], Stand], report: Report, request: pytest.FixtureRequest
) -> None:
    lagging = stand("production settle")
    title = titled("lag")
    since = start(lagging, "verbatim", lag_ms=LAG_MS)
    lagging.fake.script(title, DROP)
    job = lagging.producer.submit(ACCOUNT, {"title": title, "content": plain("Lagging.")}).job_id

    def waiting_for_the_listing() -> bool:
        record = lagging.producer.get(job)
        return bool(record and record.error and "does not list it (yet)" in record.error.message)

    waited = seen(waiting_for_the_listing, within=LAG_MS / 1000)
    outcome = finish(lagging, title, [job], since)
    record = outcome.found[job]
    after = (record.finished_at or 0.0) - outcome.arrivals[0]
    report(
        outcome.row(
            "reconcile: listing lags",
            f"drop; listed {LAG_MS / 1000:.0f}s late; settle {PRODUCTION_SETTLE:.0f}s; "
            f"done {after:.1f}s after the attempt",
            own_by_body(outcome.ours, {job: {"title": title}}),
            request.node,
        )
    )

    logs = lagging.stack.config.run_dir
    assert len(outcome.ours) == 1, f"{outcome.ours}; logs in {logs}"
    assert outcome.held == {job: outcome.ours[0]["id"]} == outcome.adopted, logs
    assert waited, f"never waited for the listing; logs in {logs}"
    assert after >= LAG_MS / 1000  # it waited for the listing, not for a second ticket
    outcome.check_counts(lagging.stack)


def test_a_408_that_created_nothing_waits_the_settle_time_then_is_sent_once_more(
    stand: Callable[[str], Stand], report: Report, request: pytest.FixtureRequest
) -> None:
    one = stand("short settle")
    title = titled("408")
    since = start(one, "verbatim", lag_ms=LAG_MS)
    one.fake.script(title, {"status": 408})
    job = one.producer.submit(ACCOUNT, {"title": title, "content": plain("Nothing yet.")}).job_id
    outcome = finish(one, title, [job], since)
    gap = outcome.arrivals[-1] - outcome.arrivals[0] if len(outcome.arrivals) > 1 else 0.0
    row = outcome.row(
        "reconcile: 408, lag",
        f"408 (created nothing); listed {LAG_MS / 1000:.0f}s late; settle {SHORT_SETTLE:.0f}s",
        own_by_body(outcome.ours, {job: {"title": title}}),
        request.node,
    )
    row.adopted_uncertain = f"sent {len(outcome.arrivals)}x, {gap:.1f}s apart"
    report(row)

    logs = one.stack.config.run_dir
    assert len(outcome.arrivals) == 2, f"{outcome.arrivals}; logs in {logs}"
    # The settle time (counted from just before the first request arrived), not much more.
    assert SHORT_SETTLE - 0.1 <= gap < SHORT_SETTLE + 3, gap
    assert len(outcome.ours) == 1 and outcome.held == {job: outcome.ours[0]["id"]}, logs
    assert not outcome.adopted
    assert f"job {job}: {RESENT}" in worker_logs(one.stack)
    assert outcome.counted == (1, 0)


# --- 3 and 4: jobs of one bulk message, reconciled in one delivery -----------------------------


def test_two_jobs_with_one_title_and_different_content_each_adopt_their_own_ticket(
    stand: Callable[[str], Stand], report: Report, request: pytest.FixtureRequest
) -> None:
    one = stand("short settle")
    title = titled("twins")
    bodies = [{"title": title, "content": plain(f"Seen on {shop} shop.")} for shop in ("EU", "US")]
    since = start(one, "verbatim")
    one.fake.script(title, DROP, DROP)
    job_ids = one.producer.submit_many(ACCOUNT, bodies).job_ids
    outcome = finish(one, title, job_ids, since)
    own = own_by_body(outcome.ours, dict(zip(job_ids, bodies, strict=True)))
    report(outcome.row("reconcile: same title", "drop x2, one bulk message", own, request.node))

    logs = one.stack.config.run_dir
    assert one_delivery(one, job_ids), f"not reconciled in one delivery; logs in {logs}"
    assert all(len(tickets) == 1 for tickets in own.values()), f"{outcome.ours}; logs in {logs}"
    assert outcome.held == {job: next(iter(own[job])) for job in job_ids}, logs
    assert outcome.adopted == outcome.held
    outcome.check_counts(one.stack)


@pytest.mark.parametrize("jobs", [2, 4])
def test_jobs_with_identical_bodies_each_adopt_a_different_ticket(
    stand: Callable[[str], Stand],
    jobs: int,
    report: Report,
    request: pytest.FixtureRequest,
) -> None:
    one = stand("short settle")
    title = titled("identical")
    body = {"title": title, "content": plain("Printer on floor 3 jams.")}
    since = start(one, "verbatim")
    one.fake.script(title, *[DROP] * jobs)
    job_ids = one.producer.submit_many(ACCOUNT, [body] * jobs).job_ids
    outcome = finish(one, title, job_ids, since)
    own = own_by_body(outcome.ours, dict.fromkeys(job_ids, body))
    report(
        outcome.row("reconcile: identical", f"drop x{jobs}, one bulk message", own, request.node)
    )

    logs = one.stack.config.run_dir
    assert one_delivery(one, job_ids), f"not reconciled in one delivery; logs in {logs}"
    assert len(outcome.ours) == jobs, f"{outcome.ours}; logs in {logs}"
    assert sorted(str(t) for t in outcome.held.values()) == sorted(t["id"] for t in outcome.ours)
    assert outcome.adopted == outcome.held, logs
    outcome.check_counts(one.stack)


# --- 5: a listing that carries titles only ----------------------------------------------------


def test_a_title_only_listing_leaves_the_job_to_a_person_naming_the_candidates(
    stand: Callable[[str], Stand], report: Report, request: pytest.FixtureRequest
) -> None:
    one = stand("short settle")
    title = titled("sparse")
    body = {"title": title, "content": plain("Only a person can tell.")}
    since = start(one, "sparse")
    one.fake.create_elsewhere(ACCOUNT, by_others(body, "Someone else's words."))
    one.fake.script(title, DROP)
    job = one.producer.submit(ACCOUNT, body).job_id
    outcome = finish(one, title, [job], since)
    report(
        outcome.row(
            "reconcile: titles only",
            "drop; 1 by others; sparse listing",
            own_by_body(outcome.ours, {job: body}),
            request.node,
        )
    )

    record, logs = outcome.found[job], one.stack.config.run_dir
    assert record.state == JobState.FAILED, f"{record}; logs in {logs}"
    assert record.error is not None and record.error.kind == ErrorKind.UNCERTAIN, record
    candidates = [t["id"] for t in outcome.ours + outcome.elsewhere]
    assert len(candidates) == 2 and all(c in record.error.message for c in candidates), record
    assert record.ticket is None and not outcome.adopted
    outcome.check_counts(one.stack)


# --- 6: the marker -----------------------------------------------------------------------------


@pytest.mark.parametrize("tags", [[], ["Printer"]], ids=["untagged", "tagged"])
def test_marked_jobs_each_adopt_the_ticket_carrying_their_own_marker(
    stand: Callable[[str], Stand],
    tags: list[str],
    report: Report,
    request: pytest.FixtureRequest,
) -> None:
    marked = stand("marked")
    title, kind = titled("marked"), "tagged" if tags else "untagged"
    body: dict[str, Any] = {"title": title, "content": plain("Printer on floor 3 jams.")}
    if tags:
        body["tags"] = tags
    since = start(marked, "verbatim")
    theirs = {**body, "unified_custom_fields": ORIGIN}  # identical, as matching sees it
    marked.fake.script(title, {**DROP, "also_elsewhere": theirs}, DROP)
    job_ids = marked.producer.submit_many(ACCOUNT, [body, body]).job_ids
    outcome = finish(marked, title, job_ids, since)
    own = own_by_marker(outcome.ours, job_ids)
    report(
        outcome.row(
            "reconcile: marker tag",
            f"drop x2 + 1 identical by others, one bulk message; bodies {kind}",
            own,
            request.node,
        )
    )

    logs = marked.stack.config.run_dir
    assert one_delivery(marked, job_ids), f"not reconciled in one delivery; logs in {logs}"
    assert len(outcome.elsewhere) == 1 and len(outcome.ours) == 2, f"{outcome.ours}; {logs}"
    assert all(len(tickets) == 1 for tickets in own.values()), own
    assert outcome.held == {job: next(iter(own[job])) for job in job_ids}, (
        f"held {outcome.held}, own {own}, others' {outcome.elsewhere[0]['id']}; logs in {logs}"
    )
    assert outcome.adopted == outcome.held
    outcome.check_counts(marked.stack)
