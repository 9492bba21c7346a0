"""The sender's address, read from the From: header's RFC 5322 structure.

An encoded-word (RFC 2047) is never an address nor part of one (RFC 2047 section 5):
it may stand in a display name or a comment, where it is decoded for a person to read.
So the header is split into mailboxes *before* anything is decoded; decoding first
would let ``=?utf-8?q?=3Cboss=40contoso=2Ecom=3E_=28?= <colleague@contoso.com>`` read
as ``<boss@contoso.com> ( <colleague@contoso.com>`` and make the boss the sender.

Then the decoded display name is checked for what a person (or a sloppier program
further on) would take for another address: a message whose name names someone else
is not trusted at all (``read_sender`` in ``message.py`` quarantines it).

One pass over at most ``MAX_HEADER_CHARS`` characters, no regular expression: the
reading is linear whatever the header holds.
"""

from __future__ import annotations

import contextlib
import email.errors
import unicodedata
from dataclasses import dataclass
from email.header import decode_header, make_header

MAX_HEADER_CHARS = 2000  # a From: or Sender: header longer than this is refused unread
MAX_NAME_CHARS = 256  # a decoded display name (or comment) longer than this is refused

_SPACE = " \t\r\n"
_WORD_ENDS = _SPACE + '"(<,:;)>'
_NAME_BREAKS = str.maketrans({c: " " for c in "<>()[]{}\"',;:|/\\"})
_DRESSING = frozenset("<>()")


class AddressSyntax(ValueError):
    """Why an address header cannot be read as RFC 5322 mailboxes."""


@dataclass(frozen=True)
class Mailbox:
    """One mailbox of an address list, with nothing decoded."""

    address: str  # the addr-spec as written, without its angle brackets
    phrase: str  # the display name as written: quotes removed, encoded-words kept
    comments: tuple[str, ...] = ()  # the comments' text, encoded-words kept


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "quoted", "comment", "angle" or one of , : ;
    text: str  # the content: quotes, parentheses, brackets and escapes removed
    raw: str  # as written
    spaced: bool  # whitespace came before it


def mailboxes(value: str) -> list[Mailbox]:
    """The mailboxes of an address header (its raw, undecoded value), in order.

    Raises ``AddressSyntax`` for a header that is too long, unbalanced, a group, or a
    mailbox that is not ``[display name] <address>`` or ``address`` (comments allowed).
    """
    if len(value) > MAX_HEADER_CHARS:
        raise AddressSyntax(f"{len(value)} characters (at most {MAX_HEADER_CHARS})")
    found: list[Mailbox] = []
    chunk: list[_Token] = []
    for token in [*_tokens(value), _Token(",", ",", ",", False)]:
        if token.kind in ":;":
            raise AddressSyntax("a group (name: addresses;) names no single sender")
        if token.kind != ",":
            chunk.append(token)
        elif any(t.kind != "comment" for t in chunk):
            found.append(_mailbox(chunk))
            chunk = []
        else:  # an empty list element, which RFC 5322's obsolete syntax allows
            chunk = []
    return found


def display_text(text: str) -> str:
    """Encoded-words decoded (also inside quotes, as mail clients do), spaces unfolded."""
    with contextlib.suppress(LookupError, UnicodeError, ValueError,
                             email.errors.HeaderParseError):
        text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def name_problem(name: str, address: str, what: str = "display name") -> str | None:
    """Why a decoded display name (or comment) misleads about who sent the message.

    It does when it names an address other than ``address``, or dresses any address
    with ``<``, ``>``, ``(`` or ``)`` to look like the header's own structure. Compared
    after NFKC folding, so full-width ``\uff1c`` and ``\uff20`` count as ``<`` and ``@``.
    """
    if len(name) > MAX_NAME_CHARS:
        return f"the {what} is {len(name)} characters long (at most {MAX_NAME_CHARS})"
    text = unicodedata.normalize("NFKC", name)
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in text):
        return f"the {what} contains control characters"
    shapes = address_shapes(text)
    for shape in shapes:
        if normalise_address(shape) != address:
            return f"the {what} contains another address ({shape})"
    if shapes and _DRESSING.intersection(text):
        return f"the {what} is dressed as an address (an address with <, >, ( or ) around it)"
    return None


