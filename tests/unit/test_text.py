"""``printable``: outside text made safe for a log line or a terminal."""

from __future__ import annotations

import pytest

from worker.text import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, [markup] and \\ stay as they are: é ✓ 票", None),
        ("two\nlines\r\n\ttabbed", "two\\nlines\\r\\n\\ttabbed"),
        ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
        ("\x00\x7f\x85\x9f", "\\x00\\x7f\\x85\\x9f"),  # NUL, DEL, C1 controls
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),  # line and paragraph separators
        (
            "\u202egnp.exe\u202c \u2066x\u2069 \u200e\u200f",  # bidi overrides, isolates, marks
            "\\u202egnp.exe\\u202c \\u2066x\\u2069 \\u200e\\u200f",
        ),
    ],
)
def test_controls_separators_and_bidi_overrides_become_visible_escapes(
    text: str, shown: str | None
) -> None:
    assert printable(text) == (text if shown is None else shown)


def test_any_object_is_shown_by_its_str_on_one_line() -> None:
    assert printable(ValueError("bad\nline")) == "bad\\nline"
    assert printable(None) == "None"
    assert printable(42) == "42"


ESCAPED = {
    *range(0x20),  # C0 controls
    *range(0x7F, 0xA0),  # DEL and C1 controls
    0x2028,  # line separator
    0x2029,  # paragraph separator
    0x200E,  # left-to-right mark
    0x200F,  # right-to-left mark
    *range(0x202A, 0x202F),  # bidi embeddings and overrides
    *range(0x2066, 0x206A),  # bidi isolates
}


def test_exactly_the_controls_separators_and_bidi_marks_are_escaped_in_the_bmp() -> None:
    for code in range(0x10000):
        char = chr(code)
        shown = printable(char)
        if code in ESCAPED:
            assert shown.isascii() and shown.isprintable() and shown.startswith("\\"), hex(code)
        else:
            assert shown == char, hex(code)
