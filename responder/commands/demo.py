"""``responder demo``: the whole pipeline with no outside services.

A stand-in Halo over real HTTP, a local SMTP sink (aiosmtpd) and a Maildir seeded with
a few realistic replies; one pass of the real orchestrator over them; a table of what
happened. Everything lives in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import email
import json
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from responder.commands.summary import once_summary
from responder.config import parse_settings
from responder.halo.standin import StandinHalo
from responder.mailboxes.maildir import deliver
from responder.service import responder

AUTHSERV = "mx.demo.example"
DEMO_TICKETS = [
    (1001, "New laptop for Dana (purchase)", "alice@example.com", "Alice Approver"),
    (1002, "Firewall change: open 443 to the vendor VPN", "bob@example.com", "Bob Boss"),
    (1003, "Software licence renewal", "carol@example.com", "Carol CFO"),
]


def _headers(sender: str, subject: str, msgid: str, extra: str = "") -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return (
        f"Authentication-Results: {AUTHSERV}; spf=pass smtp.mailfrom={domain};"
        f" dmarc=pass header.from={domain}\n"
        f"From: {sender}\nTo: approvals@demo.example\nSubject: {subject}\n"
        f"Date: Sat, 28 Nov 2026 09:0{len(msgid) % 10}:00 +0000\n"
        f"Message-ID: <{msgid}@demo.example>\nMIME-Version: 1.0\n{extra}"
    )


ORIGINAL = (
    "Ticket {id} needs your approval.\n\nPlease reply APPROVE or REJECT to this email.\n"
)

# (what it is, the outcome it must have, the message)
DEMO_MESSAGES: list[tuple[str, str, str]] = [
    ("Outlook reply: approve", "approved", _headers(
        "Alice Approver <alice@example.com>", "RE: Approval required [ID:1001]", "outlook-1",
        'Content-Type: text/plain; charset="us-ascii"\n',
    ) + "\nApproved, thanks.\n\nAlice\n\n________________________________\n"
        "From: Service Desk <approvals@demo.example>\nSent: Saturday, 28 November 2026 08:55\n"
        "To: Alice Approver <alice@example.com>\nSubject: Approval required [ID:1001]\n\n"
        + ORIGINAL.format(id=1001)),
    ("Gmail reply: reject with a note", "rejected", _headers(
        "Bob Boss <bob@example.com>", "Re: Approval required [ID:1002]", "gmail-1",
        'Content-Type: text/plain; charset="UTF-8"\n',
    ) + "\nREJECT - not approved this quarter, ask again in January.\n\n"
        "On Sat, 28 Nov 2026 at 08:55, Service Desk <approvals@demo.example> wrote:\n\n"
        + "".join(f"> {line}\n" for line in ORIGINAL.format(id=1002).splitlines())),
    ("iPhone forward: approve on top", "approved", _headers(
        "Carol CFO <carol@example.com>", "Fwd: licence renewal", "iphone-1",
        'Content-Type: text/plain; charset="utf-8"\n',
    ) + "\nApprove\n\nSent from my iPhone\n\nBegin forwarded message:\n\n"
        "From: Service Desk <approvals@demo.example>\nDate: 28 November 2026 at 08:55:00 GMT\n"
        "To: Carol CFO <carol@example.com>\nSubject: Approval required [ID:1003]\n\n"
        + ORIGINAL.format(id=1003)),
    ("Not an approver", "not-approver", _headers(
        "Dave Developer <dave@example.com>", "Re: Approval required [ID:1002]", "dave-1",
        'Content-Type: text/plain; charset="us-ascii"\n',
    ) + "\nApprove\n\nOn Sat, 28 Nov 2026, Service Desk wrote:\n> Please reply APPROVE\n"),
    ("Out-of-office auto-reply", "ignored", _headers(
        "Erin Away <erin@example.com>", "Automatic reply: Approval required [ID:1001]",
        "ooo-1", 'Auto-Submitted: auto-replied\nContent-Type: text/plain; charset="us-ascii"\n',
    ) + "\nI am out of the office until Monday. APPROVE requests will wait.\n"),
]


@dataclass
class Sink:
    """The demo's SMTP server: keeps what it receives."""

    received: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(bytes(envelope.original_content or envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_settings(folder: Path, halo: StandinHalo, smtp_port: int) -> dict[str, Any]:
    return {
        "halo": {"base_url": halo.base_url, "client_id": halo.client_id,
                 "client_secret": halo.client_secret},
        "maildir": {"path": str(folder / "Maildir")},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none",
                 "from": "approvals@demo.example"},
        "state": {"path": str(folder / "ledger.sqlite3")},
        "security": {"trusted_authserv_id": AUTHSERV},
    }


async def run_demo(as_json: bool = False) -> int:
    sink = Sink()
    port = _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory(prefix="responder-demo-") as tmp, StandinHalo() as halo:
            for ticket_id, summary, address, name in DEMO_TICKETS:
                halo.add_ticket(ticket_id, summary, [
                    {"emailaddress": address, "name": name, "seq": 1, "actionnumber": 7}])
            settings = parse_settings(demo_settings(Path(tmp), halo, port))
            labels, expected = {}, {}
            for label, outcome, text in DEMO_MESSAGES:
                assert settings.maildir is not None
                key = deliver(settings.maildir.path, text.encode())
                labels[key], expected[key] = label, outcome
            async with responder(settings) as worker:
                result = await worker.run_once()
            answers = {str(email.message_from_bytes(r)["To"]): r for r in sink.received}
            rows = [_row(r.as_json(), labels, answers, halo) for r in result.reports]
    finally:
        controller.stop()
    _print(rows, as_json, result.answers_sent)
    outcomes = {r.ref: r.outcome for r in result.reports}
    if outcomes != expected:
        print(f"unexpected outcomes: {outcomes} (expected {expected})", file=sys.stderr)
        return 1
    return 0


def _row(report: dict[str, Any], labels: dict[str, str], answers: dict[str, bytes],
         halo: StandinHalo) -> dict[str, Any]:
    ticket = report["ticket_id"]
    answer = answers.get(report["sender"] or "")
    halo_result = None
    if ticket is not None and report["outcome"] in ("approved", "rejected"):
        halo_result = halo.approver(ticket, 1).get("result")
    return {
        "message": labels.get(report["ref"], report["ref"]),
        "sender": report["sender"],
        "ticket_id": ticket,
        "decision": report["decision"],
        "note": report.get("note"),
        "outcome": report["outcome"],
        "halo_result": halo_result,
        "answer": str(email.message_from_bytes(answer)["Subject"]) if answer else None,
        "reason": report["reason"],
    }


def _print(rows: list[dict[str, Any]], as_json: bool, answers_sent: int) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    print("responder demo: stand-in Halo, local SMTP sink, a Maildir with "
          f"{len(rows)} replies\n")
    for row in rows:
        print(f"* {row['message']}")
        print(f"    from {row['sender']}, ticket {row['ticket_id']}, "
              f"decision {row['decision'] or '-'}"
              + (f", note \"{row['note']}\"" if row["note"] else ""))
        print(f"    -> {row['outcome']}: {row['reason']}")
        if row["halo_result"] is not None:
            print(f"    Halo now shows result={row['halo_result']} for the approver")
        print(f"    answer: {row['answer'] or 'none (never answer machines or forgeries)'}\n")
    print(once_summary(rows, answers_sent, 0, []))


if __name__ == "__main__":
    raise SystemExit(asyncio.run(run_demo()))
