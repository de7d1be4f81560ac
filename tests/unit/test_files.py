"""Bulk-import files read as rows: real CSV and JSONL files, well-formed and broken."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from producers.files import (
    MAX_RECORD_BYTES,
    BadRow,
    FileProblem,
    Format,
    JsonLine,
    RejectWriter,
    Row,
    Rows,
    file_format,
    read_rows,
)
from worker.contract import MAX_BODY_BYTES, MAX_DEPTH, JobSpec
from worker.validation import describe_validation_error

CSV_HEADER = b"title,description,tags\n"


def read(tmp_path: Path, content: bytes, fmt: Format) -> list[Row | BadRow]:
    with opened(tmp_path, content, fmt) as rows:
        return list(rows)


@contextmanager
def opened(tmp_path: Path, content: bytes, fmt: Format) -> Iterator[Rows]:
    """A real file holding ``content``, read as ``fmt``."""
    path = tmp_path / f"input.{fmt}"
    path.write_bytes(content)
    with path.open("rb") as stream:
        yield read_rows(stream, fmt)


def problem(tmp_path: Path, content: bytes, fmt: Format) -> str:
    with pytest.raises(FileProblem) as caught:
        read(tmp_path, content, fmt)
    return str(caught.value)


def bad(tmp_path: Path, content: bytes, fmt: Format) -> list[tuple[int, str]]:
    return [
        (row.line, row.reason) for row in read(tmp_path, content, fmt) if isinstance(row, BadRow)
    ]


def good(tmp_path: Path, content: bytes, fmt: Format) -> list[tuple[int, dict[str, Any]]]:
    return [(row.line, row.fields) for row in read(tmp_path, content, fmt) if isinstance(row, Row)]


def job(row: Row | BadRow) -> JobSpec:
    assert isinstance(row, Row), row
    return JobSpec.model_validate({"account_id": "acc-1", **row.fields})


def refusal(row: Row | BadRow) -> str:
    with pytest.raises(ValidationError) as caught:
        job(row)
    return describe_validation_error(caught.value)


# The format


@pytest.mark.parametrize(
    ("name", "given", "fmt"),
    [
        ("tickets.csv", None, "csv"),
        ("EXPORT.CSV", None, "csv"),
        ("tickets.jsonl", None, "jsonl"),
        ("tickets.ndjson", None, "jsonl"),
        ("tickets.txt", "csv", "csv"),
        ("tickets.csv", "jsonl", "jsonl"),
        ("-", "jsonl", "jsonl"),
    ],
)
def test_the_format_is_the_one_given_else_the_one_the_extension_says(
    name: str, given: Format | None, fmt: Format
) -> None:
    assert file_format(name, given) == fmt


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("-", "standard input has no name to tell its format by: give csv or jsonl"),
        (
            "tickets.json",
            "'tickets.json': cannot tell its format from its name; "
            "name it .csv or .jsonl (.ndjson), or give the format",
        ),
        ("in\x1b[2Jput", "'in\\x1b[2Jput': cannot tell its format from its name"),
    ],
)
def test_standard_input_or_an_unknown_extension_needs_the_format_given(
    name: str, message: str
) -> None:
    with pytest.raises(FileProblem) as caught:
        file_format(name, None)

    assert str(caught.value).startswith(message)


# JSONL


def test_jsonl_bodies_and_envelopes_become_rows_on_their_lines_past_a_bom_crlf_and_blanks(
    tmp_path: Path,
) -> None:
    content = (
        b'\xef\xbb\xbf{"title": "first"}\r\n'
        b"\r\n"
        b"   \t \n"
        b'{"ticket": {"title": "second"}, "ref": "r-2", "account_id": "acc-2",'
        b' "idempotency_key": "k-2"}\n'
        b"\n"
        b'{"ticket": {"title": "third"}}'  # no line end at the end of the file
    )

    rows = good(tmp_path, content, "jsonl")

    assert rows == [
        (1, {"ticket": {"title": "first"}}),
        (
            4,
            {
                "ticket": {"title": "second"},
                "ref": "r-2",
                "account_id": "acc-2",
                "idempotency_key": "k-2",
            },
        ),
        (6, {"ticket": {"title": "third"}}),
    ]


def test_jsonl_rows_are_validated_by_the_caller_as_jobs(tmp_path: Path) -> None:
    content = (
        b'{"title": "ok", "priority": {"value": "high"}}\n'
        b'{"title": "x", "priority": {"source_value": NaN}}\n'
        b'{"ticket": {"titel": "x"}, "ref": 7}\n'
    )

    first, second, third = read(tmp_path, content, "jsonl")

    assert job(first).ticket.title == "ok"
    assert refusal(second) == "ticket.priority.source_value: NaN is not a JSON number"
    assert refusal(third) == "ticket.titel: unknown field; ref: Input should be a valid string"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"title": "a" "b"}', "not valid JSON (column 15: Expecting ',' delimiter)"),
        (b'{"title": "cut', "not valid JSON (column 11: Unterminated string starting at)"),
        (b"[1, 2]", "expected a JSON object, not an array"),
        (b"42", "expected a JSON object, not a number"),
        (b"null", "expected a JSON object, not null"),
        (b'"title"', "expected a JSON object, not a string"),
        (b'{"title": "caf\xe9"}', "not UTF-8 text (byte 15)"),
        (
            b'{"ticket": {}, "title": "x", "Ref": "r"}',
            "unknown envelope field 'title', 'Ref' "
            "(an envelope has ticket, ref, account_id, idempotency_key)",
        ),
    ],
)
def test_a_jsonl_line_that_cannot_be_read_is_a_bad_row_and_the_next_line_is_read(
    tmp_path: Path, line: bytes, reason: str
) -> None:
    content = b'{"title": "before"}\n' + line + b'\r\n{"title": "after"}\n'

    rows = read(tmp_path, content, "jsonl")

    assert [(row.line, getattr(row, "reason", None)) for row in rows] == [
        (1, None),
        (2, reason),
        (3, None),
    ]


def test_a_jsonl_line_past_the_cap_is_a_bad_row_naming_its_size_and_the_next_is_read(
    tmp_path: Path,
) -> None:
    size = 3 * MAX_RECORD_BYTES + 10  # read in capped pieces, never held whole
    content = b'{"title": "' + b"x" * (size - 14) + b'"}\n{"title": "next"}\n'

    first, second = read(tmp_path, content, "jsonl")

    assert isinstance(first, BadRow)
    assert first.reason == f"a line of {size:,} bytes; the limit is {MAX_RECORD_BYTES:,}"
    assert isinstance(first.raw, JsonLine) and first.raw.text is not None
    assert first.raw.text.startswith('{"title": "xxx') and len(first.raw.text) == 200
    assert second == Row(2, {"ticket": {"title": "next"}}, JsonLine({"title": "next"}))


def test_nesting_past_the_depth_limit_is_named_at_the_field_in_a_body_or_an_envelope(
    tmp_path: Path,
) -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    body = f'{{"priority": {{"source_value": {deep}}}}}'
    content = f'{body}\n{{"ticket": {body}}}\n'.encode()

    reasons = [reason for _, reason in bad(tmp_path, content, "jsonl")]

    where = "ticket.priority.source_value" + ".0" * (MAX_DEPTH - 2)
    assert reasons == [f"{where}: nested deeper than {MAX_DEPTH} levels"] * 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"title,description\nA,b\n", "line 1: not JSONL, one JSON object a line: not valid JSON"),
        (b'\n[\n  {"title": "a"}\n]\n', "line 2: not JSONL, one JSON object a line: not valid"),
        (
            '{"title": "a"}\n'.encode("utf-16"),
            "line 1: not JSONL, one JSON object a line: not UTF-8",
        ),
    ],
)
def test_a_file_whose_first_line_is_no_json_object_is_not_jsonl(
    tmp_path: Path, content: bytes, message: str
) -> None:
    assert problem(tmp_path, content, "jsonl").startswith(message)


def test_jsonl_reasons_are_one_printable_line_whatever_the_input(tmp_path: Path) -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    content = (
        b'{"ticket": {}, "\\u001b[2J\\n\\u202e": 1}\n'
        + f'{{"ticket": {{"unified_custom_fields": {{"\\u001b]0;x\\u0007": {deep}}}}}}}\n'.encode()
        + b'{"ticket": {}, "'
        + b"k" * 5_000
        + b'": 1}\n'
    )

    reasons = [reason for _, reason in bad(tmp_path, content, "jsonl")]

    assert reasons[0].startswith("unknown envelope field '\\x1b[2J\\n\\u202e' (an envelope")
    assert reasons[1].startswith("ticket.unified_custom_fields.\\x1b]0;x\\x07.0.0")
    assert reasons[2].startswith("unknown envelope field 'kkk") and len(reasons[2]) < 300
    assert all(reason.isprintable() for reason in reasons)


# CSV


def test_every_csv_column_lands_in_its_field(tmp_path: Path) -> None:
    content = (
        b"title,description,html,priority,tags,assignees,reporters,component_ids,type,"
        b"parent_id,creator_id,organization_id,project_id,custom.severity,custom.Due Date,"
        b"ref,account_id,idempotency_key\n"
        b"Printer,Out of toner,<p>Out</p>,high, a ;b;; ,u-1,u-2;u-3,c-1,incident,"
        b"t-9,u-0,org-1,p-1,sev2,2025-01-31,row-1,acc-9,key-1\n"
    )

    (row,) = read(tmp_path, content, "csv")

    assert isinstance(row, Row)
    assert row.line == 2
    assert row.fields == {
        "ticket": {
            "title": "Printer",
            "content": [{"plain": "Out of toner", "html": "<p>Out</p>"}],
            "priority": {"value": "high"},
            "tags": ["a", "b"],
            "assignees": ["u-1"],
            "reporters": ["u-2", "u-3"],
            "component_ids": ["c-1"],
            "type": "incident",
            "parent_id": "t-9",
            "creator_id": "u-0",
            "organization_id": "org-1",
            "project_id": "p-1",
            "unified_custom_fields": {"severity": "sev2", "Due Date": "2025-01-31"},
        },
        "ref": "row-1",
        "account_id": "acc-9",
        "idempotency_key": "key-1",
    }
    assert job(row).account_id == "acc-9"


def test_blank_cells_set_nothing_and_records_with_nothing_in_them_are_skipped(
    tmp_path: Path,
) -> None:
    content = (
        b"title,description,tags,ref\n"
        b'Only a title,,"",\n'
        b",,,\n"
        b"\n"
        b",  , ; ;,\n"
        b",,,r-5\n"
        b",,\n"  # too few cells, but nothing in them either
    )

    assert good(tmp_path, content, "csv") == [
        (2, {"ticket": {"title": "Only a title"}}),
        (6, {"ticket": {}, "ref": "r-5"}),
    ]


def test_quoted_newlines_keep_the_line_where_each_record_starts_past_a_bom_and_crlf(
    tmp_path: Path,
) -> None:
    content = (
        b"\xef\xbb\xbf" + CSV_HEADER.replace(b"\n", b"\r\n") + b'A,"one\r\ntwo\r\n\r\nthree",t\r\n'
        b'"B\r\nb",,\r\n'
        b"C,,\r\n"
    )

    rows = good(tmp_path, content, "csv")

    assert rows == [
        (
            2,
            {
                "ticket": {
                    "title": "A",
                    "content": [{"plain": "one\r\ntwo\r\n\r\nthree"}],
                    "tags": ["t"],
                }
            },
        ),
        (6, {"ticket": {"title": "B\r\nb"}}),
        (8, {"ticket": {"title": "C"}}),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "line 1: no header row: the file is empty"),
        (b"\xef\xbb\xbf", "line 1: no header row: the file is empty"),
        (b"\nA,b\n", "line 1: the header row is empty; it must name the columns"),
        (b" , \nA,b\n", "line 1: the header row is empty; it must name the columns"),
        (b"title,,tags,\n", "line 1: columns 2, 4 have no name"),
        (b"title, tags,title,tags\n", "line 1: column 'title', 'tags' appears more than once"),
        (b"titel,description\n", "line 1: unknown column 'titel' (did you mean 'title'?)"),
        (
            b"Title,custom.,foo\n",
            "line 1: unknown column 'Title' (did you mean 'title'?), 'custom.', 'foo'",
        ),
        (
            b"title;description\n",
            "line 1: unknown column 'title;description' (columns are separated by commas)",
        ),
        (b"title,\xe9t\xe9\n", "line 1: the header row cannot be read: not UTF-8 text (byte 7)"),
        (b'"title\n', "line 1: a quote opened in the record starting here is never closed"),
        (
            b'"title"s\nA\n',
            "line 1: the header row cannot be read: not valid CSV: ',' expected after '\"'",
        ),
        (
            b"ti\x1btle,\x1b[31m\n",
            "line 1: unknown column 'ti\\x1btle' (did you mean 'title'?), '\\x1b[31m'",
        ),
    ],
)
def test_a_header_problem_is_raised_before_any_row_is_read(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)

    with path.open("rb") as stream, pytest.raises(FileProblem) as caught:
        read_rows(stream, "csv")

    assert str(caught.value) == message


def test_a_record_with_the_wrong_number_of_cells_is_a_bad_row(tmp_path: Path) -> None:
    content = CSV_HEADER + b"A,b\nB,b,t,extra\nC,,\n"

    rows = read(tmp_path, content, "csv")

    assert [(row.line, getattr(row, "reason", None)) for row in rows] == [
        (2, "2 cells where the header has 3 columns"),
        (3, "4 cells where the header has 3 columns"),
        (4, None),
    ]
    assert rows[0].raw == ("A", "b")


def test_bytes_that_are_not_utf8_are_a_bad_row_naming_the_line_and_the_next_is_read(
    tmp_path: Path,
) -> None:
    content = CSV_HEADER + b'Caf\xe9,,\nB,"two\nlin\xe9s",\nC,,\n'

    rows = read(tmp_path, content, "csv")

    assert rows[:2] == [
        BadRow(2, "not UTF-8 text (byte 4)", ("Caf\\xe9", "", "")),
        BadRow(3, "not UTF-8 text (line 4, byte 4)", ("B", "two\nlin\\xe9s", "")),
    ]
    assert rows[2] == Row(5, {"ticket": {"title": "C"}}, ("C", "", ""))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b'"A"b,,\n', "not valid CSV: ',' expected after '\"'"),
        (b'A,"two\nlines"x,\n', "not valid CSV at line 3: ',' expected after '\"'"),
        (b"A\rB,,\n", "not valid CSV: a carriage return inside a cell that is not quoted"),
    ],
)
def test_a_record_that_is_not_valid_csv_is_a_bad_row_and_reading_resumes_on_the_next_line(
    tmp_path: Path, record: bytes, reason: str
) -> None:
    content = CSV_HEADER + record + b"C,,\n"

    rows = read(tmp_path, content, "csv")

    assert rows[0] == BadRow(2, reason, (record.decode().rstrip("\n"),))
    assert isinstance(rows[1], Row) and rows[1].fields == {"ticket": {"title": "C"}}


def test_a_quote_never_closed_is_a_file_problem_naming_the_line_its_record_began_on(
    tmp_path: Path,
) -> None:
    content = CSV_HEADER + b"A,,\nB,\"it's broken,\nC,,\nD,,\n"

    with opened(tmp_path, content, "csv") as rows:
        assert next(rows) == Row(2, {"ticket": {"title": "A"}}, ("A", "", ""))
        with pytest.raises(FileProblem) as caught:
            next(rows)

    assert str(caught.value) == (
        "line 3: a quote opened in the record starting here is never closed"
    )


def test_a_record_running_past_the_cap_is_a_file_problem_as_the_rest_cannot_be_told_apart(
    tmp_path: Path,
) -> None:
    rows_after = b"Another row,with a description,t\n" * (MAX_RECORD_BYTES // 30)
    content = CSV_HEADER + b'A,"never closed,\n' + rows_after

    message = problem(tmp_path, content, "csv")

    assert message == (
        f"line 2: the record starting here runs past {MAX_RECORD_BYTES:,} bytes "
        "(a quote not closed?); the file cannot be read past it"
    )


def test_a_field_over_the_body_limit_is_read_whole_so_the_contract_names_it(
    tmp_path: Path,
) -> None:
    title = "t" * (MAX_BODY_BYTES + 1_000)
    content = CSV_HEADER + f'"{title}",,\n'.encode()

    (row,) = read(tmp_path, content, "csv")

    assert isinstance(row, Row) and row.fields["ticket"]["title"] == title
    assert refusal(row).startswith("ticket.title: String should have at most 1000 characters")


def test_csv_columns_are_the_header_as_written_and_jsonl_has_none(tmp_path: Path) -> None:
    with opened(tmp_path, b"\xef\xbb\xbf title ,tags\n", "csv") as rows:
        assert rows.columns == (" title ", "tags")
    with opened(tmp_path, b'{"title": "a"}\n', "jsonl") as rows:
        assert rows.columns is None


# Rejects


def test_csv_rejects_hold_the_line_the_reason_and_the_input_cells(tmp_path: Path) -> None:
    content = CSV_HEADER + b'A,b\nCaf\xe9,,\nB,,\n"C"x,,\n'
    path = tmp_path / "rejects.csv"

    with opened(tmp_path, content, "csv") as rows, path.open("w", newline="") as out:
        writer = RejectWriter(out, "csv", rows.columns)
        for row in rows:
            writer.write(row if isinstance(row, BadRow) else row.rejected("title: too\nshort"))

    with path.open(newline="") as written:
        assert list(csv.reader(written)) == [
            ["line", "reason", "title", "description", "tags"],
            ["2", "2 cells where the header has 3 columns", "A", "b"],
            ["3", "not UTF-8 text (byte 4)", "Caf\\xe9", "", ""],
            ["4", "title: too\\nshort", "B", "", ""],
            ["5", "not valid CSV: ',' expected after '\"'", '"C"x,,'],
        ]


def test_jsonl_rejects_hold_the_original_object_or_the_original_text(tmp_path: Path) -> None:
    content = (
        b'{"title": "caf\xc3\xa9", "x": 1}\n'
        b'{"ticket": {"title": "\\ud800"}, "ref": "r"}\n'
        b"[1]\n"
        b'{"title": broken}\n'
        b'{"title": "caf\xe9"}\n'
    )
    path = tmp_path / "rejects.jsonl"

    with opened(tmp_path, content, "jsonl") as rows, path.open("w") as out:
        writer = RejectWriter(out, "jsonl", rows.columns)
        for row in rows:
            writer.write(row if isinstance(row, BadRow) else row.rejected("x: unknown field"))

    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"line": 1, "reason": "x: unknown field", "row": {"title": "café", "x": 1}},
        {
            "line": 2,
            "reason": "x: unknown field",
            "row": {"ticket": {"title": "\ud800"}, "ref": "r"},
        },
        {"line": 3, "reason": "expected a JSON object, not an array", "row": [1]},
        {
            "line": 4,
            "reason": "not valid JSON (column 11: Expecting value)",
            "row": '{"title": broken}',
        },
        {"line": 5, "reason": "not UTF-8 text (byte 15)", "row": '{"title": "caf\\xe9"}'},
    ]
    assert "café" in lines[0]  # readable, not escaped, where UTF-8 can hold it


def test_a_csv_rejects_file_needs_the_inputs_columns(tmp_path: Path) -> None:
    with (tmp_path / "rejects.csv").open("w") as out, pytest.raises(ValueError):
        RejectWriter(out, "csv", None)


def test_a_fixed_csv_rejects_file_imports_as_it_is_and_its_rejects_do_not_stack(
    tmp_path: Path,
) -> None:
    content = b'line,reason,title,priority\n7,"priority.value: urgent",Fixed,high\n9,x,Still,bad\n'

    with opened(tmp_path, content, "csv") as rows:
        assert rows.columns == ("title", "priority")
        read_back = list(rows)

    assert [(row.line, row.fields) for row in read_back if isinstance(row, Row)] == [
        (2, {"ticket": {"title": "Fixed", "priority": {"value": "high"}}}),
        (3, {"ticket": {"title": "Still", "priority": {"value": "bad"}}}),
    ]
    assert read_back[1].raw == ("Still", "bad")  # rejected again: its own cells, once


def test_a_fixed_jsonl_rejects_line_imports_its_row(tmp_path: Path) -> None:
    content = b'{"line": 4, "reason": "title: too long", "row": {"ticket": {"title": "ok"}}}\n'

    assert good(tmp_path, content, "jsonl") == [(1, {"ticket": {"title": "ok"}})]


@pytest.mark.parametrize(
    ("header", "said"),
    [
        (b"title" + b"," * 200_000, "line 1: columns 2, 3, 4, 5, 6, and 199,995 more have no name"),
        (
            b"title," + b",".join(b"z%d" % n for n in range(80_000)),
            "line 1: unknown column 'z0', 'z1', 'z2', 'z3', 'z4', and 79,995 more",
        ),
    ],
)
def test_a_header_of_many_bad_columns_is_one_short_line(
    tmp_path: Path, header: bytes, said: str
) -> None:
    assert problem(tmp_path, header + b"\n", "csv") == said
