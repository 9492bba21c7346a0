# ruff: noqa: RUF001 - the full-width colon of CJK subject prefixes is meant literally
"""Read one message the way a person would: bytes in, facts out, no I/O.

The facts are what ``responder explain`` prints and what the plan is made from: who
sent it (one bare address, or a reason to distrust it), which ticket it is about, the
new text the person wrote, the decision word in it, and whether a machine wrote it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

from responder.config import ParsingSettings
from responder.reading.addresses import (
    AddressSyntax,
    Mailbox,
    display_text,
    mailboxes,
    name_problem,
    normalise_address,
)
from responder.reading.banners import DEFAULT_BANNERS, Banners, banners_for, strip_banner_tags
from responder.reading.body import (
    HostileMessage,
    header_bytes,
    parse_message,
    read_bodies,
    text_only,
)
from responder.reading.decision import DEFAULT_GRAMMAR, Decision, Grammar, read_decision
from responder.reading.machine import RESPONDER_HEADER, machine_reason
from responder.reading.reply import extract_reply

__all__ = ["RESPONDER_HEADER", "Facts", "analyse", "machine_reason", "normalise_address"]


# Outlook's reply and forward prefixes in the languages it ships (and a few webmails'):
# Chinese 回复/答复/转发, Japanese 返信/転送, Korean 회신/전달, Russian Ответ/Пересл, Polish
# Odp/PD, Czech Odpověď, Turkish YNT/İLT, Greek ΑΠ/ΣΧΕΤ/ΠΡΘ, Hebrew השב/הועבר, Arabic
# رد/إعادة توجيه, Finnish VS/VL, Swedish VB, Icelandic FS, Hungarian VÁ/TOV, Dutch Doorst.
_LOCAL_REPLY = ("rif|res|odp|odpověď|ynt|cvp|vá|απ|σχετ|השב|תשובה|رد|回复|回覆|答复|答覆|返信|"
                "회신|답장|ответ|отв")
_LOCAL_FORWARD = ("vl|vb|fs|doorst|pd|tov|ilt|πρθ|הועבר|إعادة توجيه|توجيه|转发|轉寄|"
                  "轉發|転送|전달|пересл")
_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|ref|fw|fwd|wg|tr|rv|enc|i|r|" + _LOCAL_REPLY + "|"
    + _LOCAL_FORWARD + r")\s*(?:\[\d+\])?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"<[^<>\s]+>")  # one message id in References:
# Outlook's forwards look like its replies in the body; the subject tells them apart.
_FORWARD_PREFIX = re.compile(r"^\s*(?:fw|fwd|wg|tr|rv|enc|" + _LOCAL_FORWARD + r")\s*[:：]",
                             re.IGNORECASE)
@dataclass(frozen=True)
class Facts:
    """Everything the responder reads in one message (see ``responder explain``)."""

    message_id: str
    sender: str | None  # the bare lower-cased From: address; None when not exactly one
    subject: str
    ticket_id: int | None
    decision: Decision | None
    note: str | None
    reply_text: str
    forwarded: bool
    auto_submitted: bool  # written by a machine: never answered, never acted on
    machine_reason: str | None = None
    suspicious: tuple[str, ...] = ()  # reasons not to trust the sender header at all
    sent_at: datetime | None = None
    references: tuple[str, ...] = ()
    original: str = ""  # the quoted or forwarded original, for token binding
    content_hash: str = ""
    problems: tuple[str, ...] = ()
    unreadable: str | None = None  # why nothing could be read, when that is so
    language: str | None = None  # the approver's language, for the answer (None: unknown)
    headers: Message | None = field(default=None, repr=False, compare=False)

    @property
    def sender_domain(self) -> str | None:
        return self.sender.rpartition("@")[2] if self.sender else None

    @property
    def key(self) -> str:
        """The ledger key: the Message-ID, or the content hash where there is none."""
        return self.message_id or f"sha256:{self.content_hash}"

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id or None,
            "sender": self.sender,
            "subject": self.subject,
            "ticket_id": self.ticket_id,
            "decision": self.decision.value if self.decision else None,
            "note": self.note,
            "reply_text": self.reply_text,
            "forwarded": self.forwarded,
            "auto_submitted": self.auto_submitted,
            "machine_reason": self.machine_reason,
            "suspicious": list(self.suspicious),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "content_hash": self.content_hash,
            "problems": list(self.problems),
            "unreadable": self.unreadable,
            "language": self.language,
        }


# A longer header block is not read (real ones: a few KB to 60 KB); of a too-large message
# only the header is read, for the ledger.
MAX_HEADER_BYTES = 256 * 1024
MAX_HEADER_TEXT = 4_000  # characters of a header decoded for its text (the Subject)
FROM_HASHED = 4_000  # characters of an unreadable From: that tell its copies apart


def analyse(
    raw: bytes,
    parsing: ParsingSettings | None = None,
    grammar: Grammar = DEFAULT_GRAMMAR,
) -> Facts:
    """Read a message. Never raises: an unreadable message says why in ``unreadable``."""
    parsing = parsing or ParsingSettings()
    raw = text_only(raw)  # attachments are never read nor counted, whichever the mailbox
    if len(raw) > parsing.max_message_bytes:  # bounded time and memory: the header only
        end = raw.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES)
        head = raw[: end + 4 if end >= 0 else MAX_HEADER_BYTES][: parsing.max_message_bytes]
        facts = analyse(head, parsing, grammar)
        why = f"message too large: {len(raw)} bytes of text (limit {parsing.max_message_bytes})"
        return replace(facts, content_hash=hashlib.sha256(raw).hexdigest(), unreadable=why,
                       decision=None, note=None, reply_text="")
    header = header_bytes(raw)
    if header > MAX_HEADER_BYTES:  # no mail has one; each header would be looked through
        return nothing_read(raw, unreadable=f"message too complex to read: a header block of "
                                            f"{header} bytes (at most {MAX_HEADER_BYTES})")
    try:
        msg = parse_message(raw)
        return _read(msg, raw, parsing, grammar)
    except HostileMessage as exc:  # shaped to cost time: filed as failed, never answered
        return nothing_read(raw, unreadable=f"message too complex to read: {exc}"[:300])
    except Exception as exc:
        return nothing_read(
            raw, unreadable=f"cannot parse message: {type(exc).__name__}: {exc}"[:300])


def _read(msg: Message, raw: bytes, parsing: ParsingSettings, grammar: Grammar) -> Facts:
    repeated = repeated_headers(msg)
    if repeated:  # which one to read is the attacker's choice: read none
        return refused(raw, msg, f"more than one {', '.join(repeated)} header (RFC 5322 "
                       "allows one): a header may have been added above a signed one")
    sender, suspicious = read_sender(msg)
    subject = header_text(msg, "Subject")
    bodies = read_bodies(msg)
    banners = banners_for(parsing.banner_patterns, frozenset(grammar.words))
    reply = extract_reply(bodies.plain, bodies.html, banners)
    ticket_id = find_ticket_id(subject, parsing.start_tag, parsing.end_tag)
    if ticket_id is None and reply.original_subject:
        ticket_id = find_ticket_id(reply.original_subject, parsing.start_tag, parsing.end_tag)
    read = read_decision(reply.text, grammar)
    if read.decision is None and not reply.text.strip():
        read = read_decision(strip_subject_prefixes(subject, banners), grammar)  # mailto:
        read = replace(read, note=None)
    machine = machine_reason(msg, sender, strip_banner_tags(subject, banners))
    if machine is not None:  # a machine decides nothing: explain says what the service does
        read = replace(read, decision=None, note=None)
    unreadable = None
    if bodies.plain is None and bodies.html is None and bodies.problems:
        unreadable = "; ".join(bodies.problems)
    return Facts(
        message_id=message_id(msg),
        sender=sender,
        subject=subject,
        ticket_id=ticket_id,
        decision=read.decision,
        note=read.note,
        reply_text=reply.text,
        forwarded=reply.forwarded or bool(_FORWARD_PREFIX.match(strip_banner_tags(subject))),
        auto_submitted=machine is not None,
        machine_reason=machine,
        suspicious=suspicious,
        sent_at=sent_at(msg),
        references=references(msg),
        original=reply.original,
        # a From: that cannot be read still tells two senders' messages apart
        content_hash=content_hash(sender or str(msg.get("From") or "")[:FROM_HASHED],
                                  subject, bodies.plain, bodies.html, str(msg.get("Date") or "")),
        problems=bodies.problems,
        unreadable=unreadable,
        language=read.language or reply.language,
        headers=msg,
    )


# RFC 5322 3.6 allows at most one of each; DKIM verifies the lowest instance while a
# reader takes the topmost, so a second one above a signed message changes what it says.
SINGLE_HEADERS = ("From", "Sender", "Subject", "Date", "Message-ID", "In-Reply-To", "References")


def repeated_headers(msg: Message) -> tuple[str, ...]:
    """The headers that may appear once but appear more often."""
    return tuple(n for n in SINGLE_HEADERS if len(msg.get_all(n) or ()) > 1)


def nothing_read(raw: bytes, **why: Any) -> Facts:
    """Facts of a message nothing is read from: no sender, no ticket, no decision; the
    keywords say why (``unreadable``, or ``suspicious`` and the headers)."""
    return Facts(message_id="", sender=None, subject="", ticket_id=None, decision=None,
                 note=None, reply_text="", forwarded=False, auto_submitted=False,
                 content_hash=hashlib.sha256(raw).hexdigest(), **why)


def refused(raw: bytes, msg: Message, why: str) -> Facts:
    """A message read no further (so it is quarantined): no sender, and why."""
    return nothing_read(raw, suspicious=(why,), headers=msg)


def header_text(msg: Message, name: str) -> str:
    """A header decoded from RFC 2047 encoded-words, unfolded; '' when absent or broken."""
    value = msg.get(name)
    if value is None:
        return ""
    return display_text(str(value)[:MAX_HEADER_TEXT])  # not 100,000 encoded-words


def read_sender(msg: Message) -> tuple[str | None, tuple[str, ...]]:
    """The one From: address, and every reason to distrust the sender headers.

    The address comes from the header's structure before anything is decoded (see
    ``responder.reading.addresses``); only the display name and comments are decoded, and a
    message whose name or comment names another address is not trusted.
    """
    from_values = raw_values(msg, "From")
    try:
        boxes = mailboxes(from_values[0]) if len(from_values) == 1 else []
    except AddressSyntax as exc:
        return None, (f"the From: header cannot be read: {exc}",)
    if len(from_values) != 1 or len(boxes) != 1:
        return None, (f"expected exactly one From: address, found {len(boxes)}",)
    box = boxes[0]
    address = normalise_address(box.address)
    if not address:
        return None, ("the From: address is malformed",)
    suspicious = name_problems(box, address)
    sender_values = raw_values(msg, "Sender")
    if sender_values and sender_values[0].strip():
        try:
            same = [normalise_address(b.address) for b in mailboxes(sender_values[0])] == [address]
        except AddressSyntax:
            same = False
        if not same:
            suspicious.append("the Sender: header differs from From:")
    return address, tuple(suspicious)


def name_problems(box: Mailbox, address: str) -> list[str]:
    """What is wrong with the mailbox's decoded display name and comments, if anything."""
    found = [name_problem(display_text(box.phrase), address)] if box.phrase else []
    found += [name_problem(display_text(c), address, "comment") for c in box.comments]
    return [why for why in found if why]


