# ruff: noqa: RUF001 - localized sample text is meant literally
"""extract_reply on bodies modelled on real mail clients, with the decision word on top.

The quoted approval request always holds both words ("Please reply APPROVE or REJECT"),
so reading any of the quoted text would make the answer ambiguous or wrong.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from responder.reading.reply import Reply, extract_reply

REQUEST = "Approval required for ticket [ID:1234]\n\nPlease reply APPROVE or REJECT."
SUBJECT = "Approval required [ID:1234]"


def quoted(text: str = REQUEST) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


PLAIN_REPLIES = {
    "outlook desktop": (
        "APPROVE\n\n________________________________\n"
        "From: Halo <halo@example.com>\nSent: Monday, March 3, 2025 10:00 AM\n"
        f"To: Jane Doe <jane@example.com>\nSubject: {SUBJECT}\n\n{REQUEST}\n",
        "APPROVE",
    ),
    "outlook desktop bold, no rule": (
        "Reject\n\n*From:* Halo [mailto:halo@example.com]\n*Sent:* Monday, March 3, 2025 10:00"
        f"\n*To:* Jane Doe\n*Subject:* {SUBJECT}\n\n{REQUEST}\n",
        "Reject",
    ),
    "outlook original message": (
        "APPROVE\n\n-----Original Message-----\nFrom: Halo <halo@example.com>\n"
        f"Sent: Monday, March 3, 2025 10:00 AM\nTo: Jane\nSubject: {SUBJECT}\n\n{REQUEST}",
        "APPROVE",
    ),
    "gmail web": (
        "REJECT\n\nOn Mon, Mar 3, 2025 at 10:00 AM Halo <halo@example.com> wrote:\n\n" + quoted(),
        "REJECT",
    ),
    "gmail attribution wrapped": (
        "APPROVE\n\nOn Mon, Mar 3, 2025 at 10:00 AM Halo Service Desk <\n"
        "halo@example.com> wrote:\n\n" + quoted(),
        "APPROVE",
    ),
    "iphone mail": (
        "Approve\n\nSent from my iPhone\n\n> On 3 Mar 2025, at 10:00, Halo "
        "<halo@example.com> wrote:\n>\n" + quoted(),
        "Approve",
    ),
    "outlook ios": (
        "APPROVE\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n________________________________"
        f"\nFrom: Halo <halo@example.com>\nSent: Monday, March 3, 2025 10:00:00 AM\nTo: Jane"
        f"\nSubject: {SUBJECT}\n\n{REQUEST}",
        "APPROVE",
    ),
    "outlook android": (
        "REJECT not in budget\n\nGet Outlook for Android<https://aka.ms/ghei36>\n\n"
        f"From: Halo <halo@example.com>\nSent: Monday, March 3, 2025 10:00:00 AM\nTo: Jane\n"
        f"Subject: {SUBJECT}\n\n{REQUEST}",
        "REJECT not in budget",
    ),
    "thunderbird": (
        "REJECT\n\nOn 03/03/2025 10:00, Halo wrote:\n" + quoted(),
        "REJECT",
    ),
    "yahoo": (
        "APPROVE\n\nSent from Yahoo Mail on Android\n\n  On Mon, 3 Mar 2025 at 10:00, Halo"
        "<halo@example.com> wrote:\n\n" + REQUEST,
        "APPROVE",
    ),
    "german outlook": (
        "APPROVE\n\nVon: Halo <halo@example.de>\nGesendet: Montag, 3. März 2025 10:00\n"
        f"An: Jana\nBetreff: {SUBJECT}\n\n{REQUEST}",
        "APPROVE",
    ),
    "german gmail": (
        "REJECT\n\nAm Mo., 3. März 2025 um 10:00 Uhr schrieb Halo <halo@example.de>:\n\n"
        + quoted(),
        "REJECT",
    ),
    "french outlook": (
        "REJECT\n\nDe : Halo <halo@example.fr>\nEnvoyé : lundi 3 mars 2025 10:00\n"
        f"À : Jeanne\nObjet : {SUBJECT}\n\n{REQUEST}",
        "REJECT",
    ),
    "french gmail wrapped": (
        "APPROVE\n\nLe lun. 3 mars 2025 à 10:00, Halo <halo@example.fr>\na écrit :\n\n" + quoted(),
        "APPROVE",
    ),
    "spanish": (
        "APPROVE\n\nEl lun, 3 mar 2025 a las 10:00, Halo (<halo@example.es>) escribió:\n"
        + quoted(),
        "APPROVE",
    ),
    "dutch": (
        "REJECT\n\nOp ma 3 mrt. 2025 om 10:00 schreef Halo <halo@example.nl>:\n" + quoted(),
        "REJECT",
    ),
    "polish": (
        "APPROVE\n\nDnia 3 marca 2025 10:00 Halo <halo@example.pl> napisał(a):\n\n" + REQUEST,
        "APPROVE",
    ),
    "russian": (
        "APPROVE\n\nпн, 3 мар. 2025 г. в 10:00, Halo <halo@example.ru>:\n\n" + REQUEST,
        "APPROVE",
    ),
    "signature mentions approvals": (
        "APPROVE\n\n-- \nJane Doe | Head of Approvals\nApprovals & Rejections Office\n\n"
        + quoted(),
        "APPROVE",
    ),
    "sent from my desk is not a footer": (
        "APPROVE\n\nSent from my desk, which is easier than my phone.\n\n" + quoted(),
        "APPROVE\n\nSent from my desk, which is easier than my phone.",
    ),
    "inline reply under the quote": (
        "On Mon, Mar 3, 2025 at 10:00 AM Halo <halo@example.com> wrote:\n"
        + quoted()
        + "\nAPPROVE\n\nThanks\n",
        "APPROVE\n\nThanks",
    ),
}


@pytest.mark.parametrize("name", PLAIN_REPLIES)
def test_plain_replies(name: str) -> None:
    body, want = PLAIN_REPLIES[name]
    reply = extract_reply(body, None)
    assert reply.text == want
    assert "Please reply" in reply.original or "Approval required" in reply.original


@pytest.mark.parametrize(
    "name", ["outlook desktop", "outlook ios", "german outlook", "french outlook"]
)
def test_original_subject_from_header_block(name: str) -> None:
    assert extract_reply(PLAIN_REPLIES[name][0], None).original_subject == SUBJECT


def test_crlf_line_endings() -> None:
    body = PLAIN_REPLIES["gmail web"][0].replace("\n", "\r\n")
    assert extract_reply(body, None).text == "REJECT"


FORWARDS = {
    "ios": (
        "APPROVE\n\nSent from my iPhone\n\nBegin forwarded message:\n\n"
        "> From: Halo <halo@example.com>\n> Date: 3 March 2025 at 10:00:00 CET\n"
        f"> To: Jane <jane@example.com>\n> Subject: {SUBJECT}\n>\n" + quoted()
    ),
    "android gmail": (
        "Reject\n\n---------- Forwarded message ---------\nFrom: Halo <halo@example.com>\n"
        f"Date: Mon, 3 Mar 2025, 10:00\nSubject: {SUBJECT}\nTo: <jane@example.com>\n\n{REQUEST}"
    ),
    "thunderbird": (
        "APPROVE\n\n-------- Forwarded Message --------\n"
        f"Subject: \t{SUBJECT}\nDate: \tMon, 3 Mar 2025 10:00:00 +0100\n"
        f"From: \tHalo <halo@example.com>\nTo: \tjane@example.com\n\n{REQUEST}"
    ),
    "german": (
        "APPROVE\n\n-------- Weitergeleitete Nachricht --------\nVon: Halo <halo@example.de>\n"
        f"Datum: 03.03.2025 10:00\nBetreff: {SUBJECT}\nAn: jana@example.de\n\n{REQUEST}"
    ),
    "french": (
        "REJECT\n\n-------- Message transféré --------\nDe : Halo <halo@example.fr>\n"
        f"Date : 03/03/2025 10:00\nObjet : {SUBJECT}\nÀ : jeanne@example.fr\n\n{REQUEST}"
    ),
    "spanish": (
        "APPROVE\n\n---------- Mensaje reenviado ---------\nDe: Halo <halo@example.es>\n"
        f"Date: lun, 3 mar 2025 a las 10:00\nSubject: {SUBJECT}\nTo: <ana@example.es>\n\n"
        f"{REQUEST}"
    ),
}


@pytest.mark.parametrize("name", FORWARDS)
def test_forwards_read_the_text_above_the_original(name: str) -> None:
    reply = extract_reply(FORWARDS[name], None)
    assert reply.text.split()[0] in ("APPROVE", "Reject", "REJECT")
    assert len(reply.text.split()) == 1
    assert reply.forwarded
    assert reply.original_subject == SUBJECT
    assert "Please reply APPROVE or REJECT" in reply.original


def test_outlook_mobile_forward_text_and_subject() -> None:
    body = (
        "APPROVE\n\nGet Outlook for Android\n________________________________\n"
        f"From: Halo <halo@example.com>\nSent: Monday, March 3, 2025 10:00:00 AM\n"
        f"To: Jane\nSubject: {SUBJECT}\n\n{REQUEST}"
    )
    reply = extract_reply(body, None)
    assert (reply.text, reply.original_subject) == ("APPROVE", SUBJECT)


HTML_REQUEST = "<p>Approval required for ticket [ID:1234]</p><p>Please reply APPROVE or REJECT.</p>"
HTML_REPLIES = {
    "outlook desktop": (
        '<html><body><div class="WordSection1"><p class="MsoNormal">REJECT<o:p></o:p></p>'
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p><div><div style="border:none;border-top:'
        'solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> '
        "Halo &lt;halo@example.com&gt;<br><b>Sent:</b> Monday, March 3, 2025 10:00<br>"
        f"<b>To:</b> Jane<br><b>Subject:</b> {SUBJECT}</p></div></div>"
        f"{HTML_REQUEST}</div></body></html>"
    ),
    "outlook web": (
        '<div dir="ltr">REJECT</div><div id="appendonsend"></div><hr style="display:inline-block">'
        '<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Halo<br><b>Sent:</b> Monday<br>'
        f"<b>Subject:</b> {SUBJECT}</div><div>{HTML_REQUEST}</div>"
    ),
    "gmail": (
        '<div dir="ltr">REJECT</div><br><div class="gmail_quote"><div dir="ltr" '
        'class="gmail_attr">On Mon, Mar 3, 2025 at 10:00 AM Halo &lt;halo@example.com&gt; '
        'wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">'
        f"{HTML_REQUEST}</blockquote></div>"
    ),
    "apple mail": (
        '<html><body dir="auto"><div>REJECT<br><br><div dir="ltr">Sent from my iPhone</div>'
        '<div dir="ltr"><br><blockquote type="cite">On 3 Mar 2025, at 10:00, Halo '
        f"&lt;halo@example.com&gt; wrote:<br><br></blockquote></div>"
        f'<blockquote type="cite"><div dir="ltr">{HTML_REQUEST}</div></blockquote></div>'
        "</body></html>"
    ),
    "thunderbird": (
        '<html><body><p>REJECT</p><div class="moz-cite-prefix">On 03/03/2025 10:00, Halo '
        f'wrote:<br></div><blockquote type="cite">{HTML_REQUEST}</blockquote></body></html>'
    ),
    "yahoo": (
        '<div class="ydp1"><div>REJECT</div></div><div id="yahoo_quoted_123" '
        'class="yahoo_quoted"><div>On Monday, March 3, 2025, 10:00 AM, Halo wrote:</div>'
        f"{HTML_REQUEST}</div>"
    ),
    "outlook mac": (
        '<html><body><div>REJECT</div><span id="OLK_SRC_BODY_SECTION"><div><b>From: </b>'
        f"Halo<br><b>Subject: </b>{SUBJECT}</div>{HTML_REQUEST}</span></body></html>"
    ),
}


@pytest.mark.parametrize("name", HTML_REPLIES)
def test_html_only_replies(name: str) -> None:
    reply = extract_reply(None, HTML_REPLIES[name])
    assert reply.text == "REJECT"
    assert "Please reply APPROVE or REJECT" in reply.original


def test_html_is_used_when_the_plain_part_is_blank() -> None:
    assert extract_reply("  \n", HTML_REPLIES["gmail"]).text == "REJECT"


def test_html_header_block_gives_the_original_subject() -> None:
    assert extract_reply(None, HTML_REPLIES["outlook desktop"]).original_subject == SUBJECT


def test_html_keeps_inner_paragraphs_and_tables() -> None:
    html = "<p>APPROVE</p><p>Budget line:</p><table><tr><td>A</td><td>10</td></tr></table>"
    text = extract_reply(None, html).text
    assert text.startswith("APPROVE\n")
    assert "A" in text and "10" in text


@pytest.mark.parametrize(
    "plain, html",
    [
        (quoted(), None),
        ("On Mon, Mar 3, 2025 at 10:00 AM Halo <halo@example.com> wrote:\n" + quoted(), None),
        (
            "\n\nFrom: Halo <halo@example.com>\nSent: Monday\nTo: Jane\nSubject: x\n\n" + REQUEST,
            None,
        ),
        ("Sent from my iPhone\n\nBegin forwarded message:\n\n" + quoted(), None),
        (None, f'<blockquote type="cite">{HTML_REQUEST}</blockquote>'),
        (None, f'<div class="gmail_quote">{HTML_REQUEST}</div>'),
        (None, None),
        ("", ""),
    ],
)
def test_nothing_written_gives_empty_text(plain: str | None, html: str | None) -> None:
    assert extract_reply(plain, html).text == ""


def test_text_above_the_first_quote_wins_over_text_between_quotes() -> None:
    body = "APPROVE\n\n" + quoted() + "\nREJECT\n"
    assert extract_reply(body, None).text == "APPROVE"


def test_inline_text_stops_at_an_unquoted_original() -> None:
    body = quoted("Earlier") + "\nAPPROVE\n\nFrom: Halo <h@example.com>\nSent: Mon\n\n" + REQUEST
    assert extract_reply(body, None).text == "APPROVE"


def test_long_quote_is_linear() -> None:
    body = "APPROVE\n\nOn Mon, 3 Mar 2025, Halo <h@example.com> wrote:\n" + quoted() * 20000
    html = "<div>APPROVE</div>" + '<blockquote type="cite">x</blockquote>' * 20000
    started = time.thread_time()  # CPU time: a busy machine slows the clock, not the work
    assert extract_reply(body, None).text == "APPROVE"
    assert extract_reply(None, html).text == "APPROVE"
    assert extract_reply("> " + "a" * 500_000 + "\n" + "On " * 100_000, None).text == ""
    assert time.thread_time() - started < 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_arbitrary_text_never_raises(text: str) -> None:
    reply = extract_reply(text, None)
    assert isinstance(reply, Reply)
    assert not reply.text.startswith(">")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<div>",
                "</div>",
                "<blockquote type=cite>",
                "</blockquote>",
                "<hr>",
                "<p>APPROVE</p>",
                "<?xml version='1.0' encoding='utf-8'?>",
                "&amp;",
                '<div class="gmail_quote">',
                "<br>",
                "\x00",
                "<table><tr><td>",
            ]
        ),
        max_size=30,
    ),
    st.text(max_size=200),
)
def test_arbitrary_html_never_raises(parts: list[str], text: str) -> None:
    extract_reply(None, "".join(parts) + text)
    extract_reply(None, text)
