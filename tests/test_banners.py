"""Family 1 and 2: banners the mail system puts on top, and a greeting before the word.

Messages are composed in each client's real format (``tests/clients.py``) with the banner
the receiving Exchange or gateway adds; each positive case has a negative twin.
"""

from __future__ import annotations

from email import message_from_bytes

import pytest

from responder.config import ParsingSettings
from responder.reading.banners import banners_for, strip_banner_tags
from responder.reading.body import read_bodies
from responder.reading.decision import Grammar
from responder.reading.message import analyse, strip_subject_prefixes
from responder.reading.reply import extract_reply
from tests.clients import (
    BANNERS,
    CLIENTS,
    LOCALIZED_CLIENTS,
    Banner,
    Client,
    gmail,
    outlook_desktop,
)
from tests.harness import reply

ALICE = "Alice Approver <alice@example.com>"


def html_reply_text(raw: bytes, parsing: ParsingSettings | None = None) -> str:
    """The new text read from the HTML alternative alone (as when the text part is blank)."""
    bodies = read_bodies(message_from_bytes(raw))
    patterns = (parsing or ParsingSettings()).banner_patterns
    return extract_reply(None, bodies.html, banners_for(patterns)).text


@pytest.mark.parametrize("banner", BANNERS.values(), ids=BANNERS.keys())
@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_an_approval_under_a_banner_decides(client: Client, banner: Banner) -> None:
    raw = client(ALICE, "Approve\nBudget checked.", banner=banner)
    facts = analyse(raw)
    assert (facts.decision, facts.ticket_id) == ("approve", 1234)
    assert facts.reply_text.startswith("Approve")
    assert html_reply_text(raw).startswith("Approve")


@pytest.mark.parametrize("banner", BANNERS.values(), ids=BANNERS.keys())
@pytest.mark.parametrize("client", LOCALIZED_CLIENTS.values(), ids=LOCALIZED_CLIENTS.keys())
@pytest.mark.parametrize("lang", ["de", "fr", "nl", "es"])
def test_a_localized_reply_under_a_banner_decides(
    client: Client, banner: Banner, lang: str
) -> None:
    raw = client(ALICE, "Reject\nZu teuer.", lang=lang, banner=banner)
    assert analyse(raw).decision == "reject"


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_a_banner_that_says_approve_never_decides(client: Client) -> None:
    says_approve = Banner(
        "CAUTION: External sender. Approve nothing from outside senders without calling them.\n\n",
        "<div><b>CAUTION:</b> External sender. Approve nothing from outside senders without"
        " calling them.</div>",
    )
    raw = client(ALICE, "Who is this supplier?", banner=says_approve)
    facts = analyse(raw)
    assert facts.decision is None
    assert "Approve nothing" not in facts.reply_text
    assert "Approve nothing" not in html_reply_text(raw)


def test_a_banner_alone_decides_nothing_even_with_an_approve_subject() -> None:
    raw = reply("alice@example.com", "[EXTERNAL] Re: Approval required [ID:1234]",
                "[EXTERNAL] Approve only requests you expect from outside senders.\n")
    facts = analyse(raw)
    assert facts.decision is None and facts.reply_text == ""


def test_a_site_banner_pattern_is_skipped() -> None:
    site = ParsingSettings(banner_patterns=(r"\+\+\+ Nachricht von extern",))
    raw = outlook_desktop(ALICE, "Genehmigt", lang="de", banner=Banner(
        "+++ Nachricht von extern: bitte Vorsicht +++\n", "<p>+++ Nachricht von extern +++</p>"))
    grammar = Grammar.build(["de"])
    assert analyse(raw, site, grammar).decision == "approve"
    assert analyse(raw, ParsingSettings(), grammar).decision is None  # unknown to the built-ins
    assert html_reply_text(raw, site) == "Genehmigt"


def test_a_bad_banner_pattern_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="banner_patterns"):
        ParsingSettings(banner_patterns=("[unclosed",))


@pytest.mark.parametrize(
    ("subject", "bare"),
    [
        ("[EXTERNAL] RE: Approval [ID:1234]", "Approval [ID:1234]"),
        ("RE: [EXTERNAL] Approval [ID:1234]", "Approval [ID:1234]"),
        ("[External Sender] AW: Approval [ID:1234]", "Approval [ID:1234]"),
        ("EXT: RE: Approval [ID:1234]", "Approval [ID:1234]"),
        ("*EXTERNAL* Re: Approval [ID:1234]", "Approval [ID:1234]"),
        ("[EXT] APPROVE [ID:1234]", "APPROVE [ID:1234]"),
    ],
)
def test_subject_tags_are_skipped(subject: str, bare: str) -> None:
    assert strip_subject_prefixes(subject) == bare


