"""Every regular expression that sees a sender's text runs in linear time.

``re`` backtracks, and holds the GIL while it does: one pattern with overlapping
quantifiers on a crafted line froze the whole service for seconds (issue 19). Each
pattern below is tried the way the code uses it (match, fullmatch, search, findall,
sub) on adversarial text: a short unit made of the pattern's own characters, repeated,
between a few more of them. The CPU time for 8n characters must stay within a bounded
multiple of the time for n; a quadratic pattern takes 64 times as long, a linear one 8.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from responder.reading import banners, body, decision, language, machine, message, quotes
from responder.trust import authresults, discovery


@dataclass(frozen=True)
class Use:
    """One pattern as the code applies it to a sender's text."""

    name: str
    pattern: re.Pattern[str] | re.Pattern[bytes]
    how: str  # match, fullmatch, search, findall, finditer, sub, split


def uses() -> list[Use]:
    """The patterns that see sender-controlled text, each with how it is applied."""
    table: list[tuple[object, str, str]] = [
        (message, "_SUBJECT_PREFIX", "sub"),
        (message, "_FORWARD_PREFIX", "match"),
        (message, "_REFERENCE", "findall"),
        (body, "_HEADER_START", "match"),
        (body, "_BOUNDARY_PARAM", "findall"),
        (body, "_BLANK_LINE", "search"),
        (body, "_DASH_LINE", "finditer"),
        (body, "_HTML_START", "match"),
        (authresults, "_RESULT", "match"),
        (authresults, "_PAIR", "match"),
        (authresults, "_AUTHSERV", "match"),
        (authresults, "_BARE_DOMAIN", "match"),
        (authresults, "_TOKENS", "findall"),
        (quotes, "_HEADER_LINE", "match"),
        (quotes, "_QUOTE_LINE", "match"),
        (quotes, "_PIPE_LINE", "match"),
        (quotes, "_INITIALS_LINE", "match"),
        (quotes, "_DATE_FIRST", "fullmatch"),
        (quotes, "_RULE_LINE", "fullmatch"),
        (quotes, "_UNDERSCORE_RULE", "fullmatch"),
        (quotes, "_TRAILING_UNDERSCORES", "fullmatch"),
        (quotes, "_SIGNATURE_DELIMITER", "fullmatch"),
        (quotes, "_DASHED_TITLE", "fullmatch"),
        (quotes, "_FORWARD_WORDS", "search"),
        (quotes, "_SEPARATOR_PHRASE", "fullmatch"),
        (quotes, "_FOOTER", "fullmatch"),
        (quotes, "_FOOTER_WORDS", "search"),
        (quotes, "_URL_SUFFIX", "sub"),
        (quotes, "_SENTENCE_PUNCTUATION", "search"),
        (quotes, "_WROTE", "search"),
        (quotes, "_ATTRIBUTION_START", "match"),
        (quotes, "_EMAIL", "search"),
        (quotes, "_DIGIT", "search"),
        (quotes, "_GLUED_COLON", "search"),
        (quotes, "_ENGLISH_NO_COLON", "fullmatch"),
        (quotes, "_CLOSING", "fullmatch"),
        (decision, "_NOTE_LEAD", "sub"),
        (decision, "_PARAGRAPH_BREAK", "split"),
        (decision, "_GREETING", "match"),
        (decision, "_NAME_WORD", "fullmatch"),
        (decision, "_FULL_WIDTH_MARKS", "search"),
        (discovery, "_HOST", "fullmatch"),
        (machine, "_AUTO_REPLY_SUBJECT", "match"),
        (machine, "_RECEIPT_SUBJECT", "match"),
        (banners, "_SUBJECT_TAG", "match"),
        (banners, "_LINE_TAG", "match"),
        (banners, "_LEAD", "sub"),
        (banners, "_VOCABULARY", "search"),
        (banners, "_SENTENCE_END", "search"),
        (banners, "_RULE", "fullmatch"),
        (banners, "_FIRST_WORD", "match"),
        (banners, "_PROOFPOINT_END", "fullmatch"),
        (banners, "_GLUED_AFTER_END", "fullmatch"),
    ]
    found = [Use(f"{m.__name__.rsplit('.', 1)[1]}.{n}", getattr(m, n), how)  # type: ignore[attr-defined]
             for m, n, how in table]
    found += [Use(f"banners.start[{i}]", p, "match")
              for i, p in enumerate(banners.DEFAULT_BANNERS.starts)]
    found += [Use(f"language.{k}", p, "search") for k, p in language._MARKERS.items()]
    found.append(Use("message.tag", message._tag_pattern("[ID:", "]"), "findall"))
    return found


