"""Bulk-import files read as a stream of rows: CSV and JSONL, one ``Row`` or ``BadRow`` at a
time, never the whole file.

Reading is kept apart from validating: a ``Row`` holds the job's fields as the file gave them
(``{"ticket": {...}}`` and any envelope fields), and the caller validates them as a
``JobSpec``, so a file row and a Python caller are held to one contract. What this module
judges is only what stops a row being read at all.

- A ``FileProblem`` when the file as a whole cannot be read: no format, a CSV header that is
  missing or names a column twice or one we do not know, a CSV quote that is never closed.
  Raised before any row for the header, otherwise while iterating; no row after it can be
  trusted, so the caller should refuse the file.
- A ``BadRow`` when one row cannot: a JSONL line that is not UTF-8, not JSON, not an object
  or too long; a CSV record with the wrong number of cells, bytes that are not UTF-8 or text
  after a closing quote. Reading goes on with the next row.

Memory stays bounded: a line is read with a cap (``MAX_RECORD_BYTES``, four times the
largest body, room for quoting and escapes) and what is past the cap is read through and
dropped; a CSV record is held to the same cap. A JSONL line past it is one bad row, as the
next line still starts a row; a CSV record past it is a ``FileProblem``, because where a CSV
record ends depends on its quotes, and a record that long is almost always a quote left
open: reading on would turn the rest of the file into made-up rows.

Bytes that are not UTF-8 cannot move a CSV record's boundaries (quotes, commas and line
ends are ASCII, and no byte of a multi-byte character is ASCII), so such a record is a bad
row naming its line, and the next is read as usual; in the header they are a
``FileProblem``. In a rejects file they are written as ``\\xNN`` escapes.

In a CSV file a blank cell (empty, or only spaces) sets nothing, rather than sending "";
the list columns take ``;``-separated items, each stripped, and a record with nothing in it
is skipped, as blank lines are in JSONL.

Every message is one printable line: outside text in it is quoted with ``repr`` (control
characters escaped) and cut to ``_SHOWN_CHARS`` characters.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO, Literal, TextIO, get_args

from pydantic import ValidationError

from worker.contract import MAX_BODY_BYTES, load_json
from worker.text import printable
from worker.validation import describe_validation_error

Format = Literal["csv", "jsonl"]

# The longest line (JSONL) or record (CSV) read: a body at the limit, quoted or escaped.
MAX_RECORD_BYTES = 4 * MAX_BODY_BYTES

_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_BOM = b"\xef\xbb\xbf"
_SHOWN_CHARS = 200
_SHOWN_NAMES = 5

_ENVELOPE_FIELDS = ("ref", "account_id", "idempotency_key")
_TEXT_COLUMNS = ("title", "type", "parent_id", "creator_id", "organization_id", "project_id")
_CONTENT_COLUMNS = {"description": "plain", "html": "html"}
_LIST_COLUMNS = ("tags", "assignees", "reporters", "component_ids")
_KNOWN_COLUMNS = (
    *_TEXT_COLUMNS,
    *_CONTENT_COLUMNS,
    "priority",
    *_LIST_COLUMNS,
    *_ENVELOPE_FIELDS,
)
_CUSTOM = "custom."  # custom.<name>

# A rejects file's first columns (CSV) or keys beside "row" (JSONL).
REJECT_COLUMNS = ("line", "reason")


class FileProblem(ValueError):
    """The file as a whole cannot be read (no header, an unknown column, not CSV/JSONL...):
    one line naming what and where (``line 1: unknown column 'titel'``)."""


@dataclass(frozen=True, slots=True)
class JsonLine:
    """A JSONL line as read: its JSON ``value``, or its ``text`` when it is not JSON (not
    UTF-8: bytes as ``\\xNN``; too long: its start)."""

    value: Any = None
    text: str | None = None


# A CSV record's cells as read (or, when the record is not valid CSV, its text as one cell),
# or a JSONL line: what a rejects file writes back.
RawRow = tuple[str, ...] | JsonLine


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str  # "field: reason" or a reading problem ("not valid JSON (column 12: ...)")
    raw: RawRow


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based line where the row starts in the file
    fields: dict[str, Any]  # {"ticket": {...}} plus any of "account_id", "ref", ... given
    raw: RawRow

    def rejected(self, reason: str) -> BadRow:
        """This row as a reject: read fine, but refused (by validation, say)."""
        return BadRow(self.line, reason, self.raw)


class Rows(Iterator[Row | BadRow]):
    """The rows of one file, read as they are asked for. ``columns`` is a CSV file's header
    as written (for ``RejectWriter``), None for JSONL."""

    def __init__(self, rows: Iterator[Row | BadRow], columns: tuple[str, ...] | None) -> None:
        self._rows = rows
        self.columns = columns

    def __next__(self) -> Row | BadRow:
        return next(self._rows)


def file_format(name: str, given: Format | None) -> Format:
    """The format given, else the one the name's extension says (``.csv``; ``.jsonl`` or
    ``.ndjson``); standard input (``-``) has no name to tell it by."""
    if given is not None:
        if given not in get_args(Format):
            raise FileProblem(f"unknown format {_quoted(given)}: csv or jsonl")
        return given
    if name == "-":
        raise FileProblem("standard input has no name to tell its format by: give csv or jsonl")
    suffix = PurePath(name).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise FileProblem(
            f"{_quoted(name)}: cannot tell its format from its name; "
            "name it .csv or .jsonl (.ndjson), or give the format"
        )
    return _EXTENSIONS[suffix]


def read_rows(stream: BinaryIO, fmt: Format) -> Rows:
    """The rows of a buffered binary stream (``open(name, "rb")``, ``sys.stdin.buffer``).
    A CSV header is read here, so its ``FileProblem`` comes before any row; other
    ``FileProblem``s come while iterating."""
    if fmt == "csv":
        return _csv_rows(stream)
    return Rows(_jsonl_rows(stream), None)


class RejectWriter:
    """Rejected rows written back in the input's format, each with its line and reason: CSV
    with the input's columns after ``line`` and ``reason`` (first, so that a record with the
    wrong number of cells still lines up), JSONL as one ``{"line", "reason", "row"}`` object
    a line, ``row`` being the original object, or the original text if it was not JSON.
    Open a CSV one with ``newline=""``, as the csv module asks."""

    def __init__(self, stream: TextIO, fmt: Format, columns: Sequence[str] | None) -> None:
        self._stream = stream
        self._csv = None
        if fmt == "csv":
            if columns is None:
                raise ValueError("a CSV rejects file needs the input's columns")
            self._csv = csv.writer(stream)
            self._csv.writerow([*REJECT_COLUMNS, *columns])

    def write(self, bad: BadRow) -> None:
        reason = printable(bad.reason)
        if self._csv is not None:
            cells = bad.raw if isinstance(bad.raw, tuple) else ()
            self._csv.writerow([bad.line, reason, *cells])
            return
        row = _original(bad.raw)
        self._stream.write(_json_text({"line": bad.line, "reason": reason, "row": row}) + "\n")


def _original(raw: RawRow) -> Any:
    """A row as a JSONL rejects file holds it: the JSON value, else the text (or cells)."""
    if isinstance(raw, tuple):
        return list(raw)
    return raw.value if raw.text is None else raw.text


def _json_text(value: Any) -> str:
    """JSON on one line, readable (non-ASCII as it is) unless it holds a lone surrogate (a
    ``\\ud800`` escape in the input), which UTF-8 cannot hold: then escaped."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


