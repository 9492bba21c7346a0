"""The readable bodies of a parsed message: one plain text and one HTML, no I/O.

Mail clients wrap the text a person typed in MIME trees of every shape (alternative,
mixed with attachments, signed, related, TNEF beside text), label it with charsets that
are sometimes wrong, and break long lines with format=flowed. This module walks the
tree, picks the parts a mail client would show, and decodes them without ever raising:
whatever cannot be read becomes a note in ``Bodies.problems``.
"""

from __future__ import annotations

import bisect
import codecs
import email.errors
import email.feedparser
import email.parser
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32

MAX_DEPTH = 20  # a deeper MIME tree is hostile, not mail
MAX_PARTS = 200
MAX_MULTIPARTS = 50
"""More multipart boundaries than this in one message is hostile, not mail.

The stdlib parser tests every line against the boundary of every open multipart, so a
message of thousands of nested multiparts costs lines x depth: quadratic in its size
(a 1.4 MB one took 10 s). Real mail declares a handful; refusing more keeps it linear.
"""


class HostileMessage(ValueError):
    """A message shaped to exhaust the parser; it is filed as failed with this reason."""


# Charset labels that lie or that Python does not know, mapped to what the bytes are.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",  # GB2312 mail is routinely GBK/GB18030; the superset decodes both
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "euc-cn": "gb18030",
    "iso-8859-1": "windows-1252",  # clients label windows-1252 text as Latin-1 (curly quotes)
    "latin1": "windows-1252",
    "us-ascii": "windows-1252",  # 8-bit bytes under us-ascii are nearly always cp1252
    "ascii": "windows-1252",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "sjis": "shift_jis",
    "windows-31j": "cp932",
    "x-mac-roman": "mac_roman",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
}
_HEADER_START = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,40}:[ \t]")
_UNLABELLED = {"", "unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"}


_BOUNDARY_PARAM = re.compile(rb"boundary\s*=", re.IGNORECASE)


MAX_NESTING = 8
"""Multiparts open inside one another at most (real mail nests three to five deep).

The stdlib parser matches every line against the boundary of each open multipart, so
each level costs a pass over the rest of the message: 49 levels of 1.9 MB took 13.6 s.
"""
BOUNDARY_TESTS_PER_BYTE = 2
"""Lines times the multiparts open around them, per byte of the message, at most.

Real mail has lines of dozens of bytes, so it stays far below; a multipart nest
followed by a megabyte of empty lines does not (some 0.1 µs a test, so this keeps
the tests under 0.2 s a megabyte)."""


def parse_message(raw: bytes) -> Message:
    """``email.message_from_bytes`` (compat32), refusing a hostile nest of multiparts."""
    declared = len(_BOUNDARY_PARAM.findall(raw))
    if declared > MAX_MULTIPARTS:
        raise HostileMessage(f"{declared} multipart boundaries (at most {MAX_MULTIPARTS})")
    parser = email.feedparser.BytesFeedParser(policy=compat32)
    parser._input = _BoundedLines(len(raw))  # type: ignore[attr-defined]
    parser.feed(raw)  # all at once: every line is queued before the first multipart opens
    return parser.close()


class _BoundedLines(email.feedparser.BufferedSubFile):  # type: ignore[name-defined,misc]
    """The parser's line reader, which keeps one end-of-part test per open multipart.

    When a multipart opens, the lines still to read are all queued here, so the tests
    ahead (lines x open multiparts) are known before any is made: too many is refused.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.max_tests = BOUNDARY_TESTS_PER_BYTE * max(size, 1)

    def push_eof_matcher(self, pred: Callable[[str], object]) -> None:
        depth = len(self._eofstack) + 1
        if depth > MAX_NESTING:
            raise HostileMessage(f"multiparts nested more than {MAX_NESTING} deep")
        lines = len(self._lines)
        if depth * lines > self.max_tests:
            raise HostileMessage(f"{lines} lines inside {depth} nested multiparts "
                                 f"(too costly to read)")
        super().push_eof_matcher(pred)


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def header_bytes(raw: bytes) -> int:
    """The size of the message's header block: up to its first empty line."""
    blank = _BLANK_LINE.search(raw)
    return blank.start() if blank else len(raw)

