"""Text from messages and from Halo, made safe to show to an admin.

A subject, a display name, a Message-ID or a note is the sender's text, and Halo's
answers are Halo's. Printed as they are, an escape sequence in one can move the cursor,
clear the screen or rewrite the lines an admin is reading (``explain``, ``once``,
``check --sample``, the log), and a bidi override can show text reversed. Written to CSV
as they are, a cell starting with ``=`` is a formula to a spreadsheet (OWASP's "CSV
injection"). So every control character is shown escaped (``\\x1b``, ``\\u202e``), and a
CSV cell that a spreadsheet would evaluate starts with a ``'``.
"""

from __future__ import annotations

from typing import Any

# C0 (but tab), DEL, C1; the bidi embeddings, overrides, isolates and marks; the Unicode
# line and paragraph separators (some terminals break lines on them).
_SHOWN_ESCAPED = {
    **{c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0a, 0x20), 0x7f, *range(0x80, 0xa0))},
    **{c: f"\\u{c:04x}" for c in (0x061c, 0x200e, 0x200f, *range(0x202a, 0x202f),
                                  *range(0x2066, 0x206a), 0x2028, 0x2029)},
}
_KEEP_LINES = {c: v for c, v in _SHOWN_ESCAPED.items() if c != 0x0a}
_JSON_ALSO = {c: f"\\u{c:04x}" for c in _SHOWN_ESCAPED if c >= 0x7f}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """One line as a terminal must show it: control characters (newlines too) escaped."""
    return text.translate(_SHOWN_ESCAPED)


def printable_lines(text: str) -> str:
    """Several lines: newlines kept, every other control character escaped."""
    return text.translate(_KEEP_LINES)


def json_text(dumped: str) -> str:
    """``json.dumps(..., ensure_ascii=False)`` output with DEL, C1 and bidi controls
    escaped as ``\\uXXXX`` too (json escapes only C0); still the same JSON."""
    return dumped.translate(_JSON_ALSO)


def csv_cell(value: Any) -> Any:
    """A cell no spreadsheet evaluates: text starting (after spaces) with ``=``, ``+``,
    ``-`` or ``@``, or starting with a tab or CR, gets a leading ``'``; control
    characters but newlines are escaped. Numbers and empty cells stay as they are."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(_FORMULA_STARTS) or value.lstrip(" \t\r\n").startswith(_FORMULA_STARTS):
        value = "'" + value
    return printable_lines(value)
