"""Reading one message: sender, ticket tag, decision, machine or person."""

from __future__ import annotations

import pytest

from responder.reading.message import analyse, find_ticket_id, normalise_address
from tests.harness import gmail_reply, outlook_reply, reply


@pytest.mark.parametrize(
    ("subject", "ticket"),
    [
        ("RE: Approval required [ID:1234]", 1234),
        ("AW: Fwd: Approval required [ID: 1234 ]", 1234),
        ("Re: [ ID:77] and more", 77),
        ("re: [id:5]", 5),
        ("no tag here", None),
        ("[ID:12] and [ID:13]", None),  # two different tickets: ambiguous
        ("[ID:12] again [ID:12]", 12),
        ("[ID:] empty", None),
    ],
)
def test_the_ticket_id_comes_from_the_subject_tag(subject: str, ticket: int | None) -> None:
    assert find_ticket_id(subject) == ticket


def test_custom_tags() -> None:
    assert find_ticket_id("Re: Change #REF-88# approval", "#REF-", "#") == 88


def test_an_encoded_word_subject_is_decoded() -> None:
    raw = reply("alice@example.com", "=?utf-8?q?AW=3A_Genehmigung_erforderlich_=5BID=3A4321=5D?=",
                "Approve")
    facts = analyse(raw)
    assert facts.subject == "AW: Genehmigung erforderlich [ID:4321]"
    assert facts.ticket_id == 4321


def test_explain_fields_for_an_outlook_reply() -> None:
    facts = analyse(outlook_reply("Alice <ALICE@Example.COM>", 1234, "APPROVE - go ahead"))
    data = facts.as_json()
    assert data["sender"] == "alice@example.com"
    assert data["ticket_id"] == 1234
    assert data["decision"] == "approve"
    assert data["note"] == "go ahead"
    assert data["reply_text"] == "APPROVE - go ahead"
    assert data["forwarded"] is False
    assert data["auto_submitted"] is False
    assert data["message_id"].startswith("<")


def test_the_quoted_approval_email_never_decides() -> None:
    facts = analyse(gmail_reply("alice@example.com", 1234, "Thanks, will look tomorrow"))
    assert facts.decision is None


def test_a_mailto_button_decides_from_the_subject_when_the_body_is_empty() -> None:
    facts = analyse(reply("alice@example.com", "APPROVE [ID:1234]", ""))
    assert (facts.decision, facts.ticket_id, facts.note) == ("approve", 1234, None)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted"),
        ("X-Autoreply: yes", "X-Autoreply"),
        ("Precedence: bulk", "Precedence"),
        ("List-Id: <approvers.lists.example.com>", "List-Id"),
        ("Return-Path: <>", "null return path"),
    ],
)
def test_machines_are_recognised(header: str, reason: str) -> None:
    raw = reply("alice@example.com", "Re: [ID:1]", "Approve", extra_headers=header + "\n")
    facts = analyse(raw)
    assert facts.auto_submitted and reason in (facts.machine_reason or "")


def test_auto_submitted_no_is_a_person() -> None:
    facts = analyse(reply("alice@example.com", "Re: [ID:1]", "Approve",
                          extra_headers="Auto-Submitted: no\n"))
    assert not facts.auto_submitted


def test_a_bounce_is_a_machine() -> None:
    raw = reply("MAILER-DAEMON@mx.example.com", "Undelivered Mail [ID:1234]", "Approve")
    assert analyse(raw).auto_submitted


@pytest.mark.parametrize(
    ("from_header", "why"),
    [
        ("alice@example.com, mallory@evil.example", "exactly one From"),
        ('"alice@example.com" <mallory@evil.example>', "display name contains another address"),
    ],
)
def test_suspicious_sender_headers(from_header: str, why: str) -> None:
    facts = analyse(reply(from_header, "Re: [ID:1]", "Approve"))
    assert any(why in s for s in facts.suspicious)


