"""Digests: one email answering several of a person's replies at once.

Loop and storm protection caps the answers one address gets in an hour. An approver
whose sender is authenticated is never left without a confirmation: the answers over
the cap are held and sent together, one digest per person per pass and at most one per
``[security] digest_minutes``. Held answers are stored as entries (JSON), so a digest can
be composed in a later pass, after a restart, from the ledger alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import jinja2

from responder.answers.compose import localized, reply_subject
from responder.halo.tickets import Ticket
from responder.plan import Plan
from responder.reading.message import RESPONDER_HEADER, Facts

DIGEST = "digest"  # the template name, and the marker header's value


@dataclass(frozen=True)
class Entry:
    """What a digest says about one reply (and what it needs to thread under it)."""

    ticket_id: int | None
    summary: str
    outcome: str
    reason: str
    decision: str | None
    note: str | None
    subject: str
    message_id: str | None
    sent_at: str | None  # ISO time of the reply's Date:, to find the latest
    language: str | None = None  # the reply's language (Facts.language), for the templates

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Entry:
        data = json.loads(raw)
        return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})


def entry_for(facts: Facts, plan: Plan, ticket: Ticket | None) -> Entry:
    return Entry(
        ticket_id=facts.ticket_id,
        summary=ticket.summary if ticket else "",
        outcome=plan.outcome.value,
        reason=plan.reason,
        decision=facts.decision.value if facts.decision else None,
        note=facts.note,
        subject=facts.subject,
        message_id=facts.message_id,
        sent_at=facts.sent_at.isoformat() if facts.sent_at else None,
        language=facts.language,
    )


def compose_digest(
    env: jinja2.Environment,
    recipient: str,
    entries: list[Entry],
    *,
    sender: str,
    start_tag: str,
    end_tag: str,
) -> EmailMessage:
    """One reply to all of ``entries``: In-Reply-To the latest, References every one.

    It is written in the language of the latest reply (where templates exist for it).
    """
    threaded = [e for e in entries if e.message_id] or entries
    latest = max(enumerate(threaded), key=lambda pair: (_when(pair[1]), pair[0]))[1]
    context: dict[str, Any] = {
        "entries": [asdict(e) for e in entries],
        "count": len(entries),
        "sender": recipient,
        "ticket_id": None,
        "start_tag": start_tag,
        "end_tag": end_tag,
    }
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = reply_subject(latest.subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    ids = [e.message_id for e in entries if e.message_id]
    if latest.message_id:
        msg["In-Reply-To"] = latest.message_id
    if ids:
        msg["References"] = " ".join(dict.fromkeys(ids))
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[RESPONDER_HEADER] = DIGEST
    language = max(enumerate(entries), key=lambda pair: (_when(pair[1]), pair[0]))[1].language
    text = localized(env, f"{DIGEST}.txt", language)
    msg.set_content(text.render(context))
    msg.add_alternative(localized(env, f"{DIGEST}.html", language).render(context),
                        subtype="html")
    if language and (text.name or "").startswith(f"{language}/"):
        msg["Content-Language"] = language
    return msg


def _when(entry: Entry) -> float:
    """When the reply was written (its Date:), as a number; unknown sorts first."""
    try:
        when = datetime.fromisoformat(entry.sent_at or "")
    except ValueError:
        return float("-inf")
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