_HEADER_PARSER = email.parser.BytesHeaderParser(policy=compat32)


def text_only(raw: bytes) -> bytes:
    """The message as a mail client shows it, without the bodies of attachments.

    Every non-text body (a PDF, an image, a forwarded message/rfc822, the preamble and
    epilogue of a multipart) is left out, at the byte level and without decoding; the
    headers and the inline text/plain and text/html parts stay byte for byte. This is
    what the IMAP mailbox fetches, so the size limit and the reading are the same for
    every mailbox and for ``explain``. One pass over the bytes finds every line that may
    be a boundary, so the work is linear however deep the multiparts nest. A message too
    odd to scan is returned unchanged.
    """
    if len(_BOUNDARY_PARAM.findall(raw)) > MAX_MULTIPARTS:
        return raw
    try:
        scan = _Scan(raw, _dash_lines(raw))
        scan.part(0, len(raw), depth=0)
    except (_TooOdd, ValueError, LookupError, email.errors.MessageError):
        return raw
    if not scan.drops:
        return raw
    out: list[bytes] = []
    at = 0
    for start, end in sorted(scan.drops):
        out.append(raw[at:start])
        at = max(at, end)
    out.append(raw[at:])
    return b"".join(out)


class _TooOdd(Exception):
    """More possible boundary lines than any real message has: not scanned."""


_DASH_LINE = re.compile(rb"^--([^\r\n]{1,200}?)[ \t]*\r?$", re.MULTILINE)
MAX_DASH_LINES = 20_000
MAX_PART_HEADER_BYTES = 64 * 1024


def _dash_lines(raw: bytes) -> dict[bytes, list[tuple[int, int]]]:
    """Every line that starts with "--": its text -> (line start, next line start)."""
    found: dict[bytes, list[tuple[int, int]]] = {}
    for count, match in enumerate(_DASH_LINE.finditer(raw)):
        if count >= MAX_DASH_LINES:
            raise _TooOdd
        after = match.end() + (raw[match.end() : match.end() + 1] == b"\n")
        found.setdefault(match.group(1), []).append((match.start(), after))
    return found


@dataclass
class _Scan:
    """The byte ranges of non-text bodies, found part by part."""

    raw: bytes
    lines: dict[bytes, list[tuple[int, int]]]
    drops: list[tuple[int, int]] = field(default_factory=list)
    budget: int = MAX_PARTS

    def part(self, start: int, end: int, depth: int) -> None:
        self.budget -= 1
        limit = min(end, start + MAX_PART_HEADER_BYTES)
        blank = _BLANK_LINE.search(self.raw, start, limit)
        if blank is None or depth > MAX_DEPTH or self.budget < 0:
            return
        head = _HEADER_PARSER.parsebytes(self.raw[start : blank.start()])
        body = blank.end()
        ctype = head.get_content_type()
        if ctype.startswith("multipart/"):
            boundary = str(head.get_boundary() or "").encode("ascii", "surrogateescape")
            self.multipart(body, end, boundary, depth)
        elif ctype not in ("text/plain", "text/html") or _is_attachment(head):
            self.drops.append((body, end))

    def multipart(self, body: int, end: int, boundary: bytes, depth: int) -> None:
        """Each part between the boundary lines; the preamble and epilogue are left out."""
        marks = self.marks(boundary, body, end) if boundary else []
        if not marks:
            return  # no boundary, or one that never occurs: the body is text
        self.drops.append((body, marks[0][0]))
        for (_, after, close), following in zip(marks, [*marks[1:], None], strict=True):
            if close:  # the close delimiter: the rest is epilogue
                self.drops.append((after, end))
                return
            part_end = following[0] if following is not None else end
            self.part(after, _before_newline(self.raw, after, part_end), depth + 1)

    def marks(self, boundary: bytes, body: int, end: int) -> list[tuple[int, int, bool]]:
        """The delimiter lines of ``boundary`` within [body, end): (start, after, close)."""
        found: list[tuple[int, int, bool]] = []
        for token, close in ((boundary, False), (boundary + b"--", True)):
            lines = self.lines.get(token, [])
            for index in range(bisect.bisect_left(lines, (body, -1)), len(lines)):
                start, after = lines[index]
                if start >= end:
                    break
                found.append((start, after, close))
        return sorted(found)


