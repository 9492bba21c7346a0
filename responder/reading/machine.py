# ruff: noqa: RUF001 - the localized subjects are meant literally
"""Whether a machine wrote a message: such mail never decides and is never answered.

Auto-Submitted (RFC 3834) is not enough: Exchange sends out-of-office replies with only
"Automatic reply:" (in the mailbox's language) before the subject and
X-Auto-Response-Suppress; read receipts and delivery reports are multipart/report; list
copies carry List-Id or Precedence. Answering any of them risks a mail loop, and acting
on one would let a machine's words decide.
"""

from __future__ import annotations

import re
from email.message import Message

RESPONDER_HEADER = "X-Halo-Approval-Responder"  # marks our own answers, so we never answer them

_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_MACHINE_LOCALPARTS = {"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply"}
# Exchange writes its out-of-office subject in the mailbox's language and sends it with no
# Auto-Submitted header; these are the prefixes it (and other servers) put before the subject.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[ -]?reply|autoreply|"
    r"out of (?:the )?office(?: auto-?reply)?|automatiskt svar|"
    r"automatische antwort|abwesenheitsnotiz|r[ée]ponse automatique|absence du bureau|"
    r"respuesta autom[áa]tica|fuera de la oficina|risposta automatica|fuori sede|"
    r"automatisch antwoord|afwezigheidsbericht|resposta autom[áa]tica|automatisk svar|"
    r"autosvar|automaattinen vastaus|odpowied[źz] automatyczna|automatická odpověď|"
    r"automatikus válasz|otomatik yanıt|автоматический ответ|自动回复|自動応答|자동 회신)"
    r"\s*[:：]",
    re.IGNORECASE,
)
_RECEIPT_SUBJECT = re.compile(
    r"^\s*(?:read|not read|delivered|undeliverable|undelivered mail|delivery status notification|"
    r"gelesen|ungelesen|unzustellbar|lu|non lu|non remis|le[íi]do|no le[íi]do|"
    r"no se puede entregar|letto|non letto|gelezen|niet gelezen|onbestelbaar)\s*[:：]",
    re.IGNORECASE,
)


def machine_reason(msg: Message, sender: str | None, subject: str = "") -> str | None:
    """Why a machine wrote this message (auto-reply, bounce, list), or None for a person."""
    checks = (
        ("Auto-Submitted", lambda v: v.strip().lower().split(";")[0] != "no"),
        ("X-Autoreply", lambda v: True),
        ("X-Autorespond", lambda v: True),
        ("X-Auto-Reply", lambda v: True),
        ("Precedence", lambda v: v.strip().lower() in _BULK_PRECEDENCE),
        ("List-Id", lambda v: True),
        (RESPONDER_HEADER, lambda v: True),
    )
    for name, is_machine in checks:
        value = msg.get(name)
        if value is not None and is_machine(str(value)):
            return f"{name}: {' '.join(str(value).split())[:80]}"
    return _report_reason(msg) or _subject_reason(subject) or _sender_reason(msg, sender)


def _report_reason(msg: Message) -> str | None:
    """Read receipts and delivery reports (RFC 3798 / RFC 3464), however they are labelled."""
    content_type = msg.get_content_type()
    if content_type == "multipart/report":
        kind = str(msg.get_param("report-type", "", header="content-type") or "").lower()
        what = "read receipt" if kind == "disposition-notification" else "delivery report"
        return f"{what} ({content_type}; report-type={kind or '?'})"
    if content_type in ("message/delivery-status", "message/disposition-notification"):
        return f"delivery report ({content_type})"
    if msg.get("X-Auto-Response-Suppress") is not None:
        value = " ".join(str(msg.get("X-Auto-Response-Suppress")).split())[:80]
        return f"X-Auto-Response-Suppress: {value}"
    return None


def _subject_reason(subject: str) -> str | None:
    """An out-of-office or receipt subject: Exchange sends those without Auto-Submitted."""
    for pattern in (_AUTO_REPLY_SUBJECT, _RECEIPT_SUBJECT):
        found = pattern.match(subject)
        if found:
            return f"automatic reply subject ({found.group(0).strip()})"
    return None


def _sender_reason(msg: Message, sender: str | None) -> str | None:
    return_path = msg.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        return "null return path (a bounce)"
    if sender and sender.partition("@")[0] in _MACHINE_LOCALPARTS:
        return f"sent by {sender.partition('@')[0]}"
    return None
