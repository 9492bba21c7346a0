"""Hostile input: whatever arrives, ``analyse`` answers in bounded time and never raises,
and the service files what it cannot read as failed, with the reason, and goes on."""

from __future__ import annotations

import time
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from responder.config import ParsingSettings
from responder.reading.decision import Decision
from responder.reading.message import analyse
from tests.corpus_cases import SKIPPED, corpus_path
from tests.harness import Harness, gmail_reply, reply

SMALL = ParsingSettings(max_message_bytes=200_000)
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def timed(raw: bytes, parsing: ParsingSettings = SMALL) -> float:
    """CPU seconds the analysis took: a bound on work that other load on the machine
    cannot break, while a quadratic blow-up (seconds of CPU) still fails it."""
    started = time.process_time()
    facts = analyse(raw, parsing)
    assert facts.key  # always something to record it under
    return time.process_time() - started


@FAST
@given(st.binary(max_size=20_000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert timed(raw) < 5


@FAST
@given(st.binary(max_size=5_000))
def test_arbitrary_bytes_after_a_real_header_never_raise(body: bytes) -> None:
    raw = b"From: a@example.com\r\nSubject: Re: [ID:12]\r\nContent-Type: text/plain\r\n\r\n"
    assert timed(raw + body) < 5


CHARSETS = st.sampled_from(["utf-8", "iso-8859-1", "utf-16", "x-unknown", "shift_jis", "koi8-r"])
ENCODINGS = st.sampled_from(["7bit", "base64", "quoted-printable", "8bit", "x-uuencode", "bogus"])


def leaf(draw: st.DrawFn) -> Message:
    text = draw(st.text(max_size=300))
    part = MIMEText("", draw(st.sampled_from(["plain", "html", "calendar"])))
    part.set_payload(text.encode("utf-8", "surrogatepass").decode("ascii", "surrogateescape"))
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = draw(ENCODINGS)
    part.set_param("charset", draw(CHARSETS))
    if draw(st.booleans()):
        part["Content-Disposition"] = draw(st.sampled_from(["attachment", "inline", "x; y"]))
    return part


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> Message:
    if depth > 6 or draw(st.integers(0, 3)) == 0:
        return leaf(draw)
    node = MIMEMultipart(draw(st.sampled_from(["mixed", "alternative", "related", "digest"])))
    for _ in range(draw(st.integers(0, 4))):
        node.attach(draw(mime_tree(depth + 1)))
    if draw(st.booleans()):
        node.set_boundary(draw(st.sampled_from(["", "--", "a" * 80, "b c", "x"])) or "y")
    return node


@FAST
@given(mime_tree(), st.sampled_from([b"", b"\r\n", b"--", b"\x00\xff"]))
def test_arbitrary_mime_trees_never_raise(tree: Message, tail: bytes) -> None:
    tree["From"] = "Alice <alice@example.com>"
    tree["Subject"] = "Re: Approval [ID:1234]"
    raw = tree.as_bytes() + tail
    assert timed(raw) < 5


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@example.com\r\nSubject: x\r\n"
        + b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(5000)
        ),
        b"From: a@example.com\r\nSubject: [ID:1]\r\n\r\nApprove\r\n" + b"> quoted\r\n" * 18_000,
        b"From: a@example.com\r\nSubject: [ID:1]\r\nContent-Type: text/html\r\n\r\n"
        + b"<div>" * 30_000,
        b"From: a@example.com\r\nSubject: [ID:1]\r\n\r\n" + b"\xff\xfe\x00" * 60_000,
        b"Subject: " + b"=?utf-8?b?" * 20_000 + b"\r\n\r\nx",
    ],
    ids=["nesting", "quotes", "html", "binary", "encoded-words"],
)
def test_pathological_messages_stay_bounded(raw: bytes) -> None:
    assert timed(raw) < 5


def test_too_large_is_unreadable_with_the_reason_and_keeps_its_identity() -> None:
    raw = gmail_reply("alice@example.com", 1234, "Approve") + b"x" * 300_000
    facts = analyse(raw, SMALL)
    assert facts.unreadable and "too large" in facts.unreadable
    assert (facts.sender, facts.ticket_id, facts.decision) == ("alice@example.com", 1234, None)