def address_shapes(text: str) -> list[str]:
    """The words of ``text`` that look like an address (``something@something``)."""
    words = (w.strip(".!?") for w in text.translate(_NAME_BREAKS).split())
    return [w for w in words if _is_shape(w)]


def normalise_address(address: str) -> str:
    """Lower-case, and the domain in its IDNA (ASCII) form, so that forms compare equal."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local.lower()}@{domain}" if local else ""


def _is_shape(word: str) -> bool:
    local, at, domain = word.rpartition("@")
    return bool(at and local.strip("@") and domain)


def _mailbox(chunk: list[_Token]) -> Mailbox:
    comments = tuple(t.text for t in chunk if t.kind == "comment")
    angles = [i for i, t in enumerate(chunk) if t.kind == "angle"]
    if len(angles) > 1:
        raise AddressSyntax("two <addresses> in one mailbox")
    if angles:
        at = angles[0]
        if any(t.kind != "comment" for t in chunk[at + 1:]):
            raise AddressSyntax("text after the <address>")
        words = [t for t in chunk[:at] if t.kind != "comment"]
        phrase = "".join((" " if t.spaced and i else "") + t.text for i, t in enumerate(words))
        address = chunk[at].text.strip(_SPACE)
    else:
        words = [t for t in chunk if t.kind != "comment"]
        if any(t.spaced for t in words[1:]):
            raise AddressSyntax("words that are not an address")
        phrase, address = "", "".join(t.raw for t in words)
    if "=?" in address and "?=" in address:
        raise AddressSyntax("an encoded-word in the address (RFC 2047 allows them in names only)")
    local, _, domain = address.rpartition("@")
    if (not local or not domain or any(ch in address for ch in _SPACE + "()<>,;")
            or ("@" in local and not local.startswith('"'))):
        raise AddressSyntax("a malformed address")
    return Mailbox(address, phrase, comments)


def _tokens(value: str) -> list[_Token]:
    """The header cut into words, quoted strings, comments, <addresses> and , : ;."""
    tokens: list[_Token] = []
    at, spaced = 0, False
    while at < len(value):
        ch = value[at]
        if ch in _SPACE:
            at, spaced = at + 1, True
            continue
        if ch == '"':
            kind, end = "quoted", _closing_quote(value, at)
        elif ch == "(":
            kind, end = "comment", _closing_parenthesis(value, at)
        elif ch == "<":
            kind, end = "angle", _closing_angle(value, at)
        elif ch in ",:;":
            kind, end = ch, at + 1
        elif ch in ")>":
            raise AddressSyntax(f"a {ch!r} that closes nothing")
        else:
            kind, end = "word", at
            while end < len(value) and value[end] not in _WORD_ENDS:
                end += 1
        raw = value[at:end]
        tokens.append(_Token(kind, _content(kind, raw), raw, spaced))
        at, spaced = end, False
    return tokens


def _content(kind: str, raw: str) -> str:
    if kind in ("quoted", "comment"):
        return _unescape(raw[1:-1])
    return raw[1:-1] if kind == "angle" else raw


def _unescape(text: str) -> str:
    """A quoted string's or comment's text with its quoted-pairs (``\\x``) resolved."""
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped or ch != "\\":
            out.append(ch)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def _closing_quote(value: str, start: int) -> int:
    """The index just past the quote closing the quoted string opened at ``start``."""
    at = start + 1
    while at < len(value):
        if value[at] == "\\":
            at += 2
            continue
        if value[at] == '"':
            return at + 1
        at += 1
    raise AddressSyntax("a quoted string that never closes")


def _closing_parenthesis(value: str, start: int) -> int:
    """The index just past the ``)`` closing the comment opened at ``start`` (they nest)."""
    depth, at = 0, start
    while at < len(value):
        ch = value[at]
        if ch == "\\":
            at += 2
            continue
        depth += (ch == "(") - (ch == ")")
        at += 1
        if depth == 0:
            return at
    raise AddressSyntax("a comment that never closes")


def _closing_angle(value: str, start: int) -> int:
    """The index just past the ``>`` closing the address opened at ``start``."""
    at = start + 1
    while at < len(value):
        ch = value[at]
        if ch == '"':
            at = _closing_quote(value, at)
            continue
        if ch == "<":
            raise AddressSyntax("a '<' inside an <address>")
        if ch == ">":
            return at + 1
        at += 1
    raise AddressSyntax("an <address> that never closes")