def test_a_tagged_forward_is_a_forward_and_a_tagged_mailto_button_decides() -> None:
    forward = reply("alice@example.com", "[EXTERNAL] FW: Approval [ID:1234]", "Approve\n")
    assert analyse(forward).forwarded
    button = reply("alice@example.com", "[EXTERNAL] APPROVE [ID:1234]", "")
    assert analyse(button).decision == "approve"
    assert strip_banner_tags("Approve [EXTERNAL]") == "Approve [EXTERNAL]"


def test_a_first_line_tag_before_the_word_is_dropped() -> None:
    raw = reply("alice@example.com", "Re: Approval [ID:1234]", "[EXTERNAL] Approve\n")
    assert analyse(raw).decision == "approve"


# --- family 2: a greeting before the word ------------------------------------------------

GREETINGS = ["Hi Halo,", "Hello,", "Dear team,", "Hallo,", "Hi there!",
             "Good morning Service Desk,", "Bonjour,", "Hola equipo,", "Beste collega's,", "Hi"]


@pytest.mark.parametrize("greeting", GREETINGS)
@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_a_greeting_line_before_the_word_is_skipped(client: Client, greeting: str) -> None:
    facts = analyse(client(ALICE, f"{greeting}\nApprove\n\nThanks, Alice"))
    assert (facts.decision, facts.note) == ("approve", None)
    assert facts.reply_text.startswith(greeting)  # the person's words stay as written


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_a_greeting_paragraph_then_the_word_decides(client: Client) -> None:
    raw = client(ALICE, "Hi Halo,\n\nReject - not in this budget", banner=BANNERS["caution"])
    facts = analyse(raw)
    assert (facts.decision, facts.note) == ("reject", "not in this budget")


@pytest.mark.parametrize(
    "words",
    [
        "Hi, I cannot approve this",
        "Hi, I can't approve this.\nApprove",
        "Hello, approve please",
        "Hi Bob, approve it if you agree\nApprove",
        "Dear team, I approve\nApprove",
        "Hi I approve\nApprove",
        "Hi,\nI cannot approve",
        "Hi Halo,\nplease approve",
    ],
)
@pytest.mark.parametrize("client", [gmail, outlook_desktop], ids=["gmail", "outlook"])
def test_more_than_a_greeting_stays_the_first_paragraph(client: Client, words: str) -> None:
    assert analyse(client(ALICE, words)).decision is None


def test_a_greeting_with_a_localized_word() -> None:
    grammar = Grammar.build(["de"])
    raw = outlook_desktop(ALICE, "Hallo Service-Desk,\nGenehmigt", lang="de",
                          banner=BANNERS["safety-tip-de"])
    assert analyse(raw, None, grammar).decision == "approve"


INLINE = Banner(
    "CAUTION: This email originated from outside of the organization. Do not click links or"
    " open attachments unless you recognize the sender and know the content is safe.",
    '<span style="color:#9C6500"><b>CAUTION:</b> This email originated from outside of the'
    " organization. Do not click links or open attachments unless you recognize the sender and"
    " know the content is safe.</span>",
)


@pytest.mark.parametrize("client", CLIENTS.values(), ids=CLIENTS.keys())
def test_a_banner_glued_to_the_first_words_is_cut_off_them(client: Client) -> None:
    raw = client(ALICE, "Approve\nBudget checked.", banner=INLINE)  # no line break after it
    assert analyse(raw).decision == "approve"
    assert html_reply_text(raw).startswith("Approve")


def test_a_text_part_holding_only_a_banner_gives_way_to_the_html() -> None:
    # An HTML-only reply to which the gateway added a text/plain part with its banner alone.
    boundary = "banner-added"
    raw = reply(
        "alice@example.com", "RE: Approval required [ID:1234]",
        f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n"
        "[EXTERNAL] This email came from outside the organization.\n\n"
        f"--{boundary}\nContent-Type: text/html; charset=utf-8\n\n"
        "<p>[EXTERNAL] This email came from outside the organization.</p>"
        "<div>Approve</div><div id=\"divRplyFwdMsg\"><b>From:</b> Service Desk</div>\n"
        f"--{boundary}--\n",
        content_type=f'multipart/alternative; boundary="{boundary}"',
    )
    assert analyse(raw).decision == "approve"