@pytest.mark.parametrize(
    ("from_header", "sender"),
    [
        ("=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <JM@x.de>", "jm@x.de"),
        ('"M\u00fcller, J\u00fcrgen (IT)" <jm@x.de>', "jm@x.de"),  # RFC 6532 8-bit
        ('"jm@x.de" <jm@x.de>', "jm@x.de"),
        ("jm@x.de (=?utf-8?b?SsO8cmdlbg==?=)", "jm@x.de"),
    ],
)
def test_genuine_display_names_leave_the_sender_trusted(from_header: str, sender: str) -> None:
    facts = analyse(reply(from_header, "Re: [ID:1]", "Approve"))
    assert (facts.sender, facts.suspicious) == (sender, ())


def test_the_sender_is_read_before_the_display_name_is_decoded() -> None:
    """The issue's attack: a name decoding to "<boss@contoso.com> (" names no sender."""
    facts = analyse(reply("=?utf-8?q?=3Cboss=40contoso=2Ecom=3E_=28?= <attacker@contoso.com>",
                          "Re: [ID:1]", "Approve"))
    assert facts.sender == "attacker@contoso.com"
    assert facts.suspicious == ("the display name contains another address (boss@contoso.com)",)


def test_a_sender_header_naming_the_same_address_in_another_form_is_no_problem() -> None:
    facts = analyse(reply("Alice <alice@example.com>", "Re: [ID:1]", "Approve",
                          extra_headers="Sender: =?utf-8?q?Alice?= <ALICE@Example.com>\n"))
    assert (facts.sender, facts.suspicious) == ("alice@example.com", ())


def test_a_sender_header_that_differs_is_suspicious() -> None:
    facts = analyse(reply("alice@example.com", "Re: [ID:1]", "Approve",
                          extra_headers="Sender: mallory@evil.example\n"))
    assert facts.suspicious == ("the Sender: header differs from From:",)


def test_addresses_compare_after_normalisation() -> None:
    assert normalise_address("Alice@BÜCHER.example") == "alice@xn--bcher-kva.example"
    assert normalise_address("<Bob@Example.COM.>") == "bob@example.com"


def test_garbage_never_raises() -> None:
    garbage = (b"", b"\x00\xff" * 100, b"From: \r\n\r\n",
               b"Content-Type: multipart/mixed\r\n\r\n--")
    for raw in garbage:
        facts = analyse(raw)
        assert facts.decision is None


def test_a_replay_with_a_changed_message_id_has_the_same_content_hash() -> None:
    first = analyse(gmail_reply("alice@example.com", 1234, "Approve", msgid="<a@x>"))
    replay = analyse(gmail_reply("alice@example.com", 1234, "Approve", msgid="<b@x>"))
    other_ticket = analyse(gmail_reply("alice@example.com", 1300, "Approve", msgid="<c@x>"))
    assert first.content_hash == replay.content_hash != other_ticket.content_hash


def test_messages_whose_from_cannot_be_read_are_not_copies_of_each_other() -> None:
    """Two hostile messages with unreadable From: headers but the same words and Date are
    two messages: the second is read (and refused) on its own, not filed as a copy."""
    one = analyse(reply('"' + "a" * 3000 + '" <dave@example.com>', "Re: [ID:1]", "Approve"))
    two = analyse(reply('"' + "b" * 3000 + '" <erin@example.com>', "Re: [ID:1]", "Approve"))
    assert one.sender is None and two.sender is None
    assert one.content_hash != two.content_hash


def test_an_outlook_forward_is_a_forward() -> None:
    body = ("Approve\n\n________________________________\nFrom: Service Desk <sd@example.com>\n"
            "Sent: Saturday, November 28, 2026 8:55 AM\nTo: Alice\n"
            "Subject: Approval required [ID:1234]\n\nPlease reply APPROVE or REJECT.\n")
    facts = analyse(reply("alice@example.com", "FW: Approval required", body))
    assert (facts.forwarded, facts.decision, facts.ticket_id) == (True, "approve", 1234)