def corpus_seeds() -> list[Path]:
    corpus = corpus_path()
    folder = corpus / "mail-parser" / "tests" / "mails" if corpus else None
    return sorted(folder.iterdir()) if folder and folder.is_dir() else []


@pytest.mark.skipif(not corpus_seeds(), reason=f"{SKIPPED}: no corpus (see tests/test_corpus.py)")
@FAST
@given(st.data())
def test_mutated_corpus_mails_never_raise(data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from(corpus_seeds())).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        if not raw:
            break
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    assert timed(bytes(raw[:cut])) < 5


async def test_a_huge_message_is_filed_as_failed_and_the_service_goes_on(
    harness: Harness,
) -> None:
    harness.overrides = {"parsing": {"max_message_bytes": 100_000}}
    huge = reply("alice@example.com", "Re: Approval [ID:1234]", "Approve\n" + "y" * 400_000)
    harness.deliver(huge)
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))

    result = await harness.once()

    outcomes = {r.sender: (r.outcome, r.reason) for r in result.reports}
    assert outcomes["alice@example.com"][0] == "failed"
    assert "too large" in outcomes["alice@example.com"][1]
    assert outcomes["bob@example.com"][0] == "rejected"
    assert len(harness.folder("Approvals/Failed")) == 1
    assert harness.halo.approver(1234, 1)["result"] is None


def deep_nest_then_lines(depth: int, line: bytes, count: int) -> bytes:
    """What the fuzzer found: many nested multipart headers, then a long tail of lines."""
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=n%d\r\n\r\n--n%d\r\n" % (i, i)
        for i in range(depth)
    )
    return b"From: a@example.com\r\nSubject: Re: [ID:7]\r\n" + head + line * count


