"""End-to-end harness: a real Dovecot mailbox, a real SMTP server, the stand-in Halo.

``Harness`` is what the end-to-end tests (and the benchmark and chaos scripts) drive:
deliver a reply into the mailbox, run a pass of the real responder, then look at Halo,
the answers the SMTP server received, the folders and the ledger.
"""

from __future__ import annotations

import email
import itertools
import json
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from responder.config import Settings, parse_settings
from responder.halo.standin import StandinHalo
from responder.ledger import Ledger
from responder.service import responder
from responder.trust.authenticity import DkimResult, verify_dkim
from responder.worker import PassResult
from tests.servers import Dovecot, SmtpSink

AUTHSERV = "mx.test.example"
RESPONDER_ADDRESS = "approvals@service.example"
_users = itertools.count(1)


def reply(
    sender: str,
    subject: str,
    body: str,
    *,
    msgid: str | None = None,
    auth: str | None = "pass",
    extra_headers: str = "",
    content_type: str = 'text/plain; charset="utf-8"',
) -> bytes:
    """A reply as a mail server would store it, authenticated by our own MX by default."""
    domain = sender.rpartition("@")[2].rstrip(">")
    msgid = msgid or f"<{next(_users)}.{abs(hash(body)) % 10**8}@{domain}>"
    headers = []
    if auth is not None:
        headers.append(
            f"Authentication-Results: {AUTHSERV}; dkim={auth} header.d={domain};"
            f" dmarc={auth} header.from={domain}"
        )
    if auth == "pass":  # the signature those results are about (our server verified it)
        headers.append(signature_header(domain))
    headers += [
        f"From: {sender}",
        f"To: {RESPONDER_ADDRESS}",
        f"Subject: {subject}",
        "Date: Sat, 28 Nov 2026 09:00:00 +0000",
        f"Message-ID: {msgid}",
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
    ]
    text = "\r\n".join(headers) + "\r\n" + extra_headers.replace("\n", "\r\n")
    return (text + "\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode()


def signature_header(domain: str) -> str:
    """A DKIM-Signature as Gmail writes one; only its tags are read (h=, d=, b=)."""
    return (
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=20230601;\r\n"
        " h=to:subject:message-id:date:from:mime-version:from:to:cc:subject:date\r\n"
        "  :message-id:reply-to;\r\n"
        " bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
        " b=Tm90IGEgcmVhbCBzaWduYXR1cmU7IG91ciBzZXJ2ZXIgdmVyaWZpZWQgaXQ="
    )


def offline_dkim(raw: bytes) -> list[DkimResult]:
    """Our own DKIM check with no key published anywhere: tests never ask real DNS."""
    return verify_dkim(raw, dnsfunc=lambda name, timeout=5: None)


def outlook_reply(sender: str, ticket: int, first: str) -> bytes:
    body = (
        f"{first}\n\n"
        "________________________________\n"
        f"From: Service Desk <{RESPONDER_ADDRESS}>\n"
        "Sent: Saturday, November 28, 2026 8:55 AM\n"
        f"To: {sender}\n"
        f"Subject: Approval required [ID:{ticket}]\n\n"
        "Ticket needs your approval. Please reply APPROVE or REJECT.\n"
    )
    return reply(sender, f"RE: Approval required [ID:{ticket}]", body)


def gmail_reply(sender: str, ticket: int, first: str, **kwargs: Any) -> bytes:
    body = (
        f"{first}\n\n"
        f"On Sat, 28 Nov 2026 at 08:55, Service Desk <{RESPONDER_ADDRESS}> wrote:\n\n"
        "> Ticket needs your approval.\n> Please reply APPROVE or REJECT.\n"
    )
    return reply(sender, f"Re: Approval required [ID:{ticket}]", body, **kwargs)


@dataclass
class Harness:
    dovecot: Dovecot
    halo: StandinHalo
    sink: SmtpSink
    state_dir: Path
    user: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user = f"approvals{next(_users)}"
        self.dovecot.add_user(self.user, "imap-pass-" + self.user)

    @property
    def settings(self) -> Settings:
        return parse_settings(self.config())

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "halo": {"base_url": self.halo.base_url, "client_id": self.halo.client_id,
                     "client_secret": self.halo.client_secret},
            "imap": {"host": self.dovecot.host, "port": self.dovecot.port, "tls": "none",
                     "username": self.user, "password": self.dovecot.users[self.user],
                     "poll_seconds": 0.5},
            "smtp": {"host": self.sink.host, "port": self.sink.port, "tls": "none",
                     "from": RESPONDER_ADDRESS},
            "state": {"path": str(self.state_dir / f"{self.user}.sqlite3")},
            "security": {"trusted_authserv_id": AUTHSERV},
        }
        if self.halo.behaviour.tenant:  # a stand-in that enforces the tenant
            data["halo"]["tenant"] = self.halo.behaviour.tenant
        return with_overrides(data, self.overrides)

    def write_config(self, path: Path) -> Path:
        return write_toml(self.config(), path)

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        self.dovecot.append(self.user, folder, raw)

    async def once(self, **options: Any) -> PassResult:
        options.setdefault("dkim_verifier", offline_dkim)
        async with responder(self.settings, **options) as worker:
            return await worker.run_once()

    def folder(self, name: str) -> list[bytes]:
        return self.dovecot.folder_messages(self.user, name)

    def answers(self) -> list[Message]:
        return [email.message_from_bytes(m.content) for m in self.sink.received()]

    def ledger_rows(self) -> list[dict[str, Any]]:
        return ledger_rows(self.settings)

    def posts(self) -> list[Any]:
        return halo_posts(self.halo)


def with_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A test's overrides over the default config, key by key; None drops a section."""
    for section, values in overrides.items():
        if values is None:
            data.pop(section, None)
        else:
            data[section] = {**data.get(section, {}), **values}
    return data


def write_toml(config: dict[str, Any], path: Path) -> Path:
    """The config as a TOML file, the way a user writes it (mode 600)."""
    lines = []
    for section, values in config.items():
        lines += _toml_table(section, values)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def ledger_rows(settings: Settings) -> list[dict[str, Any]]:
    ledger = Ledger(settings.state.path)
    try:
        return list(ledger.rows())
    finally:
        ledger.close()


def halo_posts(halo: StandinHalo) -> list[Any]:
    """The bodies of the decision POSTs the stand-in Halo accepted."""
    return [r.body for r in halo.requests
            if r.matches("POST", "/api/ticketapproval") and r.status == 200]


def text_of(message: Message) -> str:
    """The plain-text part of an answer, whitespace-normalised."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return " ".join(payload.decode().split())
    raise AssertionError("no text part")


def _toml_table(name: str, values: dict[str, Any]) -> list[str]:
    """A TOML table (nested tables as [a.b]); enough for configs of strings and numbers."""
    lines = [f"[{name}]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for key, value in values.items():
        if isinstance(value, dict):
            lines += _toml_table(f"{name}.{key}", value)
    return lines
