"""Is a ticket StackOne lists the one this job's uncertain attempt created? Pure functions
of the job's body, the listed ticket and the moment the attempt began.

Titles repeat ("Checkout is down"), so a title is not an identity: adopting someone else's
same-titled ticket would report their ticket id as the job's, which is worse than a
duplicate. A listed ticket is therefore compared on every field the job set that the
listing carries, normalised the way providers store what they are sent (whitespace, HTML
where only one side has it, the order of lists, the case of tags), and must have been
created no earlier than the attempt began, less the clock-skew allowance:

- ``SAME``: no field both sides carry differs and at least one was compared; tickets that
  are the same for a job are interchangeable (identical content), so any one may be
  adopted;
- ``MAYBE``: the title matches, but the listing carries none of the other fields the job
  set, or no creation time: only a person can tell;
- ``OTHER``: a field both sides carry differs, the ticket is older than the attempt, or the
  listing has nothing to compare.

A field the job left empty is compared only where providers never fill one in by
themselves (content, parent): a same-titled ticket with a description is not the ticket of
a job that sent none. Tags are a subset test, as providers add tags (Zendesk triggers) but
do not drop them.

With ``TICKETQ_MARK_TICKETS`` each ticket carries the job's id (a tag or a custom field)
and the marker alone decides, exactly; a listing that does not carry the marker's field at
all falls back to the comparison above.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any

from worker.contract import TicketCreate

# StackOne's clock (and the provider's) and ours differ: a ticket counts as created by the
# attempt if it was created no more than this long before the attempt began.
CLOCK_SKEW_SECONDS = 60.0
MARKER_TAG_PREFIX = "ticketq-"


class Verdict(StrEnum):
    SAME = "same"
    MAYBE = "maybe"
    OTHER = "other"


Normal = str | frozenset[str] | dict[str, str]  # a dict: parts compared where both have them


@dataclass(frozen=True)
class _Field:
    """One field of the create body as a listing may carry it back."""

    name: str
    normal: Callable[[Any], Normal | None]  # None: not set (or not carried)
    never_defaulted: bool = False  # a provider never fills it in when the job did not
    subset: bool = False  # the provider may add to what the job sent


def judge(ticket: TicketCreate, listed: Mapping[str, Any], not_before: float) -> Verdict:
    """Whether ``listed`` is the ticket ``ticket`` would have made, if it was created at
    ``not_before`` or later (Unix seconds; the attempt's start less the skew allowance).
    Never raises, whatever JSON the listing holds: it is someone else's data."""
    created = created_at(listed)
    if created is not None and created < not_before:
        return Verdict.OTHER
    sent = ticket.model_dump(exclude_unset=True)
    wanted = {field.name: field.normal(sent.get(field.name)) for field in FIELDS}
    compared: list[str] = []
    unsure = created is None
    for field in FIELDS:
        raw = listed.get(field.name)
        ours, theirs = wanted[field.name], field.normal(raw)
        if theirs is None and _present(raw):
            unsure = True  # carried in a shape we cannot read: no proof either way
            continue
        if ours is None:
            if field.never_defaulted and theirs is not None:
                return Verdict.OTHER
            continue
        if theirs is None:
            continue
        agrees = _agrees(field, ours, theirs)
        if agrees is False:
            return Verdict.OTHER
        if agrees:
            compared.append(field.name)
    if not compared:
        return Verdict.OTHER
    set_beyond_title = any(value is not None for name, value in wanted.items() if name != "title")
    if unsure or (set_beyond_title and compared == ["title"]):
        return Verdict.MAYBE
    return Verdict.SAME


def _agrees(field: _Field, ours: Normal, theirs: Normal) -> bool | None:
    """Whether the two sides agree; None when they have no part in common to compare."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        common = ours.keys() & theirs.keys()
        return all(ours[part] == theirs[part] for part in common) if common else None
    if field.subset and isinstance(ours, frozenset) and isinstance(theirs, frozenset):
        return ours <= theirs
    return ours == theirs


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


# --- normalising ---------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]*>")


def _text(value: Any) -> str | None:
    """Whitespace collapsed, Unicode composed: how a provider may store what it was sent."""
    if not isinstance(value, str):
        return None
    text = _SPACE.sub(" ", unicodedata.normalize("NFC", value)).strip()
    return text or None


def _id(value: Any) -> str | None:
    """An id as sent (a string) or as listed (a string, a number, or an object with an
    ``id``)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _ids(value: Any, *, fold: bool = False) -> frozenset[str] | None:
    """A list of ids in any order; a single id (``component_ids`` in the spec) as a list.
    None if any item is not an id: a list read in part proves nothing."""
    items: list[Any] = value if isinstance(value, list) else [value]
    found = [_id(item) for item in items if item is not None]
    if not found or None in found:
        return None
    return frozenset(i.casefold() if fold else i for i in found if i is not None)


def _tags(value: Any) -> frozenset[str] | None:
    return _ids(value, fold=True)


def _priority(value: Any) -> dict[str, str] | None:
    """The priority as the parts it has: its id and its unified value (a listing may
    carry one and not the other)."""
    if not isinstance(value, Mapping):
        return None
    given, level = _id(value.get("id")), _text(value.get("value"))
    parts = {"id": given, "value": level.casefold() if level else None}
    return {part: text for part, text in parts.items() if text} or None


def _custom_fields(value: Any) -> dict[str, str] | None:
    """Unified custom fields by name; each compared where both sides have it."""
    if not isinstance(value, Mapping):
        return None
    fields = {str(name): _free(field) for name, field in value.items() if _present(field)}
    return fields or None


def _free(value: Any) -> str:
    """A free JSON value as comparable text: strings as text, anything else as JSON."""
    if isinstance(value, str):
        return _text(value) or ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _content(value: Any) -> str | None:
    """The content's text: plain where an item has it, else its HTML read as text, with
    all whitespace left out (providers move it about when they convert). A provider that
    keeps only HTML (or only plain text) still compares equal."""
    if isinstance(value, str):
        value = [{"plain": value}]
    if not isinstance(value, list):
        return None
    parts: list[str] = []
    for item in value:
        if not isinstance(item, Mapping):
            return None
        plain, marked_up = item.get("plain"), item.get("html")
        if isinstance(plain, str) and plain.strip():
            parts.append(plain)
        elif isinstance(marked_up, str):
            parts.append(html_text(marked_up))
    text = "".join("".join(parts).split())
    return unicodedata.normalize("NFC", text) or None


class _TextOf(HTMLParser):
    """The text of an HTML fragment: its tags left out (the comparison ignores whitespace,
    so where a block or line break was does not matter)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities read once, here
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(fragment: str) -> str:
    """The text of an HTML fragment. Python's parser gives up on some malformed markup
    (``<![``) by raising; then tags are simply cut out."""
    reader = _TextOf()
    try:
        reader.feed(fragment)
        reader.close()
    except (AssertionError, ValueError):
        return html.unescape(_TAG.sub("", fragment))
    return "".join(reader.parts)


def created_at(listed: Mapping[str, Any]) -> float | None:
    """A listed ticket's ``created_at`` (ISO 8601, ``Z`` or an offset) as Unix seconds."""
    value = listed.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


FIELDS = (
    _Field("title", _text),
    _Field("content", _content, never_defaulted=True),
    _Field("type", _id),
    _Field("parent_id", _id, never_defaulted=True),
    _Field("assignees", _ids),
    _Field("reporters", _ids),
    _Field("creator_id", _id),
    _Field("tags", _tags, subset=True),
    _Field("priority", _priority),
    _Field("project_id", _id),
    _Field("component_ids", _ids),
    _Field("collections", _ids),
    _Field("organization_id", _id),
    _Field("unified_custom_fields", _custom_fields),
)


# --- the marker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """The job's id written into its ticket (``TICKETQ_MARK_TICKETS``): a tag
    ``ticketq-<job id>``, or the value of one unified custom field."""

    custom_field: str | None = None  # None: a tag

    @classmethod
    def of(cls, setting: str) -> Marker | None:
        """The marker a (validated) ``TICKETQ_MARK_TICKETS`` asks for; None when off."""
        if setting == "off":
            return None
        if setting == "tag":
            return cls()
        return cls(custom_field=setting.removeprefix("custom_field:"))

    def apply(self, ticket: TicketCreate, job_id: str) -> TicketCreate:
        """The body to send: the job's, with its marker added."""
        if self.custom_field is None:
            tags = [*(ticket.tags or []), MARKER_TAG_PREFIX + job_id]
            return ticket.model_copy(update={"tags": tags})
        fields = {**(ticket.unified_custom_fields or {}), self.custom_field: job_id}
        return ticket.model_copy(update={"unified_custom_fields": fields})

    def judge(self, listed: Mapping[str, Any], job_id: str) -> Verdict | None:
        """SAME or OTHER by the marker; None if the listing does not show the marker's
        field (absent, null or empty: a provider that does not map it back), so that the
        contents decide instead."""
        if self.custom_field is None:
            carried = _tags(listed.get("tags"))
            if not carried:
                return None
            return _verdict((MARKER_TAG_PREFIX + job_id).casefold() in carried)
        fields = listed.get("unified_custom_fields")
        value = fields.get(self.custom_field) if isinstance(fields, Mapping) else None
        if value in (None, ""):
            return None
        return _verdict(value == job_id)


def _verdict(marked: bool) -> Verdict:
    return Verdict.SAME if marked else Verdict.OTHER
