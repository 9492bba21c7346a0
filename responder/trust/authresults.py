"""Read one Authentication-Results header as the services that write them really do.

RFC 8601 says ``authserv-id; method=result ptype.property=value; ...``. The servers our
users have bend it, and a strict parser (authres) raises on every one of these:

- Exchange Online writes no authserv-id at all (``spf=pass (sender IP is ...) ...``);
- it leaves stray recipient-domain tokens between results
  (``smtp.mailfrom=partner.example; contoso.onmicrosoft.com; dkim=pass ...``);
- it adds ``action=`` to dmarc and a ``compauth=pass reason=100`` result of its own;
- it writes several ``dkim=`` results, and ends with a stray ``;``.

So this reader is tolerant of exactly those shapes and strict about everything else:
comments must balance, every clause must be ``method=result`` followed by
``key=value`` pairs, and only a header without an authserv-id may carry a bare domain
token. Whatever else it meets raises ``Unreadable`` (callers fail closed on it).
Pure: text in, facts out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NO_ID = ""  # the authserv-id of a header that names none (Exchange Online's)

_RESULT = re.compile(r"^(?P<method>[A-Za-z][\w-]*)(?:/\d+)?\s*=\s*(?P<result>[A-Za-z0-9_-]+)")
_PAIR = re.compile(
    r'\s*(?P<key>[A-Za-z][\w-]*(?:\.[\w-]+)?)\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]+)'
)
# "mx.example.org", or "mx.microsoft.com 1" (an authserv-id with a version)
_AUTHSERV = re.compile(r"^(?P<id>[^\s=\"]+)(?:\s+\d+)?$")
_BARE_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\.?$")
_MAX = 8192  # no real header is longer; a longer one is not read


class Unreadable(ValueError):
    """The header is not in any shape we know; the reason says where it went wrong."""


@dataclass(frozen=True)
class Result:
    """One ``method=result`` clause with its properties (``header.d``, ``reason``, ...)."""

    method: str
    result: str
    props: tuple[tuple[str, str], ...]
    text: str  # the clause without comments, for explain and the ledger

    def prop(self, key: str) -> str:
        for name, value in self.props:
            if name == key:
                return value
        return ""


@dataclass(frozen=True)
class Header:
    authserv_id: str  # lower-case; NO_ID when the header names none
    results: tuple[Result, ...]
    stray: tuple[str, ...] = ()  # bare tokens Exchange Online leaves between results


def read(value: str) -> Header:
    """Read one header value; raises ``Unreadable`` on anything outside the known shapes."""
    if len(value) > _MAX:
        raise Unreadable(f"longer than {_MAX} characters")
    text = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    clauses = [c.strip() for c in _split(_uncomment(text))]
    clauses = [c for c in clauses if c]
    if not clauses:
        raise Unreadable("empty")
    authserv_id = NO_ID
    if not _RESULT.match(clauses[0]):
        found = _AUTHSERV.match(clauses[0])
        if not found:
            raise Unreadable(f"no authserv-id or result at the start: {clauses[0][:60]!r}")
        authserv_id = found["id"].rstrip(".").lower()
        clauses = clauses[1:]
    if clauses == ["none"] and authserv_id != NO_ID:
        return Header(authserv_id, ())
    results: list[Result] = []
    stray: list[str] = []
    for clause in clauses:
        if authserv_id == NO_ID and _BARE_DOMAIN.match(clause):
            stray.append(clause.lower())
            continue
        results.append(_result(clause))
    if not results:
        raise Unreadable("no results")
    return Header(authserv_id, tuple(results), tuple(stray))


def _result(clause: str) -> Result:
    head = _RESULT.match(clause)
    if head is None:
        raise Unreadable(f"not a method=result clause: {clause[:60]!r}")
    props: list[tuple[str, str]] = []
    rest = clause[head.end() :]
    while rest.strip():
        pair = _PAIR.match(rest)
        if pair is None:
            raise Unreadable(f"cannot read {rest.strip()[:60]!r} in {head.group(0)!r}")
        raw = pair["value"]
        props.append((pair["key"].lower(), raw[1:-1] if raw.startswith('"') else raw))
        rest = rest[pair.end() :]
    text = " ".join(clause.split())
    return Result(head["method"].lower(), head["result"].lower(), tuple(props), text)


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|\\.|[()"]|[^"\\()]+|\\')


def _uncomment(text: str) -> str:
    """The text with (nested) comments replaced by a space; quoted strings kept whole."""
    out: list[str] = []
    depth = 0
    for token in _TOKENS.findall(text):
        if token == "(":
            depth += 1
        elif token == ")":
            if depth == 0:
                raise Unreadable("a ')' without its '('")
            depth -= 1
            out.append(" " if depth == 0 else "")
        elif token == '"' and depth == 0:
            raise Unreadable("an unclosed quoted string")
        elif depth == 0:
            out.append(token)
    if depth:
        raise Unreadable("an unclosed comment")
    return "".join(out)


def _split(text: str) -> list[str]:
    """Split at ';' outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts
