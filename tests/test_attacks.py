"""Attacks on the responder, end to end: each must leave Halo untouched and stay silent.

Every test delivers a hostile (or, at the end, a genuine) message into a real Dovecot
mailbox, runs one real pass against the stand-in Halo and a real SMTP server, and then
checks the two things an attacker wants: a decision in Halo (a POST to
/api/ticketapproval, an approver's result changed) and an answer (backscatter to a
forged address, a mail loop). Each test documents one attack and why it fails.

Our receiving server is ``mx.test.example`` (``[security] trusted_authserv_id``); the
approvers of ticket 1234 are alice@ and bob@example.com (see ``tests/conftest.py``).
"""

from __future__ import annotations

import email
from collections.abc import Callable, Sequence

import dkim
import pytest

from responder.authenticity import DkimResult, verify_dkim
from responder.worker import PassResult
from tests.dkim_keys import new_dkim_key
from tests.harness import AUTHSERV, RESPONDER_ADDRESS, Harness, gmail_reply, reply, text_of

RECEIVED = "from mail.example.com (mail.example.com [192.0.2.10]) by mx.test.example"
APPROVAL_EMAIL = (
    f"From: Service Desk <{RESPONDER_ADDRESS}>\n"
    "Date: Sat, 28 Nov 2026 08:55:00 +0000\n"
    "Subject: Approval required [ID:1234]\n"
    "To: alice@example.com\n\n"
    'Alice, ticket [ID:1234] "New laptop for Dana" needs your approval.\n'
    "Reply to this email with APPROVE or REJECT as the first word of your reply.\n"
)


def on_top(raw: bytes, *fields: str) -> bytes:
    """``raw`` with header fields prepended, the way later hops add theirs."""
    return b"".join(f"{f}\r\n".encode() for f in fields) + raw


def results(value: str) -> str:
    return f"Authentication-Results: {AUTHSERV}; {value}"


def assert_untouched(harness: Harness, result: PassResult, outcome: str) -> None:
    """No decision in Halo, nobody answered, the message filed with ``outcome``."""
    assert [r.outcome for r in result.reports] == [outcome], result.reports
    assert harness.posts() == []
    assert harness.halo.count("POST", "/api/ticketapproval") == 0
    assert harness.halo.approver(1234, 1)["result"] is None
    assert harness.halo.approver(1234, 2)["result"] is None
    assert harness.answers() == []


# -- forged senders ---------------------------------------------------------------------


async def test_a_forged_from_without_any_authentication_is_quarantined(harness: Harness) -> None:
    """Anyone can type From: alice@example.com; nothing vouches for it here."""
    harness.deliver(
        on_top(
            gmail_reply("alice@example.com", 1234, "Approve", auth=None), f"Received: {RECEIVED}"
        )
    )

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")
    assert "no Authentication-Results from a trusted server" in result.reports[0].reason
    assert len(harness.folder("Approvals/Quarantine")) == 1


async def test_a_forged_from_that_our_server_saw_fail_is_quarantined(harness: Harness) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve", auth="fail"))

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")
    assert "dmarc=fail example.com" in result.reports[0].reason


async def test_a_fake_pass_header_below_our_servers_fail_is_ignored(harness: Harness) -> None:
    """The forger writes our server's id with "pass"; our server's real "fail" sits above
    its Received: line, so the forgery is below our block and does not count."""
    forged = gmail_reply("alice@example.com", 1234, "Approve", auth="pass")
    raw = on_top(
        forged,
        results("dkim=fail header.d=example.com; dmarc=fail header.from=example.com"),
        f"Received: {RECEIVED}",
    )
    harness.deliver(raw)

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")


async def test_a_fake_pass_header_right_under_our_servers_fail_is_ignored(
    harness: Harness,
) -> None:
    """Without a Received: between them the two touch; the topmost report still decides."""
    forged = gmail_reply("alice@example.com", 1234, "Approve", auth="pass")
    harness.deliver(
        on_top(
            forged, results("dkim=fail header.d=example.com; dmarc=fail header.from=example.com")
        )
    )

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")


async def test_authentication_of_another_domain_does_not_vouch_for_the_from_domain(
    harness: Harness,
) -> None:
    """evil.example really signed this, and our server says so; but From: is example.com."""
    raw = gmail_reply("alice@example.com", 1234, "Approve", auth=None)
    harness.deliver(
        on_top(raw, results("dkim=pass header.d=evil.example; dmarc=pass header.from=evil.example"))
    )

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")
    assert "no DMARC or aligned DKIM pass for example.com" in result.reports[0].reason


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("From: Alice <alice@example.com>, mallory@evil.example", "exactly one From:"),
        ('From: "alice@example.com" <mallory@example.com>', "display name contains"),
        ("Sender: mallory@evil.example", "Sender: header differs"),
    ],
)
async def test_suspicious_sender_headers_are_quarantined(
    harness: Harness, header: str, why: str
) -> None:
    """Tricks that make a mail client show one person while another is the sender."""
    raw = gmail_reply("alice@example.com", 1234, "Approve")
    if header.startswith("From:"):
        raw = raw.replace(b"From: alice@example.com", header.encode())
    else:
        raw = raw.replace(
            b"From: alice@example.com", f"From: alice@example.com\r\n{header}".encode()
        )
    harness.deliver(raw)

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")
    assert why in result.reports[0].reason


# -- forwards -------------------------------------------------------------------------


def forward(sender: str, first: str, original_from: str, original: str) -> bytes:
    """A Gmail forward: the sender's own words, then the forwarded message."""
    body = (
        f"{first}\n\n"
        "---------- Forwarded message ---------\n"
        f"From: {original_from}\n"
        "Date: Sat, 28 Nov 2026 at 08:58\n"
        "Subject: Re: Approval required [ID:1234]\n"
        f"To: <{RESPONDER_ADDRESS}>\n\n"
        f"{original}\n"
    )
    return reply(sender, "Fwd: Re: Approval required [ID:1234]", body)


async def test_a_non_approver_forwarding_an_approvers_approval_is_not_an_approver(
    harness: Harness,
) -> None:
    """Dave (authenticated, not an approver) forwards Alice's "Approve" with his own on top.
    The sender is Dave, whatever the forwarded text says: he is told so, nothing is recorded."""
    harness.deliver(
        forward(
            "dave@example.com",
            "Approve",
            "Alice <alice@example.com>",
            "Approve\n\n> Ticket needs your approval.",
        )
    )

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["not-approver"]
    assert harness.posts() == []
    assert harness.halo.approver(1234, 1)["result"] is None
    [answer] = harness.answers()
    assert answer["To"] == "dave@example.com"
    assert "not an approver" in text_of(answer)
    [row] = harness.ledger_rows()
    assert (row["sender"], row["seq"], row["outcome"]) == ("dave@example.com", None, "not-approver")


async def test_a_non_approver_forwarding_without_a_word_of_his_own_decides_nothing(
    harness: Harness,
) -> None:
    """The decision word must be the forwarder's own; the forwarded "Approve" is not his."""
    harness.deliver(
        forward(
            "dave@example.com",
            "",
            "Alice <alice@example.com>",
            "Approve\n\n> Ticket needs your approval.",
        )
    )

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["no-decision"]
    assert harness.posts() == []
    assert [a["To"] for a in harness.answers()] == ["dave@example.com"]


async def test_an_approver_forwarding_the_approval_email_with_the_word_on_top_approves(
    harness: Harness,
) -> None:
    harness.deliver(
        forward(
            "alice@example.com", "APPROVE", f"Service Desk <{RESPONDER_ADDRESS}>", APPROVAL_EMAIL
        )
    )

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.halo.approver(1234, 1)["result"] == 1
    assert [a["To"] for a in harness.answers()] == ["alice@example.com"]


# -- replays --------------------------------------------------------------------------


async def replayed(harness: Harness, original: bytes, copy: bytes) -> PassResult:
    """Process ``original``, reset the approval in Halo, then deliver ``copy``."""
    harness.deliver(original)
    first = await harness.once()
    assert [r.outcome for r in first.reports] == ["approved"]
    harness.halo.add_ticket(
        1234,
        "New laptop for Dana",
        [  # a new round: pending again
            {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 3},
            {"emailaddress": "bob@example.com", "seq": 2, "actionnumber": 3},
        ],
    )
    harness.halo.requests.clear()
    harness.sink.messages.clear()
    harness.deliver(copy)
    return await harness.once()


