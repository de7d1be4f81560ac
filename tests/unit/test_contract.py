"""The create-ticket contract: what StackOne's spec allows, plus the limits that protect Redis."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from pydantic import ValidationError

from worker.contract import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_LIST_ITEMS,
    MAX_TITLE_CHARS,
    JobSpec,
    PriorityValue,
    TicketCreate,
    load_json,
)
from worker.validation import describe_validation_error

DOCS_EXAMPLE: dict[str, Any] = {
    "title": "System outage in production environment",
    "creator_id": "user-001",
    "reporters": ["user-001", "user-002"],
    "assignees": ["user-001", "user-002"],
    "content": [{"plain": "This is some content", "html": "<p>This is some content</p>"}],
    "parent_id": "ticket-002",
    "priority": {"id": "001", "value": "medium", "source_value": "Normal"},
    "tags": ["tag-001", "tag-002"],
    "collections": ["collection-001", "collection-002"],
    "type": "ticket-type-001",
    "organization_id": "organization-001",
}


def problem(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        TicketCreate.model_validate(body)
    return describe_validation_error(caught.value)


def test_the_docs_example_is_accepted_and_sent_back_unchanged() -> None:
    ticket = TicketCreate.model_validate(DOCS_EXAMPLE)

    assert json.loads(ticket.to_json()) == DOCS_EXAMPLE


def test_newer_fields_are_accepted_with_component_ids_as_string_or_list() -> None:
    for components in ("comp-1", ["comp-1", "comp-2"]):
        ticket = TicketCreate.model_validate(
            {
                "project_id": "p-1",
                "component_ids": components,
                "unified_custom_fields": {"severity": "sev2"},
            }
        )
        assert json.loads(ticket.to_json())["component_ids"] == components


def test_only_fields_the_producer_set_are_sent() -> None:
    assert TicketCreate.model_validate({"title": "t", "tags": None}).to_json() == (
        '{"title":"t","tags":null}'
    )


def test_an_unknown_field_is_rejected_by_name() -> None:
    assert problem({"title": "t", "sumary": "x"}) == "sumary: unknown field"


@pytest.mark.parametrize("value", [v.value for v in PriorityValue] + [None])
def test_every_priority_value_of_the_spec_is_accepted(value: str | None) -> None:
    TicketCreate.model_validate({"priority": {"value": value}})


def test_a_priority_outside_the_enum_is_rejected_naming_the_field() -> None:
    assert problem({"priority": {"value": "urgent"}}).startswith("priority.value:")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x" * (MAX_TITLE_CHARS + 1)}, "title"),
        ({"tags": ["t"] * (MAX_LIST_ITEMS + 1)}, "tags"),
        ({"assignees": [""]}, "assignees.0"),
        ({"content": [{"plain": "x" * 100_001}]}, "content.0.plain"),
    ],
)
def test_oversized_fields_are_rejected_naming_the_field(body: dict[str, Any], field: str) -> None:
    assert problem(body).startswith(f"{field}:")


def test_a_body_over_the_total_limit_is_rejected_even_if_each_field_fits() -> None:
    content = [{"plain": "x" * 90_000}] * 3

    assert f"limit is {MAX_BODY_BYTES}" in problem({"content": content})


def test_a_job_needs_an_account_id_and_names_nested_ticket_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"account_id": "", "ticket": {"titel": "x"}})

    message = describe_validation_error(caught.value)
    assert "account_id:" in message and "ticket.titel: unknown field" in message


@pytest.mark.parametrize("account_id", ["acct 1", "accté", "acct\n", " acct"])
def test_an_account_id_that_cannot_be_sent_as_a_header_is_refused(account_id: str) -> None:
    with pytest.raises(ValidationError, match="account_id"):
        JobSpec.model_validate({"account_id": account_id, "ticket": {}})


# JSON rules: one depth limit and one set of values for a mapping and for JSON text.

# Where a free-form value sits in a body, and how deep it may nest: the body and priority
# (or unified_custom_fields) are two of the MAX_DEPTH levels.
FREE_VALUES = [
    (lambda value: {"priority": {"source_value": value}}, "priority.source_value"),
    (lambda value: {"unified_custom_fields": {"sev": value}}, "unified_custom_fields.sev"),
]
FREE_LEVELS = MAX_DEPTH - 2


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def job_problem(body: Any) -> str:
    """What the producer says of a ticket body given as a Python mapping."""
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"account_id": "a", "ticket": body})
    return describe_validation_error(caught.value)


def text_problem(text: str) -> str:
    """What the CLI says of a ticket body given as JSON text, and the worker of the job."""
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"account_id": "a", "ticket": load_json(text, at=("ticket",))})
    message = describe_validation_error(caught.value)
    stored = '{"account_id": "a", "ticket": ' + text + "}"
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(load_json(stored))
    assert describe_validation_error(caught.value) == message
    return message


@pytest.mark.parametrize(("body", "where"), FREE_VALUES)
def test_a_free_value_may_nest_to_the_limit_and_not_one_level_more(body: Any, where: str) -> None:
    TicketCreate.model_validate(body(nested(FREE_LEVELS)))
    load_json(json.dumps(body(nested(FREE_LEVELS))), at=("ticket",))

    too_deep = body(nested(FREE_LEVELS + 1))
    path = ".".join(["ticket", where, *["0"] * FREE_LEVELS])
    expected = f"{path}: nested deeper than {MAX_DEPTH} levels"
    assert job_problem(too_deep) == expected
    assert text_problem(json.dumps(too_deep)) == expected


@pytest.mark.parametrize("levels", [250, 100_000])
def test_any_depth_is_refused_by_name_never_with_a_recursion_error(levels: int) -> None:
    path = ".".join(["ticket.priority.source_value", *["0"] * FREE_LEVELS])
    expected = f"{path}: nested deeper than 32 levels"
    text = '{"priority": {"source_value": ' + "[" * levels + "]" * levels + "}}"

    assert job_problem({"priority": {"source_value": nested(levels)}}) == expected
    assert text_problem(text) == expected
    assert text_problem('{"tags": ' + "[" * levels).startswith("ticket.tags.0.0.0.")


def test_json_text_names_object_keys_in_the_path_and_ignores_brackets_in_strings() -> None:
    tricky = '[{"]": "[[[[[[[[\\"{{{{", "k": "\\u005b"}]'
    inner = '{"k": ' * (FREE_LEVELS - 2) + tricky + "}" * (FREE_LEVELS - 2)
    text = '{"unified_custom_fields": {"a b": 1, "sev": ' + inner + "}}"

    TicketCreate.model_validate(load_json(text, at=("ticket",)))
    deeper = text.replace(tricky, "[" + tricky + "]")
    assert (
        text_problem(deeper)
        == ".".join(["ticket.unified_custom_fields.sev", *["k"] * (FREE_LEVELS - 2), "0.0"])
        + f": nested deeper than {MAX_DEPTH} levels"
    )


@pytest.mark.parametrize(
    ("number", "name"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity")],
)
def test_nan_and_infinity_are_refused_by_name_from_a_mapping_and_from_text(
    number: str, name: str
) -> None:
    expected = f"ticket.priority.source_value.1: {name} is not a JSON number"

    assert job_problem({"priority": {"source_value": [0, float(number)]}}) == expected
    assert text_problem('{"priority": {"source_value": [0, ' + number + "]}}") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "x"}, "keys must be strings, not int"),
        ({"a", "b"}, "not a JSON value (a set)"),
        (datetime.date(2024, 1, 1), "not a JSON value (a date)"),
        (10**4000, "a number of more than 4,000 digits"),
    ],
)
def test_a_free_value_holds_only_what_json_text_can(value: Any, message: str) -> None:
    assert problem({"unified_custom_fields": {"sev": value}}) == (
        f"unified_custom_fields.sev: {message}"
    )


def test_text_that_is_not_json_is_refused_naming_line_and_column() -> None:
    with pytest.raises(ValidationError) as caught:
        load_json('{"title":\n  oops}', at=("ticket",))

    assert describe_validation_error(caught.value) == (
        "ticket: not JSON (line 2, column 3: Expecting value)"
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"unified_custom_fields": {"k\ud800": "v"}}, "unified_custom_fields.k\\ud800"),
        ({"unified_custom_fields": {"k": "v\udfff"}}, "unified_custom_fields.k"),
        ({"unified_custom_fields": {"k": {"a": ["x", "\ud800"]}}}, "unified_custom_fields.k.a.1"),
        ({"unified_custom_fields": {"k": {"\udc80": 1}}}, "unified_custom_fields.k.\\udc80"),
        ({"priority": {"source_value": "x\ud800"}}, "priority.source_value"),
        ({"title": "t\ud800"}, "title"),
        ({"tags": ["ok", "\ud800"]}, "tags.1"),
        ({"content": [{"plain": "\ud800"}]}, "content.0.plain"),
        ({"component_ids": "\ud800"}, "component_ids"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(body: dict[str, Any], where: str) -> None:
    assert job_problem(body) == f"ticket.{where}: not valid Unicode"


@pytest.mark.parametrize("name", ["ref", "idempotency_key", "batch_id"])
def test_a_lone_surrogate_in_a_job_field_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"account_id": "a", "ticket": {}, name: "r\ud800"})

    assert describe_validation_error(caught.value) == f"{name}: not valid Unicode"


def test_a_surrogate_pair_written_as_json_escapes_is_one_valid_character() -> None:
    ticket = TicketCreate.model_validate(load_json('{"title": "\\ud83d\\ude00"}'))

    assert ticket.title == "\U0001f600"
