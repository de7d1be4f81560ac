"""One line per bad job, however bad: the first errors, how many more, each part cut."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from producers import InvalidJob, Producer, Settings
from worker.contract import TicketCreate
from worker.validation import MAX_ERRORS, MAX_PART_CHARS, describe_validation_error


def described(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        TicketCreate.model_validate(body)
    return describe_validation_error(caught.value)


def test_two_hundred_thousand_unknown_fields_give_the_first_twenty_and_how_many_more() -> None:
    line = described({f"field{n}": n for n in range(200_000)})

    assert line.count("unknown field") == MAX_ERRORS == 20
    assert line.startswith("field0: unknown field; field1: unknown field; ")
    assert line.endswith("; field19: unknown field; and 199,980 more")
    assert len(line) < 1_000


def test_a_few_errors_are_all_listed_with_nothing_more() -> None:
    line = described({"titel": "x", "priority": {"value": "urgent"}})

    assert line.startswith("priority.value: Input should be 'lowest'")
    assert line.endswith("; titel: unknown field")
    assert "more" not in line


def test_a_huge_field_name_is_cut_to_a_readable_length() -> None:
    line = described({"x" * 100_000: 1})

    assert line == "x" * (MAX_PART_CHARS - 1) + "…: unknown field"


def test_a_batch_of_ten_thousand_bad_tickets_names_the_first_twenty_and_counts_the_rest() -> None:
    producer = Producer(Settings(redis_url="redis://127.0.0.1:1/0"))  # never reached
    tickets: list[dict[str, Any]] = [{"title": "ok"}, *({"titel": n} for n in range(10_000))]

    with pytest.raises(InvalidJob) as caught:
        producer.submit_many("acct", tickets)

    line = str(caught.value)
    assert line.startswith("tickets[1]: ticket.titel: unknown field; tickets[2]: ")
    assert line.count("unknown field") == MAX_ERRORS
    assert line.endswith("; and 9,980 more invalid tickets")