async def test_a_replayed_message_with_the_same_message_id_is_not_acted_on(
    harness: Harness,
) -> None:
    raw = gmail_reply("alice@example.com", 1234, "Approve")

    result = await replayed(harness, raw, raw)

    assert_untouched(harness, result, "duplicate")


async def test_a_replayed_message_with_a_changed_message_id_is_not_acted_on(
    harness: Harness,
) -> None:
    """Same sender, subject and text under a new Message-ID: the content hash knows it."""
    raw = gmail_reply("alice@example.com", 1234, "Approve", msgid="<one@example.com>")
    copy = raw.replace(b"<one@example.com>", b"<two@example.com>")

    result = await replayed(harness, raw, copy)

    assert_untouched(harness, result, "duplicate")
    assert "same content as <one@example.com>" in result.reports[0].reason


# -- machines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "Precedence: auto_reply",
        "Precedence: bulk",
        "List-Id: <approvers.example.com>",
    ],
)
async def test_an_auto_reply_containing_approve_is_ignored(harness: Harness, header: str) -> None:
    """An out-of-office that starts with "Approve..." is a machine's, not a decision."""
    harness.deliver(
        reply(
            "alice@example.com",
            "Automatic reply: Approval required [ID:1234]",
            "Approve requests will be handled when I am back on Monday.",
            extra_headers=header + "\n",
        )
    )

    result = await harness.once()

    assert_untouched(harness, result, "ignored")
    assert len(harness.folder("Approvals/Ignored")) == 1


def bounce(*, sender: str, return_path: str | None, report: bool) -> bytes:
    """A delivery failure quoting the approval email (whose text says APPROVE)."""
    quoted = APPROVAL_EMAIL.replace("\n", "\r\n")
    text = "Approve\r\n\r\nDelivery to the following recipient failed: dana@example.com\r\n"
    if report:
        body = (
            "--B\r\nContent-Type: text/plain\r\n\r\n"
            + text
            + "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mail.example.com\r\n\r\n"
            "Final-Recipient: rfc822; dana@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            "\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n" + quoted + "\r\n--B--\r\n"
        )
        content_type = 'multipart/report; report-type=delivery-status; boundary="B"'
    else:
        body = text + "\r\n> " + quoted.replace("\r\n", "\r\n> ")
        content_type = "text/plain"
    raw = reply(
        sender, "Undeliverable: Approval required [ID:1234]", body, content_type=content_type
    )
    return on_top(raw, f"Return-Path: {return_path}") if return_path is not None else raw


@pytest.mark.parametrize(
    ("sender", "return_path", "report"),
    [
        ("Mail Delivery System <MAILER-DAEMON@example.com>", "<>", True),  # all three
        ("postmaster@example.com", None, True),  # multipart/report alone
        ("alice@example.com", "<>", False),  # null return path alone
        ("MAILER-DAEMON@example.com", None, False),  # MAILER-DAEMON alone
    ],
    ids=["dsn", "multipart-report", "null-return-path", "mailer-daemon"],
)
async def test_a_bounce_quoting_the_approval_email_is_ignored(
    harness: Harness, sender: str, return_path: str | None, report: bool
) -> None:
    harness.deliver(bounce(sender=sender, return_path=return_path, report=report))

    result = await harness.once()

    assert_untouched(harness, result, "ignored")


# -- loops ----------------------------------------------------------------------------


async def test_a_message_from_the_responders_own_address_is_ignored(harness: Harness) -> None:
    """Even where that address is (wrongly) an approver, and authenticated."""
    harness.halo.add_ticket(
        1400,
        "Loop bait",
        [
            {"emailaddress": RESPONDER_ADDRESS, "seq": 1, "actionnumber": 1},
        ],
    )
    harness.deliver(reply(RESPONDER_ADDRESS, "Re: Approval required [ID:1400]", "Approve"))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["ignored"]
    assert "responder's own address" in result.reports[0].reason
    assert harness.halo.approver(1400, 1)["result"] is None
    assert harness.posts() == [] and harness.answers() == []