# Reading lines


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Each line's bytes (its line end kept; a BOM dropped from the first) and its size. Of
    a line past ``MAX_RECORD_BYTES`` only the first ``MAX_RECORD_BYTES + 1`` bytes are kept,
    the rest read through and counted, never held."""
    cap = MAX_RECORD_BYTES + 1
    data = stream.readline(cap).removeprefix(_BOM)
    while data:
        size = len(data)
        if size == cap and not data.endswith(b"\n"):
            while chunk := stream.readline(cap):
                size += len(chunk)
                if chunk.endswith(b"\n"):
                    break
        yield data, size
        data = stream.readline(cap)


def _not_utf8(exc: UnicodeDecodeError, where: str = "") -> str:
    return f"not UTF-8 text ({where}byte {exc.start + 1})"


def _escaped(data: bytes | bytearray) -> str:
    """Bytes as text a rejects file can hold: what is not UTF-8 as ``\\xNN``."""
    return data.decode(errors="backslashreplace")


# JSONL


def _jsonl_rows(stream: BinaryIO) -> Iterator[Row | BadRow]:
    """One row per non-blank line. The first such line must at least look like a JSON
    object: a CSV file or a JSON array read as JSONL is one ``FileProblem``, not a bad row
    for each of its lines."""
    first = True
    for number, (data, size) in enumerate(_lines(stream), start=1):
        if size > MAX_RECORD_BYTES:
            reason = f"a line of {size:,} bytes; the limit is {MAX_RECORD_BYTES:,}"
            row: Row | BadRow = BadRow(number, reason, JsonLine(text=_cut(_escaped(data))))
        elif data.strip():
            row = _json_row(number, data)
            if first and isinstance(row, BadRow) and not data.lstrip().startswith(b"{"):
                raise FileProblem(f"line {number}: not JSONL, one JSON object a line: {row.reason}")
        else:
            continue
        first = False
        yield row


def _json_row(number: int, data: bytes) -> Row | BadRow:
    line = data.rstrip(b"\r\n")  # a line end would be inside an unterminated string
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        return BadRow(number, _not_utf8(exc), JsonLine(text=_escaped(line)))
    try:
        value = load_json(text)
    except ValidationError as exc:
        return BadRow(number, _not_json(text, exc), JsonLine(text=text))
    return _json_fields(number, value)


def _not_json(text: str, exc: ValidationError) -> str:
    """Why ``load_json`` refused a line. Its syntax errors name "line 1" of the one line,
    which is left out. A depth refusal names the field; a bare body's is found again with
    the body counted as a ticket, as the contract counts it and names it."""
    error = exc.errors()[0]
    if not error["loc"]:
        return str(error["msg"]).replace("not JSON (line 1, ", "not valid JSON (", 1)
    if error["loc"][0] != "ticket":
        try:
            load_json(text, at=("ticket",))
        except ValidationError as as_ticket:
            exc = as_ticket
    return printable(describe_validation_error(exc))


def _json_fields(number: int, value: Any) -> Row | BadRow:
    """A body is the ticket; an object with a "ticket" key is an envelope; a line of a
    rejects file (``line``, ``reason``, ``row``) is its row, so it can be imported again."""
    if isinstance(value, dict) and value.keys() == {*REJECT_COLUMNS, "row"}:
        value = value["row"]
    raw = JsonLine(value)
    if not isinstance(value, dict):
        return BadRow(number, f"expected a JSON object, not {_json_kind(value)}", raw)
    if "ticket" not in value:
        return Row(number, {"ticket": value}, raw)
    unknown = [key for key in value if key != "ticket" and key not in _ENVELOPE_FIELDS]
    if unknown:
        allowed = ", ".join(("ticket", *_ENVELOPE_FIELDS))
        reason = f"unknown envelope field {_listed(unknown)} (an envelope has {allowed})"
        return BadRow(number, reason, raw)
    return Row(number, value, raw)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "true or false" if isinstance(value, bool) else "a number"


# CSV


class _TooLong(Exception):
    """A CSV record ran past ``MAX_RECORD_BYTES``; raised through ``csv.reader``."""


class _Feed(Iterator[str]):
    """A CSV file's lines as text for ``csv.reader``, which pulls one line at a time, and
    what the reader does not say about the record it is reading: the line it started on,
    its size (stopped at the cap), the first line that was not UTF-8 and its bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._lines = _lines(stream)
        self.count = 0  # lines read so far
        self.ended = False
        self.start()

    def start(self) -> int:
        """A record starts with the next line: its number."""
        self.size = 0
        self.not_utf8: tuple[int, UnicodeDecodeError] | None = None
        self.data = bytearray()
        return self.count + 1

    def __next__(self) -> str:
        try:
            data, size = next(self._lines)
        except StopIteration:
            self.ended = True
            raise
        self.count += 1
        self.size += size
        if self.size > MAX_RECORD_BYTES:
            raise _TooLong
        self.data += data
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            self.not_utf8 = self.not_utf8 or (self.count, exc)
            return data.decode(errors="surrogateescape")  # boundaries kept; cells marked bad