def _before_newline(raw: bytes, start: int, end: int) -> int:
    """The CRLF before a boundary line belongs to the boundary, not to the part."""
    if end - 2 >= start and raw[end - 2 : end] == b"\r\n":
        return end - 2
    if end - 1 >= start and raw[end - 1 : end] == b"\n":
        return end - 1
    return end


@dataclass(frozen=True)
class Bodies:
    """The text a mail client would show, as plain text and as HTML (either may be absent)."""

    plain: str | None
    html: str | None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Found:
    plain: tuple[str, ...] = ()
    html: tuple[str, ...] = ()


def read_bodies(msg: Message) -> Bodies:
    """The plain and HTML bodies of ``msg`` and what went wrong reading them; never raises."""
    problems: list[str] = []
    msg = _headers_in_body(msg, problems)
    try:
        found = _walk(msg, problems, depth=0, budget=[MAX_PARTS])
    except Exception as exc:
        problems.append(f"cannot walk the MIME tree: {type(exc).__name__}")
        found = _Found()
    plain = "\n".join(found.plain) if found.plain else None
    html = found.html[0] if found.html else None
    if plain is None and html is None and not problems:
        problems.append("no readable text part")
    return Bodies(plain=plain, html=html, problems=tuple(dict.fromkeys(problems)))


def _headers_in_body(msg: Message, problems: list[str]) -> Message:
    """Re-read a message whose headers ended up in the body (a blank line before them)."""
    if msg.keys() or msg.is_multipart():
        return msg
    payload = msg.get_payload()
    if not isinstance(payload, str) or not _HEADER_START.match(payload.lstrip("\r\n")):
        return msg
    problems.append("the message starts with a blank line; its headers were read from the body")
    return parse_message(payload.lstrip("\r\n").encode("ascii", "surrogateescape"))


def _walk(part: Message, problems: list[str], depth: int, budget: list[int]) -> _Found:
    """Collect the shown text of one MIME subtree, in reading order."""
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        problems.append("MIME tree too deep or too large; the rest was not read")
        return _Found()
    problems.extend(_defect_notes(part))
    ctype = part.get_content_type()
    if ctype.startswith("multipart/") and not part.is_multipart():
        return _boundary_missing(part, problems)
    if part.is_multipart():
        children = _children(part, problems)
        found = [_walk(child, problems, depth + 1, budget) for child in children]
        if ctype == "multipart/alternative":
            return _pick_alternative(found)
        return _Found(
            plain=tuple(p for f in found for p in f.plain),
            html=tuple(h for f in found for h in f.html),
        )
    if _is_attachment(part) or not ctype.startswith("text/"):
        if ctype == "application/pkcs7-mime":
            problems.append("encrypted or opaque-signed S/MIME content cannot be read")
        return _Found()
    if ctype not in ("text/plain", "text/html"):
        return _Found()
    text = _decode_part(part, problems)
    if text is None:
        return _Found()
    if _looks_binary(text):
        problems.append(f"a {ctype} part holds binary data; it was not read")
        return _Found()
    if ctype == "text/html":
        return _Found(html=(text,))
    if part.get_param("format", "", header="content-type") == "flowed":
        delsp = str(part.get_param("delsp", "no", header="content-type")).lower() == "yes"
        text = unflow(text, delsp=delsp)
    return _Found(plain=(text,))


_HTML_START = re.compile(r"\s*(?:<!doctype html|<html|<head|<body|<div|<p[ >])", re.IGNORECASE)


def _boundary_missing(part: Message, problems: list[str]) -> _Found:
    """A multipart whose declared boundary never occurs: clients show its body as text."""
    problems.append(f"{part.get_content_type()} whose boundary never occurs; read as its text")
    text = _decode_part(part, problems)
    if text is None or not text.strip() or _looks_binary(text):
        return _Found()
    return _Found(html=(text,)) if _HTML_START.match(text) else _Found(plain=(text,))


def _children(part: Message, problems: list[str]) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    problems.append(f"{part.get_content_type()} without readable parts")
    return []