@pytest.mark.parametrize("stripped", [(), ("X-Halo-Approval-Responder", "Auto-Submitted")])
async def test_our_own_confirmation_sent_back_is_ignored(
    harness: Harness, stripped: Sequence[str]
) -> None:
    """A mail loop returns our answer (perhaps with our marker headers dropped on the way)."""
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    await harness.once()
    [sent] = harness.sink.received()
    answer = email.message_from_bytes(sent.content)
    for name in stripped:
        del answer[name]
    harness.sink.messages.clear()
    harness.halo.requests.clear()
    harness.deliver(
        on_top(
            answer.as_bytes(),
            results("dkim=pass header.d=service.example; dmarc=pass header.from=service.example"),
        )
    )

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["ignored"]
    assert harness.posts() == [] and harness.answers() == []


async def test_a_storm_from_one_sender_stops_being_answered(harness: Harness) -> None:
    """A loop with a machine we cannot recognise: answers stop at the hourly limit."""
    harness.overrides = {"security": {"answers_per_sender_per_hour": 3}}
    for n in range(5):
        harness.deliver(gmail_reply("dave@example.com", 1234, f"Approve {n}"))
    first = await harness.once()
    for n in range(5, 8):
        harness.deliver(gmail_reply("dave@example.com", 1234, f"Approve {n}"))
    second = await harness.once()

    outcomes = [r.outcome for r in first.reports + second.reports]
    assert outcomes == ["not-approver"] * 8
    assert len(harness.answers()) == 3
    assert harness.posts() == []
    assert harness.folder("INBOX") == []  # all filed, none left to retry


async def test_the_limit_is_per_sender(harness: Harness) -> None:
    harness.overrides = {"security": {"answers_per_sender_per_hour": 1}}
    for sender in ("dave@example.com", "dave@example.com", "erin@example.com"):
        harness.deliver(gmail_reply(sender, 1234, "Approve"))

    await harness.once()

    assert sorted(a["To"] for a in harness.answers()) == ["dave@example.com", "erin@example.com"]


# -- our own DKIM check, where the server adds no Authentication-Results -------------------


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    """A private key (PEM) and its DNS TXT record."""
    return new_dkim_key()


def signed(raw: bytes, domain: str, private: bytes) -> bytes:
    return bytes(dkim.sign(raw, b"sel", domain.encode(), private)) + raw


def verifier(records: dict[str, bytes]) -> Callable[[bytes], list[DkimResult]]:
    """Our own DKIM check, with DNS answered from ``records``."""

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return records.get(name.decode())

    return lambda raw: verify_dkim(raw, dnsfunc=lookup)


async def test_a_dkim_signed_reply_without_authentication_results_is_approved(
    harness: Harness, keys: tuple[bytes, bytes]
) -> None:
    private, record = keys
    unsigned = gmail_reply("alice@example.com", 1234, "Approve", auth=None)
    harness.deliver(signed(unsigned, "example.com", private))

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.example.com.": record}))

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.halo.approver(1234, 1)["result"] == 1
    [row] = harness.ledger_rows()
    assert row["auth_verdict"] == "own DKIM check passed for example.com, aligned with example.com"


async def test_a_tampered_signed_reply_is_quarantined(
    harness: Harness, keys: tuple[bytes, bytes]
) -> None:
    """Alice signed "Reject"; someone on the way turned it into "Approve"."""
    private, record = keys
    genuine = signed(
        gmail_reply("alice@example.com", 1234, "Reject", auth=None), "example.com", private
    )
    harness.deliver(genuine.replace(b"\r\nReject\r\n", b"\r\nApprove\r\n"))

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.example.com.": record}))

    assert_untouched(harness, result, "quarantined")
    assert "own DKIM check found no aligned valid signature" in result.reports[0].reason


async def test_a_valid_signature_of_another_domain_is_quarantined(
    harness: Harness, keys: tuple[bytes, bytes]
) -> None:
    private, record = keys
    raw = signed(
        gmail_reply("alice@example.com", 1234, "Approve", auth=None), "evil.example", private
    )
    harness.deliver(raw)

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.evil.example.": record}))

    assert_untouched(harness, result, "quarantined")


# -- Microsoft 365: results without an authserv-id -----------------------------------------