@pytest.mark.parametrize(
    "line",
    [b"> quoted text\r\n", b"--n1 not a boundary\r\n", b"\r\n"],
    ids=["quotes", "dashes", "blank"],
)
def test_deep_nesting_is_refused_in_linear_time(line: bytes) -> None:
    # The stdlib parser tries every open boundary on every line: 1.4 MB took 10 s.
    raw = deep_nest_then_lines(3000, line, 1_200_000 // len(line))
    assert timed(raw, ParsingSettings()) < 2
    facts = analyse(raw)
    assert facts.decision is None
    assert "3000 multipart boundaries" in (facts.unreadable or "")


def test_deep_nesting_still_finds_boundaries_and_the_reply() -> None:
    raw = deep_nest_then_lines(5, b"", 0) + (
        b"Content-Type: text/plain\r\n\r\nApprove\r\n--n4--\r\n--n3--\r\n" + b"> q\r\n" * 50_000
    )
    facts = analyse(raw)
    assert (facts.ticket_id, facts.decision, facts.reply_text) == (7, Decision.APPROVE, "Approve")


@pytest.mark.parametrize(
    "body",
    [
        b"<p>Approve" + b"<p>x" * 300_000,
        b"Approve<blockquote type=cite>" + b"<p>q" * 300_000,
        b"<table>" + b"<tr><td>x</td>" * 100_000 + b"</table>",
    ],
    ids=["paragraphs", "quoted", "table"],
)
def test_a_huge_html_body_is_read_in_bounded_time(body: bytes) -> None:
    # inscriptis lays out some 60,000 elements a second: 300,000 paragraphs took 5 s.
    raw = b"From: a@example.com\r\nSubject: Re: [ID:1]\r\nContent-Type: text/html\r\n\r\n" + body
    assert timed(raw, ParsingSettings()) < 2


# --- issue 19: the inputs that froze the service -----------------------------------------


def folded_encoded_words(size: int) -> str:
    """Encoded-words, folded over lines, that decode to one unbroken run of letters."""
    word = "=?utf-8?q?" + "a" * 60 + "?="
    return "\r\n ".join([word] * (size // (len(word) + 3)))


def crafted(shape: str) -> bytes:
    """The issue's shapes: each took 13 to 40 s of CPU, holding the GIL all along."""
    if shape == "display name":  # 100 KB unbroken: about 40 s
        return reply(f'"{"a" * 100_000}" <alice@example.com>', "Re: Approval [ID:1234]",
                     "Approve")
    if shape == "folded encoded-words":  # 112 KB decoding to one run: 16 to 27 s
        return reply(f"{folded_encoded_words(112_000)} <alice@example.com>",
                     "Re: Approval [ID:1234]", "Approve")
    if shape == "@ lines":  # 60 KB of lines of "@" under the reply: about 13 s
        return reply("alice@example.com", "Re: Approval [ID:1234]",
                     "Approve\n\n" + ("@" * 399 + ":\n") * 150)
    assert shape == "deep nesting"  # 1.9 MB at 49 levels: 13.6 s
    return deep_nest_then_lines(49, b"\r\n", 1_900_000 // 2)


SHAPES = ["display name", "folded encoded-words", "@ lines", "deep nesting"]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_crafted_inputs_of_issue_19_read_in_a_fraction_of_a_second(shape: str) -> None:
    raw = crafted(shape)
    assert timed(raw, ParsingSettings()) < 0.5


def test_a_display_name_of_100_kb_is_not_read_for_addresses() -> None:
    facts = analyse(crafted("display name"))
    assert facts.sender is None
    assert facts.suspicious == ("the From: header cannot be read: 100022 characters "
                                "(at most 2000)",)


def test_lines_of_at_signs_are_read_and_the_decision_found() -> None:
    facts = analyse(crafted("@ lines"))
    assert (facts.sender, facts.decision, facts.unreadable) == (
        "alice@example.com", Decision.APPROVE, None)


@pytest.mark.parametrize(("depth", "allowed"), [(8, True), (9, False), (49, False)])
def test_multiparts_nest_at_most_8_deep(depth: int, allowed: bool) -> None:
    raw = deep_nest_then_lines(depth, b"", 0) + b"Content-Type: text/plain\r\n\r\nApprove\r\n"
    facts = analyse(raw)
    if allowed:
        assert (facts.decision, facts.unreadable) == (Decision.APPROVE, None)
    else:
        assert facts.unreadable == ("message too complex to read: multiparts nested more "
                                    "than 8 deep")


def test_a_nest_over_a_megabyte_of_empty_lines_is_refused_before_it_is_scanned() -> None:
    raw = deep_nest_then_lines(3, b"\n", 1_000_000)
    assert timed(raw, ParsingSettings()) < 0.3
    assert "lines inside 3 nested multiparts" in (analyse(raw).unreadable or "")


def test_a_header_block_over_256_kb_is_not_read() -> None:
    raw = b"X-Filler: x\r\n" * 25_000 + gmail_reply("alice@example.com", 1234, "Approve")
    facts = analyse(raw, ParsingSettings())
    header = raw.index(b"\r\n\r\n")
    assert facts.sender is None
    assert facts.unreadable == ("message too complex to read: a header block of "
                                f"{header} bytes (at most 262144)")


async def test_the_crafted_messages_are_filed_in_one_quick_pass_and_the_rest_decided(
    harness: Harness,
) -> None:
    for shape in SHAPES:
        harness.deliver(crafted(shape))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))

    started = time.monotonic()
    result = await harness.once()
    took = time.monotonic() - started

    outcomes = sorted((r.outcome, r.sender or "-") for r in result.reports)
    assert outcomes == [
        ("approved", "alice@example.com"),  # the "@" lines are only its note
        ("failed", "-"),  # nested 49 deep: too complex to read, never answered
        ("quarantined", "-"),  # the 100 KB display name
        ("quarantined", "-"),  # the folded encoded-words (112 KB)
        ("rejected", "bob@example.com"),
    ]
    assert took < 10
    assert sorted(m["To"] for m in harness.answers()) == [
        "alice@example.com", "bob@example.com"]