def _pick_alternative(found: list[_Found]) -> _Found:
    """One plain and one HTML from the alternatives: the first non-blank plain, the last HTML."""
    plain = next((p for f in found for p in f.plain if p.strip()), None)
    htmls = [h for f in found for h in f.html if h.strip()]
    return _Found(plain=(plain,) if plain else (), html=(htmls[-1],) if htmls else ())


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()
    return disposition == "attachment"


def _defect_notes(part: Message) -> list[str]:
    return [f"MIME defect: {type(d).__name__}" for d in getattr(part, "defects", [])]


def _looks_binary(text: str) -> bool:
    """Control characters that no text has (NUL and friends) in the first few kilobytes."""
    sample = text[:4096]
    controls = sum(1 for c in sample if ord(c) < 32 and c not in "\t\n\r\f\v\x1b")
    return controls * 50 > len(sample)


def _decode_part(part: Message, problems: list[str]) -> str | None:
    """The part's text: transfer encoding undone, then the charset chain."""
    try:
        raw = part.get_payload(decode=True)
    except Exception:
        problems.append("undecodable transfer encoding")
        return None
    if not isinstance(raw, bytes):
        return None
    declared = part.get_content_charset() or ""
    text, note = decode_text(raw, declared)
    if note:
        problems.append(note)
    return text


def decode_text(raw: bytes, declared: str) -> tuple[str, str | None]:
    """Decode with the declared charset, then UTF-8, then windows-1252 with replacement.

    Returns the text and a note when the declared charset was unknown or wrong.
    """
    name = declared.strip().strip("\"'").lower()
    note: str | None = None
    codec = _codec_for(name)
    if codec is None and name not in _UNLABELLED:
        note = f"unknown charset {name!r}; decoded as UTF-8 or windows-1252"
    if codec is not None and codec not in ("utf-8", "windows-1252"):
        try:
            return raw.decode(codec), None
        except (UnicodeDecodeError, LookupError):
            note = f"text is not valid {name}; decoded as UTF-8 or windows-1252"
    try:
        return raw.decode("utf-8"), note
    except UnicodeDecodeError:
        pass
    lenient = raw.decode("utf-8", errors="replace")
    if _mostly_utf8(lenient):
        return lenient, note or "a few bytes are not valid UTF-8; they were replaced"
    if codec == "utf-8":
        note = "text is not valid UTF-8; decoded as windows-1252"
    return raw.decode("windows-1252", errors="replace"), note


def _mostly_utf8(text: str) -> bool:
    """UTF-8 text with a few broken bytes, rather than text in a single-byte charset.

    Decoding single-byte text as UTF-8 turns nearly every non-ASCII byte into U+FFFD;
    real UTF-8 with a damaged byte here and there keeps most of its characters.
    """
    replaced = text.count("\ufffd")
    non_ascii = sum(1 for c in text if ord(c) > 127)
    return non_ascii > 0 and replaced * 10 < non_ascii - replaced


def _codec_for(name: str) -> str | None:
    """The Python codec for a MIME charset label, or None when there is none."""
    if name in _UNLABELLED:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    canonical = {"utf-8": "utf-8", "cp1252": "windows-1252"}.get(info.name, info.name)
    return _CHARSET_ALIASES.get(canonical, canonical)


def unflow(text: str, delsp: bool = False) -> str:
    """Join RFC 3676 format=flowed soft line breaks (a line ending in a space continues).

    Quote depth is kept: a flowed line only joins the next line of the same depth, and the
    signature separator ``-- `` is never joined.
    """
    out: list[str] = []
    pending: list[str] = []  # the pieces of the flowed line still open (joined once: linear)
    pending_depth = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing
        if pending and depth != pending_depth:
            out.append(">" * pending_depth + (" " if pending_depth else "") + "".join(pending))
            pending = []
        if body.endswith(" ") and body != "-- ":
            pending.append(body[:-1] if delsp else body)
            pending_depth = depth
            continue
        out.append(">" * depth + (" " if depth else "") + "".join([*pending, body]))
        pending = []
    if pending:
        out.append(">" * pending_depth + (" " if pending_depth else "") + "".join(pending))
    return "\n".join(out)