M365_PASS = (
    "Authentication-Results: spf=pass (sender IP is 203.0.113.7)"
    " smtp.mailfrom=example.com; dkim=pass (signature was verified)"
    " header.d=example.com;dmarc=pass action=none header.from=example.com;"
    "compauth=pass reason=100"
)
M365_FAIL = (
    "Authentication-Results: spf=fail (sender IP is 198.51.100.9)"
    " smtp.mailfrom=example.com; dkim=none (message not signed)"
    " header.d=none;dmarc=fail action=oreject header.from=example.com;"
    "compauth=fail reason=000"
)
EOP_RECEIVED = (
    "Received: from mail.example.com (203.0.113.7) by"
    " AM4PEPF00027A6C.mail.protection.outlook.com (10.167.16.90) with Microsoft SMTP Server"
)


async def test_microsoft_365_results_count_where_exchange_online_is_trusted(
    harness: Harness,
) -> None:
    harness.overrides = {"security": {"trusted_authserv_id": "exchange-online"}}
    raw = gmail_reply("alice@example.com", 1234, "Approve", auth=None)
    harness.deliver(on_top(raw, M365_PASS, EOP_RECEIVED))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    [row] = harness.ledger_rows()
    assert row["auth_verdict"] == "dmarc=pass for example.com (exchange-online)"


async def test_microsoft_365_style_results_do_not_count_for_another_server(
    harness: Harness,
) -> None:
    """Trusting mx.test.example says nothing about a header that names no server."""
    raw = gmail_reply("alice@example.com", 1234, "Approve", auth=None)
    harness.deliver(on_top(raw, M365_PASS, f"Received: {RECEIVED}"))

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")


async def test_a_forged_microsoft_365_pass_below_exchange_onlines_fail_is_ignored(
    harness: Harness,
) -> None:
    """The forger wrote M365's header form; Exchange Online's own result sits on top."""
    harness.overrides = {"security": {"trusted_authserv_id": "exchange-online"}}
    forged = on_top(gmail_reply("alice@example.com", 1234, "Approve", auth=None), M365_PASS)
    harness.deliver(on_top(forged, M365_FAIL, EOP_RECEIVED))

    result = await harness.once()

    assert_untouched(harness, result, "quarantined")
    assert "dmarc=fail example.com" in result.reports[0].reason


# -- reply-token binding ([security] require_token) ----------------------------------------


@pytest.fixture
def bound(harness: Harness) -> Harness:
    """Ticket 1500 whose approver entry carries Halo's token, and require_token on."""
    harness.halo.add_ticket(
        1500,
        "Server room access",
        [
            {
                "emailaddress": "alice@example.com",
                "seq": 1,
                "actionnumber": 2,
                "token": "7f3c2a9e-51d4-4b8e-9a0c-2d6e8f1b3c57",
            },
        ],
    )
    harness.overrides = {"security": {"require_token": True}}
    return harness


def token_reply(quoted: str) -> bytes:
    body = (
        "Approve\n\n"
        f"On Sat, 28 Nov 2026 at 08:55, Service Desk <{RESPONDER_ADDRESS}> wrote:\n\n"
        f"> Ticket [ID:1500] needs your approval.\n> {quoted}\n"
    )
    return reply("alice@example.com", "Re: Approval required [ID:1500]", body)


async def test_with_require_token_a_reply_quoting_the_approval_email_is_acted_on(
    bound: Harness,
) -> None:
    bound.deliver(token_reply("Reference: 7f3c2a9e-51d4-4b8e-\n> 9a0c-2d6e8f1b3c57"))  # wrapped

    result = await bound.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert bound.halo.approver(1500, 1)["result"] == 1


async def test_with_require_token_a_fresh_message_without_the_token_decides_nothing(
    bound: Harness,
) -> None:
    """An authenticated approver, but not answering the approval email: nothing recorded,
    and she is told to reply to the email she received."""
    bound.deliver(token_reply("Reference: (none quoted)"))

    result = await bound.once()

    assert [r.outcome for r in result.reports] == ["token-missing"]
    assert bound.posts() == []
    assert bound.halo.approver(1500, 1)["result"] is None
    [answer] = bound.answers()
    assert answer["To"] == "alice@example.com"
    assert "reply to the approval email you received" in text_of(answer)
    assert len(bound.folder("Approvals/Unmatched")) == 1
