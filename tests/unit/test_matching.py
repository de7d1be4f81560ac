"""Whether a listed ticket is the one a job's uncertain attempt created
(``worker/delivery/matching.py``): pure, so every rule is a row here."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.contract import TicketCreate
from worker.delivery.matching import Marker, Verdict, html_text, judge

ATTEMPT = 1_700_000_000.0  # when the uncertain attempt began, less the skew allowance
CREATED = "2023-11-14T22:13:30.000Z"  # 10 s after it
BEFORE = "2023-11-14T22:13:10.000Z"  # 10 s before it

FULL: dict[str, Any] = {
    "title": "Checkout is down",
    "content": [{"plain": "Card payments fail\nsince 10:02", "html": None}],
    "type": "incident",
    "parent_id": "EPIC-1",
    "assignees": ["u-1", "u-2"],
    "reporters": ["u-3"],
    "creator_id": "u-3",
    "tags": ["Payments", "p1"],
    "priority": {"id": "pr-2", "value": "high"},
    "project_id": "proj-1",
    "component_ids": ["c-1", "c-2"],
    "collections": ["col-1"],
    "unified_custom_fields": {"email": "alice@a.example", "seats": 3},
}


def verdict(sent: dict[str, Any], listed: dict[str, Any]) -> Verdict:
    return judge(TicketCreate.model_validate(sent), {"created_at": CREATED, **listed}, ATTEMPT)


def test_a_ticket_listed_with_every_field_as_sent_is_the_same() -> None:
    assert verdict(FULL, FULL) is Verdict.SAME


@pytest.mark.parametrize(
    ("name", "as_listed"),
    [
        ("title", "  Checkout   is\tdown "),
        ("content", [{"plain": None, "html": "<p>Card payments fail<br>since 10:02</p>"}]),
        ("content", [{"html": "<div>Card payments fail</div><div>since&nbsp;10:02</div>"}]),
        ("type", {"id": "incident", "name": "Incident"}),
        ("assignees", ["u-2", "u-1"]),
        ("tags", ["p1", "payments", "added-by-a-trigger"]),
        ("priority", {"id": "pr-2", "value": "high", "source_value": "High"}),
        ("priority", {"id": None, "value": "High"}),  # the listing maps the value only
        ("priority", {"id": "pr-2"}),
        ("priority", None),
        ("component_ids", ["c-2", "c-1"]),
        ("unified_custom_fields", {"email": " alice@a.example ", "seats": "3", "x": None}),
        ("reporters", [{"id": "u-3", "name": "Ann"}]),
    ],
)
def test_a_field_as_a_provider_stores_it_still_matches(name: str, as_listed: Any) -> None:
    assert verdict(FULL, FULL | {name: as_listed}) is Verdict.SAME


@pytest.mark.parametrize(
    ("name", "as_listed"),
    [
        ("title", "Checkout is down again"),
        ("content", [{"plain": "The page is slow", "html": None}]),
        ("type", "task"),
        ("parent_id", "EPIC-2"),
        ("assignees", ["u-1"]),
        ("reporters", ["u-9"]),
        ("creator_id", "u-9"),
        ("tags", ["payments"]),
        ("priority", {"id": "pr-1", "value": "low"}),
        ("priority", {"value": "low"}),
        ("priority", {"id": "pr-1"}),
        ("project_id", "proj-2"),
        ("component_ids", ["c-1"]),
        ("collections", ["col-2"]),
        ("unified_custom_fields", {"email": "bob@b.example"}),
        ("unified_custom_fields", {"seats": 4}),
    ],
)
def test_a_field_both_sides_carry_that_differs_makes_another_ticket(
    name: str, as_listed: Any
) -> None:
    assert verdict(FULL, FULL | {name: as_listed}) is Verdict.OTHER


def test_a_ticket_created_before_the_attempt_began_is_another_one() -> None:
    assert verdict(FULL, FULL | {"created_at": BEFORE}) is Verdict.OTHER


def test_fields_the_listing_does_not_carry_are_not_held_against_it() -> None:
    listed = {"title": FULL["title"], "content": FULL["content"]}

    assert verdict(FULL, listed) is Verdict.SAME


def test_numeric_ids_from_a_provider_compare_as_their_decimal_text() -> None:
    sent = {"title": "t", "assignees": ["1"], "creator_id": "7"}

    assert verdict(sent, {"title": "t", "assignees": [1], "creator_id": 7}) is Verdict.SAME
    assert verdict(sent, {"title": "t", "assignees": [2], "creator_id": 7}) is Verdict.OTHER


def test_custom_fields_alone_tell_form_submissions_with_one_title_apart() -> None:
    sent = {"title": "Contact form", "unified_custom_fields": {"email": "alice@a.example"}}
    bob = {"title": "Contact form", "unified_custom_fields": {"email": "bob@b.example"}}

    assert verdict(sent, bob) is Verdict.OTHER
    assert verdict(sent, {"title": "Contact form"}) is Verdict.MAYBE


@pytest.mark.parametrize(
    "unreadable",
    [
        {"assignees": [{"name": "no id"}]},
        {"priority": "high"},
        {"content": [["not", "an", "item"]]},
        {"unified_custom_fields": ["not", "a", "mapping"]},
    ],
)
def test_a_field_carried_in_a_shape_that_cannot_be_read_is_never_proof(
    unreadable: dict[str, Any],
) -> None:
    assert verdict(FULL, FULL | unreadable) is Verdict.MAYBE


def test_content_listed_as_a_bare_string_is_read_as_plain_text() -> None:
    sent = {"title": "t", "content": [{"plain": "card fails"}]}

    assert verdict(sent, {"title": "t", "content": "card  fails"}) is Verdict.SAME
    assert verdict({"title": "t"}, {"title": "t", "content": "someone's text"}) is Verdict.OTHER


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = st.sampled_from([*FULL, "created_at", "id"])
MARKUP = st.text(alphabet="<![]&;>/p x", max_size=12)
CONTENT = st.lists(st.fixed_dictionaries({"plain": st.none() | MARKUP, "html": MARKUP}))


@settings(max_examples=400, deadline=None)
@example(listed={"title": "Checkout is down", "content": [{"plain": None, "html": "<![ x"}]})
@given(listed=st.dictionaries(KEYS, JSON | MARKUP | CONTENT))
def test_any_json_a_listing_holds_gets_a_verdict_and_never_an_exception(
    listed: dict[str, Any],
) -> None:
    ticket = TicketCreate.model_validate(FULL)

    assert judge(ticket, listed, ATTEMPT) in Verdict
    assert Marker().judge(listed, "job-1") in (*Verdict, None)
    assert Marker(custom_field="email").judge(listed, "job-1") in (*Verdict, None)


def test_a_listing_with_the_title_alone_leaves_it_to_a_person() -> None:
    assert verdict(FULL, {"title": FULL["title"]}) is Verdict.MAYBE


def test_a_listing_without_a_creation_time_leaves_it_to_a_person() -> None:
    ticket = TicketCreate.model_validate(FULL)

    assert judge(ticket, FULL, ATTEMPT) is Verdict.MAYBE


def test_a_job_that_sent_only_a_title_is_the_same_as_a_bare_ticket_with_that_title() -> None:
    assert verdict({"title": "Printer broken"}, {"title": "Printer broken"}) is Verdict.SAME


@pytest.mark.parametrize(
    "extra",
    [{"content": [{"plain": "Paper jam on floor 2"}]}, {"parent_id": "EPIC-1"}],
)
def test_content_or_a_parent_the_job_never_sent_makes_another_ticket(
    extra: dict[str, Any],
) -> None:
    assert verdict({"title": "Printer broken"}, {"title": "Printer broken", **extra}) is (
        Verdict.OTHER
    )


def test_fields_a_provider_fills_in_by_itself_are_not_held_against_a_job_that_left_them() -> None:
    listed = {"title": "Printer broken", "priority": {"value": "medium"}, "creator_id": "api"}

    assert verdict({"title": "Printer broken"}, listed) is Verdict.SAME


def test_a_listing_with_nothing_to_compare_is_another_ticket() -> None:
    assert verdict({"content": [{"plain": "x"}]}, {"title": "Something"}) is Verdict.OTHER


@pytest.mark.parametrize(
    ("fragment", "text"),
    [
        ("<p>a &amp; b</p><ul><li>one</li></ul>", "a & bone"),
        ("<p>5 &amp;lt; 6 and ?a=1&amp;region=eu</p>", "5 &lt; 6 and ?a=1&region=eu"),
        # Python's parser raises on these; tags (and what looks like one) are cut out
        ("<p>a <![ broken</p>", "a "),
        ("<p>x <![]</p>", "x "),
    ],
)
def test_html_is_read_as_its_text_with_entities_read_once(fragment: str, text: str) -> None:
    assert html_text(fragment) == text


def test_text_quoting_html_matches_the_providers_html_of_it() -> None:
    plain = "The invoice shows &amp; instead of & (5 &lt; 6)\nsee ?orgId=1&region=eu"
    as_html = "<p>The invoice shows &amp;amp; instead of &amp; (5 &amp;lt; 6)<br>see "
    as_html += "?orgId=1&amp;region=eu</p>"

    sent = {"title": "t", "content": [{"plain": plain}]}
    listed = {"title": "t", "content": [{"plain": None, "html": as_html}]}

    assert verdict(sent, listed) is Verdict.SAME


@pytest.mark.parametrize(
    ("setting", "marker"),
    [("off", None), ("tag", Marker()), ("custom_field:origin", Marker(custom_field="origin"))],
)
def test_the_marker_setting_names_the_marker(setting: str, marker: Marker | None) -> None:
    assert Marker.of(setting) == marker


def test_a_tag_marker_is_added_to_the_tags_the_job_set_and_decides_alone() -> None:
    ticket = TicketCreate.model_validate({"title": "t", "tags": ["a"]})

    marked = Marker().apply(ticket, "job-1")

    assert marked.to_json() == '{"title":"t","tags":["a","ticketq-job-1"]}'
    assert ticket.tags == ["a"]  # the job's own body is left as it was
    assert Marker().judge({"tags": ["TicketQ-Job-1"]}, "job-1") is Verdict.SAME
    assert Marker().judge({"tags": ["ticketq-job-2"]}, "job-1") is Verdict.OTHER
    assert Marker().judge({"tags": ["a"]}, "job-1") is Verdict.OTHER
    not_shown: dict[str, Any]
    for not_shown in ({"title": "t"}, {"tags": None}, {"tags": []}):
        assert Marker().judge(not_shown, "job-1") is None  # the contents decide


def test_a_custom_field_marker_holds_the_job_id_and_decides_alone() -> None:
    ticket = TicketCreate.model_validate({"title": "t", "unified_custom_fields": {"x": 1}})
    marker = Marker(custom_field="origin")

    marked = marker.apply(ticket, "job-1")

    assert marked.unified_custom_fields == {"x": 1, "origin": "job-1"}
    assert marker.judge({"unified_custom_fields": {"origin": "job-1"}}, "job-1") is Verdict.SAME
    assert marker.judge({"unified_custom_fields": {"origin": "job-2"}}, "job-1") is Verdict.OTHER
    not_shown: dict[str, Any]
    for not_shown in (
        {},
        {"unified_custom_fields": {}},
        {"unified_custom_fields": {"origin": None}},
    ):
        assert marker.judge(not_shown, "job-1") is None
