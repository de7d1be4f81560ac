"""The create-ticket contract: what StackOne's spec allows, plus the limits that protect Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from worker.contract import (
    MAX_BODY_BYTES,
    MAX_LIST_ITEMS,
    MAX_TITLE_CHARS,
    JobSpec,
    PriorityValue,
    TicketCreate,
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