_Put = Callable[[str, dict[str, Any], dict[str, Any], str], None]


def _csv_rows(stream: BinaryIO) -> Rows:
    # Above any field a record can hold, so an oversized field reaches the contract, which
    # names it; the record cap keeps memory bounded.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))
    feed = _Feed(stream)
    reader = csv.reader(feed, strict=True)
    header = _header(feed, reader)
    skipped = _rejects_columns(header)
    puts = [_column(index, name.strip()) for index, name in enumerate(header) if index >= skipped]
    known = [put for put in puts if put is not None]  # all of them: the header was checked
    records = _csv_records(feed, reader, known, len(header), skipped)
    return Rows(records, tuple(header[skipped:]))


def _header(feed: _Feed, reader: Iterator[list[str]]) -> list[str]:
    line, cells = _record(feed, reader)
    if cells is None:
        raise FileProblem("line 1: no header row: the file is empty")
    if isinstance(cells, str):
        raise FileProblem(f"line {line}: the header row cannot be read: {cells}")
    problem = _not_utf8_record(feed, line)
    if problem is not None:
        raise FileProblem(f"line {line}: the header row cannot be read: {problem}")
    if not "".join(cells).strip():
        raise FileProblem(f"line {line}: the header row is empty; it must name the columns")
    problems = _header_problems([cell.strip() for cell in cells][_rejects_columns(cells) :])
    if problems:
        raise FileProblem(f"line {line}: {'; '.join(problems)}")
    return cells


