
"""Family 3: machine mail that does not say Auto-Submitted never decides and is never answered.

Composed as Exchange Online writes out-of-office replies (no Auto-Submitted, the localized
"Automatic reply:" subject, X-Auto-Response-Suppress), as Outlook writes read receipts
(multipart/report; report-type=disposition-notification), as an MTA writes delivery
reports, and as a list server delivers a copy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from email.header import Header
from pathlib import Path

import pytest

from responder.reading.message import analyse
from tests.harness import AUTHSERV, RESPONDER_ADDRESS, Harness, gmail_reply, reply

REPO = Path(__file__).resolve().parent.parent
OOF_BODY = "Approve requests go to Bob Backup while I am away until Monday.\n"


def exchange_oof(subject_prefix: str = "Automatic reply: ", suppress: bool = True) -> bytes:
    """Exchange Online's out-of-office reply: no Auto-Submitted header at all."""
    boundary = "_000_AM0PR01MB7777OOFeurprd01prod_"
    head = (
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=example.com;"
        " dmarc=pass header.from=example.com\r\n"
        "From: Alice Approver <alice@example.com>\r\n"
        f"To: Service Desk <{RESPONDER_ADDRESS}>\r\n"
        f"Subject: {_encoded(subject_prefix + 'Approval required [ID:1234]')}\r\n"
        "Thread-Topic: Approval required [ID:1234]\r\n"
        "Thread-Index: AQHbQk1zYWxsIGFwcHJvdmFsAAAA\r\n"
        "Date: Sat, 28 Nov 2026 09:00:03 +0000\r\n"
        "Message-ID: <AM0PR01MB7777.oof@AM0PR01MB7777.eurprd01.prod.outlook.com>\r\n"
        "In-Reply-To: <approval-1234@service.example>\r\n"
        "References: <approval-1234@service.example>\r\n"
        "Content-Language: en-US\r\n"
        "X-MS-Has-Attach:\r\nX-MS-TNEF-Correlator:\r\n"
        + ("X-Auto-Response-Suppress: All\r\n" if suppress else "")
        + "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    )
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\r\n{OOF_BODY}\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=\"us-ascii\"\r\n\r\n"
        f"<html><body><p>{OOF_BODY}</p></body></html>\r\n--{boundary}--\r\n"
    )
    return (head + body).encode()


def _encoded(subject: str) -> str:
    """As Exchange writes a non-ASCII subject: RFC 2047 encoded-words."""
    return subject if subject.isascii() else Header(subject, "utf-8").encode()


def report(kind: str, subject: str, sender: str = "alice@example.com") -> bytes:
    """An Outlook read receipt or an MTA delivery report, whose text starts with 'Approve'."""
    boundary = "----=_Report_0042"
    second = (
        "Content-Type: message/disposition-notification\r\n\r\n"
        "Reporting-UA: AM0PR01MB7777.eurprd01.prod.outlook.com\r\n"
        "Final-Recipient: rfc822;alice@example.com\r\n"
        "Original-Message-ID: <approval-1234@service.example>\r\n"
        "Disposition: automatic-action/MDN-sent-automatically; displayed\r\n"
        if kind == "disposition-notification" else
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; approvals@service.example\r\nAction: delayed\r\n"
        "Status: 4.4.7\r\n"
    )
    return (
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=example.com;"
        " dmarc=pass header.from=example.com\r\n"
        f"From: {sender}\r\nTo: {RESPONDER_ADDRESS}\r\nSubject: {subject}\r\n"
        "Date: Sat, 28 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <report-{kind}@example.com>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={kind};\r\n\tboundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Approve\r\n\r\nYour message to alice@example.com was read on Saturday.\r\n"
        f"--{boundary}\r\n{second}\r\n--{boundary}--\r\n"
    ).encode()


def list_copy(header: str) -> bytes:
    return gmail_reply("alice@example.com", 1234, "Approve", extra_headers=header + "\n")


LOCALIZED_OOF = [
    "Automatic reply: ", "Automatische Antwort: ", "Réponse automatique\u00a0: ",
    "Respuesta automática: ", "Risposta automatica: ", "Automatisch antwoord: ",
    "Resposta automática: ", "Automatisk svar: ", "Autosvar: ", "Automaattinen vastaus: ",
    "Odpowiedź automatyczna: ", "Out of Office: ", "[EXTERNAL] Automatic reply: ",
    "Out of Office AutoReply: ", "Automatiskt svar: ",
]
MACHINES = {
    "oof-suppress-only": exchange_oof("", suppress=True),
    **{f"oof-{p.rstrip(': ')}": exchange_oof(p, suppress=False) for p in LOCALIZED_OOF},
    "read-receipt": report("disposition-notification", "Read: Approval required [ID:1234]"),
    "read-receipt-de": report("disposition-notification", "Gelesen: Approval required [ID:1234]"),
    "delivery-report": report("delivery-status", "Delayed: Approval required [ID:1234]"),
    "list-id": list_copy("List-Id: Approvers <approvers.lists.example.com>"),
    "precedence-list": list_copy("Precedence: list"),
    "precedence-bulk": list_copy("Precedence: bulk"),
}


@pytest.mark.parametrize("raw", MACHINES.values(), ids=MACHINES.keys())
def test_machine_mail_never_decides(raw: bytes) -> None:
    facts = analyse(raw)
    assert facts.auto_submitted and facts.machine_reason
    assert facts.decision is None and facts.note is None
    assert facts.ticket_id == 1234  # still read, for the ledger


@pytest.mark.parametrize(
    "subject",
    ["RE: Automatic reply: Approval required [ID:1234]", "Re: Approval required [ID:1234]",
     "Re: Read the attached first [ID:1234]", "AW: Out of office coverage [ID:1234]"],
)
def test_a_person_replying_is_not_a_machine(subject: str) -> None:
    facts = analyse(reply("alice@example.com", subject, "Approve\n"))
    assert not facts.auto_submitted and facts.decision == "approve"


@pytest.mark.parametrize("name", ["oof-Automatic reply", "oof-Réponse automatique\u00a0",
                                  "read-receipt", "list-id"])
def test_explain_json_reports_no_decision_for_machine_mail(name: str, tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(MACHINES[name])
    done = subprocess.run([sys.executable, "-m", "responder", "explain", str(path), "--json"],
                          cwd=REPO, capture_output=True, timeout=60, check=True)
    shown = json.loads(done.stdout)
    assert (shown["decision"], shown["auto_submitted"]) == (None, True)
    assert shown["machine_reason"]


async def test_machine_mail_is_filed_unanswered_and_decides_nothing(harness: Harness) -> None:
    names = ("oof-suppress-only", "oof-Automatische Antwort", "read-receipt", "precedence-bulk")
    for name in names:
        harness.deliver(MACHINES[name])

    result = await harness.once()

    assert {r.outcome for r in result.reports} == {"ignored"}
    assert harness.answers() == []
    assert harness.posts() == []
    assert harness.halo.approver(1234, 1)["result"] is None
    assert len(harness.folder("Approvals/Ignored")) == 4