USES = uses()
APPLY: dict[str, Callable[[re.Pattern[str], str], object]] = {
    "match": lambda p, s: p.match(s),
    "fullmatch": lambda p, s: p.fullmatch(s),
    "search": lambda p, s: p.search(s),
    "findall": lambda p, s: p.findall(s),
    "finditer": lambda p, s: list(p.finditer(s)),
    "sub": lambda p, s: p.sub("", s),
    "split": lambda p, s: p.split(s),
}
GENERIC = " \t\n\ra1.@:<>-=_*\"'()[]|,;!?éx"
N = 1_000
FLOOR = 0.004  # CPU seconds for 8n characters below which no pattern is worth a ratio
RATIO = 24  # linear: 8; quadratic: 64


def alphabet(use: Use) -> str:
    """The pattern's own literal characters (where its quantifiers meet) and a few more."""
    source = use.pattern.pattern
    text = source.decode("latin-1") if isinstance(source, bytes) else source
    own = sorted({c for c in text if c.isprintable() and c != "\\"})
    return "".join(dict.fromkeys([*GENERIC, *own]))


def cpu(use: Use, text: str) -> float:
    """The least thread CPU time of three runs (another thread or process cannot add to it)."""
    subject: str | bytes = (text.encode("utf-8", "surrogatepass")
                            if isinstance(use.pattern.pattern, bytes) else text)
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        APPLY[use.how](use.pattern, subject)  # type: ignore[arg-type]
        best = min(best, time.thread_time() - started)
    return best


def assert_linear(use: Use, head: str, unit: str, tail: str) -> None:
    def text(n: int) -> str:
        return head + unit * (n // len(unit)) + tail

    large = cpu(use, text(8 * N))
    if large < FLOOR:
        return
    small = cpu(use, text(N))
    assert large < RATIO * max(small, 1e-5), (
        f"{use.name} ({use.how}) is not linear on {head!r} + {unit!r} * n + {tail!r}: "
        f"{small * 1000:.2f} ms at n={N}, {large * 1000:.1f} ms at 8n")


@st.composite
def adversarial(draw: st.DrawFn, use: Use) -> tuple[str, str, str]:
    chars = st.sampled_from(alphabet(use))
    head = "".join(draw(st.lists(chars, max_size=3)))
    unit = "".join(draw(st.lists(chars, min_size=1, max_size=4)))
    tail = "".join(draw(st.lists(chars, max_size=3)))
    return head, unit, tail


@pytest.mark.parametrize("use", USES, ids=[u.name for u in USES])
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_each_pattern_runs_in_linear_time(use: Use, data: st.DataObject) -> None:
    head, unit, tail = data.draw(adversarial(use))
    assert_linear(use, head, unit, tail)


# The shapes that froze the service (issue 19), and the ones a sweep over every one- and
# two-character unit found (most before they were fixed): each must stay linear.
KNOWN = [
    ("quotes._EMAIL", "", "@", ":"),
    ("quotes._EMAIL", "", "a@", ":"),
    ("quotes._EMAIL", "<", "@", ""),
    ("quotes._HEADER_LINE", "", " ", "x"),
    ("quotes._HEADER_LINE", "", "  ", "\n"),
    ("quotes._SEPARATOR_PHRASE", "", " ", ""),
    ("quotes._RULE_LINE", "", "\t", ":"),
    ("quotes._TRAILING_UNDERSCORES", "", "_", ":"),
    ("quotes._URL_SUFFIX", "", " \r", "\n"),
    ("quotes._URL_SUFFIX", "", "<https:", ""),
    ("banners._RULE", "", " ", "!"),
    ("banners._LINE_TAG", "", " ", ""),
    ("banners._SUBJECT_TAG", "", " ", "!"),
    ("banners._GLUED_AFTER_END", "", "  ", "!"),
    ("banners._PROOFPOINT_END", "", "[)", ""),
]


@pytest.mark.parametrize(("name", "head", "unit", "tail"), KNOWN)
def test_known_adversarial_shapes_run_in_linear_time(
    name: str, head: str, unit: str, tail: str
) -> None:
    use = next(u for u in USES if u.name == name)
    assert_linear(use, head, unit, tail)


OLD_EMAIL = re.compile(
    r"[^\s<>()\[\]\"']+@[^\s<>()\[\]\"']+\.[^\s<>()\[\]\"']+|<[^<>\s]+@[^<>\s]+>")
SHORT = st.text(alphabet="a.@ <>\"'()[]b", max_size=30)


@settings(max_examples=500, deadline=None)
@given(SHORT)
@example("a@b@c.d")
@example("@@a.b")
@example("<@a@b>")
def test_the_linear_email_pattern_finds_what_the_old_one_found(text: str) -> None:
    assert bool(quotes._EMAIL.search(text)) == bool(OLD_EMAIL.search(text))