def _record(feed: _Feed, reader: Iterator[list[str]]) -> tuple[int, list[str] | str | None]:
    """The next record and the line it starts on: its cells, or why it is not valid CSV (a
    str), or None at the end of the file."""
    line = feed.start()
    try:
        return line, next(reader)
    except StopIteration:
        return line, None
    except csv.Error as exc:
        if feed.ended:
            raise FileProblem(
                f"line {line}: a quote opened in the record starting here is never closed"
            ) from None
        where = f" at line {feed.count}" if feed.count != line else ""
        return line, f"not valid CSV{where}: {_csv_error(exc)}"
    except _TooLong:
        raise FileProblem(
            f"line {line}: the record starting here runs past {MAX_RECORD_BYTES:,} bytes "
            "(a quote not closed?); the file cannot be read past it"
        ) from None


def _csv_error(exc: csv.Error) -> str:
    text = str(exc)
    if text.startswith("new-line character seen in unquoted field"):
        return "a carriage return inside a cell that is not quoted"
    return printable(text)


def _not_utf8_record(feed: _Feed, line: int) -> str | None:
    """Why the record just read is not text, naming the line if it is not the first."""
    if feed.not_utf8 is None:
        return None
    bad_line, exc = feed.not_utf8
    return _not_utf8(exc, f"line {bad_line}, " if bad_line != line else "")


def _rejects_columns(header: Sequence[str]) -> int:
    """How many leading columns to pass over: 2 for a rejects file (``line``, ``reason``,
    then the input's columns), so that its rows, once fixed, can be imported as they are."""
    return 2 if [name.strip() for name in header[:2]] == list(REJECT_COLUMNS) else 0


def _header_problems(names: list[str]) -> list[str]:
    unnamed = [str(index) for index, name in enumerate(names, 1) if not name]
    problems = []
    if unnamed:
        which = "column " if len(unnamed) == 1 else "columns "
        problems.append(
            which + _listed(unnamed, str) + (" has" if len(unnamed) == 1 else " have") + " no name"
        )
    counted = Counter(name for name in names if name)
    twice = [name for name, seen in counted.items() if seen > 1]
    if twice:
        problems.append(f"column {_listed(twice)} appears more than once")
    unknown = [name for name in counted if _column(0, name) is None]
    if unknown:
        problems.append(f"unknown column {_listed(unknown, _suggested)}")
    return problems


def _suggested(name: str) -> str:
    """A column name quoted, with the known column it was perhaps meant to be."""
    if ";" in name or "\t" in name:
        return f"{_quoted(name)} (columns are separated by commas)"
    close = difflib.get_close_matches(name.lower(), _KNOWN_COLUMNS, n=1)
    return f"{_quoted(name)} (did you mean {close[0]!r}?)" if close else _quoted(name)


def _csv_records(
    feed: _Feed,
    reader: Iterator[list[str]],
    puts: list[tuple[int, _Put, str]],
    width: int,
    skipped: int,
) -> Iterator[Row | BadRow]:
    """One row per record; a record with nothing in it (a blank line, a row of empty cells)
    is skipped, as JSONL skips blank lines. A rejects file's ``line`` and ``reason`` cells
    (``skipped``) are left out of what a row keeps to be rejected again."""
    while True:
        line, cells = _record(feed, reader)
        if cells is None:
            return
        if isinstance(cells, str):
            yield BadRow(line, cells, (_escaped(feed.data).rstrip("\r\n"),))
        elif (problem := _not_utf8_record(feed, line)) is not None:
            yield BadRow(line, problem, tuple(map(_writable, cells[skipped:])))
        elif len(cells) != width:
            if "".join(cells).strip():
                reason = f"{len(cells)} cells where the header has {width} columns"
                yield BadRow(line, reason, tuple(cells[skipped:]))
        else:
            fields = _fields(cells, puts)
            if len(fields) > 1 or fields["ticket"]:
                yield Row(line, fields, tuple(cells[skipped:]))


def _writable(cell: str) -> str:
    """A cell read from bytes that are not all UTF-8, those bytes as ``\\xNN``."""
    return _escaped(cell.encode(errors="surrogateescape"))


def _fields(cells: list[str], puts: list[tuple[int, _Put, str]]) -> dict[str, Any]:
    """The job's fields from a record's cells; a blank cell (empty, or spaces) sets nothing."""
    ticket: dict[str, Any] = {}
    fields: dict[str, Any] = {"ticket": ticket}
    for index, put, name in puts:
        cell = cells[index]
        if cell and not cell.isspace():
            put(name, fields, ticket, cell)
    return fields


def _column(index: int, name: str) -> tuple[int, _Put, str] | None:
    """Where the cells of column ``index`` go: how to put one and the field name it is put
    under; None for a column we do not know."""
    if name in _ENVELOPE_FIELDS:
        return index, _put_envelope, name
    if name in _TEXT_COLUMNS:
        return index, _put_text, name
    if name in _CONTENT_COLUMNS:
        return index, _put_content, _CONTENT_COLUMNS[name]
    if name == "priority":
        return index, _put_priority, "value"
    if name in _LIST_COLUMNS:
        return index, _put_list, name
    if name.startswith(_CUSTOM) and len(name) > len(_CUSTOM):
        return index, _put_custom, name.removeprefix(_CUSTOM)
    return None


def _put_envelope(name: str, fields: dict[str, Any], ticket: dict[str, Any], cell: str) -> None:
    fields[name] = cell


def _put_text(name: str, fields: dict[str, Any], ticket: dict[str, Any], cell: str) -> None:
    ticket[name] = cell


def _put_content(part: str, fields: dict[str, Any], ticket: dict[str, Any], cell: str) -> None:
    """``description`` and ``html`` are two parts of the one content item."""
    ticket.setdefault("content", [{}])[0][part] = cell


def _put_priority(name: str, fields: dict[str, Any], ticket: dict[str, Any], cell: str) -> None:
    ticket["priority"] = {name: cell}


def _put_list(name: str, fields: dict[str, Any], ticket: dict[str, Any], cell: str) -> None:
    """``;``-separated items, each stripped; no items at all sets nothing."""
    items = [item for item in map(str.strip, cell.split(";")) if item]
    if items:
        ticket[name] = items


def _put_custom(name: str, fields: dict[str, Any], ticket: dict[str, Any], cell: str) -> None:
    """A custom field's value as the string written (a CSV cell has no other type)."""
    ticket.setdefault("unified_custom_fields", {})[name] = cell


# Outside text in messages


def _quoted(text: str) -> str:
    """Outside text in a message: quoted and escaped by ``repr``, cut."""
    return repr(_cut(text))


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _listed(names: Sequence[str], shown: Callable[[str], str] = _quoted) -> str:
    """A few names, each shown, then how many more."""
    parts = [shown(name) for name in names[:_SHOWN_NAMES]]
    if len(names) > _SHOWN_NAMES:
        parts.append(f"and {len(names) - _SHOWN_NAMES:,} more")
    return ", ".join(parts)