def raw_values(msg: Message, name: str) -> list[str]:
    """Every ``name`` header's value as received: nothing decoded, unfolded, and any
    8-bit bytes (RFC 6532) read as UTF-8."""
    wanted = name.lower()
    return [_as_text(v) for k, v in msg.raw_items() if k.lower() == wanted]


def _as_text(value: Any) -> str:
    text = str(value)
    with contextlib.suppress(UnicodeError):  # compat32 keeps 8-bit bytes as surrogates
        text = text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


def message_id(msg: Message) -> str:
    value = str(msg.get("Message-ID") or "").strip()
    return " ".join(value.split())[:998]


def references(msg: Message) -> tuple[str, ...]:
    ids = _REFERENCE.findall(str(msg.get("References") or ""))
    return tuple(ids[-20:])


def sent_at(msg: Message) -> datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else None


@lru_cache(maxsize=32)
def _tag_pattern(start: str, end: str) -> re.Pattern[str]:
    """Halo's subject tag, tolerant of spaces inside: '[ID:1234]', '[ ID: 1234 ]'."""

    def loose(tag: str) -> str:
        return r"\s*".join(re.escape(ch) for ch in tag if not ch.isspace())

    return re.compile(loose(start) + r"\s*(\d{1,12})\s*" + loose(end), re.IGNORECASE)


def find_ticket_id(subject: str, start: str = "[ID:", end: str = "]") -> int | None:
    """The ticket id in the subject tag; None when absent or when two tags disagree."""
    ids = {int(m) for m in _tag_pattern(start, end).findall(subject)}
    return ids.pop() if len(ids) == 1 else None


def strip_subject_prefixes(subject: str, banners: Banners = DEFAULT_BANNERS) -> str:
    """The subject without reply/forward prefixes and gateway tags, in any order."""
    for _ in range(4):
        shorter = _SUBJECT_PREFIX.sub("", strip_banner_tags(subject, banners))
        if shorter == subject:
            break
        subject = shorter
    return subject


def content_hash(sender: str | None, subject: str, plain: str | None, html: str | None,
                 date: str = "") -> str:
    """Identifies a copy of one message whose Message-ID was changed or removed.

    The sender's ``Date`` is part of it: a copy the mail system makes keeps the
    original's, while a person who sends the same words again (a second "Approve" an
    hour later, from the phone) writes a new message with a date of its own, which is
    answered like any other late reply rather than filed as a copy.
    """
    digest = hashlib.sha256()
    for part in (sender or "", subject, plain or "", html or "", date[:200]):
        digest.update(" ".join(part.split()).encode("utf-8", "replace"))
        digest.update(b"\0")
    return digest.hexdigest()
