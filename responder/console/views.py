"""What the console's pages show, read from each instance's ledger (blocking: run in a thread).

Pure reads: nothing here changes the ledger. Each instance keeps its own ledger, so the
message list merges them, newest first.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.parser import HeaderParser
from typing import Any

from responder.config import Settings
from responder.ledger import AdminAction, Ledger
from responder.metrics import Metrics

PAGE_SIZE = 50
CHART_DAYS = 30

# Outcomes grouped as the chart and the counts show them, in stacking order.
GROUPS: dict[str, tuple[str, ...]] = {
    "approved": ("approved",),
    "rejected": ("rejected",),
    "unmatched": ("not-approver", "already-decided", "ticket-not-found", "no-decision",
                  "too-old", "token-missing"),
    "quarantined": ("quarantined",),
    "failed": ("failed", "pending", "replay"),
    "ignored": ("ignored",),
}
GROUP_OF = {outcome: group for group, outcomes in GROUPS.items() for outcome in outcomes}
OUTCOMES = [outcome for outcomes in GROUPS.values() for outcome in outcomes]


@contextmanager
def opened(settings: Settings) -> Iterator[Ledger]:
    ledger = Ledger(settings.state.path)
    try:
        yield ledger
    finally:
        ledger.close()


# -- the overview -----------------------------------------------------------------


@dataclass
class InstanceStatus:
    name: str
    mailbox: str
    healthy: bool
    last_pass: str  # "12 s ago", or "none yet"
    outbox: int  # answers waiting (to be sent, or held for a digest)
    dropped: int  # answers given up on
    halo_used: int  # Halo requests in the budget's window
    halo_limit: int
    halo_window_minutes: float

    @property
    def halo_percent(self) -> int:
        return round(100 * self.halo_used / self.halo_limit) if self.halo_limit else 0


@dataclass
class Overview:
    instances: list[InstanceStatus]
    today: dict[str, int]  # outcome group -> messages recorded today (UTC)
    days: list[tuple[date, dict[str, int]]]  # the last CHART_DAYS days, oldest first
    recent_problems: list[dict[str, Any]] = field(default_factory=list)


def overview(instances: Mapping[str, Settings], metrics: Metrics | None,
             now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    first_day = (now - timedelta(days=CHART_DAYS - 1)).date()
    per_day: dict[date, Counter[str]] = {
        first_day + timedelta(days=i): Counter() for i in range(CHART_DAYS)
    }
    statuses, problems = [], []
    for name, settings in instances.items():
        with opened(settings) as ledger:
            for day, outcome, count in ledger.db.execute(
                "SELECT substr(created_at, 1, 10), outcome, COUNT(*) FROM messages "
                "WHERE created_at >= ? GROUP BY 1, 2",
                (first_day.isoformat(),),
            ):
                group = GROUP_OF.get(outcome or "")
                if group and date.fromisoformat(day) in per_day:
                    per_day[date.fromisoformat(day)][group] += count
            halo_used = _halo_requests(ledger, settings)
            outbox = dict(ledger.db.execute(
                "SELECT state, COUNT(*) FROM outbox WHERE state IN ('pending', 'sending', "
                "'held', 'dropped') GROUP BY state"
            ).fetchall())
            problems += [{"instance": name, **dict(r)} for r in ledger.db.execute(
                "SELECT key, sender, ticket_id, outcome, reason, created_at FROM messages "
                "WHERE outcome IN ('quarantined', 'failed', 'pending') "
                "ORDER BY created_at DESC LIMIT 5"
            )]
        statuses.append(_status(name, settings, metrics, outbox, halo_used))
    problems.sort(key=lambda r: r["created_at"], reverse=True)
    days = [(day, {g: counts[g] for g in GROUPS}) for day, counts in per_day.items()]
    return Overview(statuses, days[-1][1], days, problems[:5])


def _halo_requests(ledger: Ledger, settings: Settings) -> int:
    """Requests in the Halo budget's window now: the budget every process shares."""
    halo = settings.halo
    key = f"{halo.base_url.rstrip('/')}|{halo.tenant or ''}"  # as HaloClient keys it
    row = ledger.db.execute(
        "SELECT COUNT(*) FROM halo_budget WHERE tenant = ? AND at > ?",
        (key, time.time() - halo.window_seconds),
    ).fetchone()
    return int(row[0])


def _status(name: str, settings: Settings, metrics: Metrics | None,
            outbox: Mapping[str, int], halo_used: int) -> InstanceStatus:
    service, halo = settings.service, settings.halo
    last = metrics.instance_passes.get(name) if metrics else None
    age = (datetime.now(UTC).timestamp() - last) if last else None
    stale = 3 * max(service.retry_seconds, 60.0)
    mailbox = (f"IMAP {settings.imap.username} at {settings.imap.host}" if settings.imap
               else f"Graph {settings.graph.mailbox}" if settings.graph
               else f"Maildir {settings.maildir.path}" if settings.maildir else "?")
    return InstanceStatus(
        name=name,
        mailbox=mailbox,
        healthy=bool(age is not None and age <= stale and metrics and metrics.mailbox_ok),
        last_pass=f"{age:.0f} s ago" if age is not None else "none yet",
        outbox=sum(int(outbox.get(state, 0)) for state in ("pending", "sending", "held")),
        dropped=int(outbox.get("dropped", 0)),
        halo_used=halo_used,
        halo_limit=halo.requests_per_window,
        halo_window_minutes=halo.window_seconds / 60,
    )


# -- the message list -------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    outcome: str = ""
    instance: str = ""
    sender: str = ""
    ticket: int | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.outcome:
            clauses.append("outcome = ?")
            args.append(self.outcome)
        if self.sender:
            clauses.append("sender LIKE ? ESCAPE '\\'")
            args.append("%" + _like(self.sender.lower()) + "%")
        if self.ticket is not None:
            clauses.append("ticket_id = ?")
            args.append(self.ticket)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class MessagePage:
    rows: list[dict[str, Any]]
    page: int
    has_next: bool


def messages(instances: Mapping[str, Settings], filters: Filters, page: int) -> MessagePage:
    """One page of messages over every (or the chosen) instance's ledger, newest first."""
    wanted = page * PAGE_SIZE + PAGE_SIZE + 1
    where, args = filters.where()
    found: list[dict[str, Any]] = []
    for name, settings in instances.items():
        if filters.instance and name != filters.instance:
            continue
        with opened(settings) as ledger:
            found += [{"instance": name, **dict(r)} for r in ledger.db.execute(
                "SELECT key, sender, subject, ticket_id, decision, outcome, reason, state, "
                f"created_at FROM messages{where} ORDER BY created_at DESC LIMIT ?",
                (*args, wanted),
            )]
    found.sort(key=lambda r: r["created_at"], reverse=True)
    start = page * PAGE_SIZE
    return MessagePage(found[start:start + PAGE_SIZE], page, len(found) > start + PAGE_SIZE)


# -- one message ------------------------------------------------------------------


@dataclass
class Answer:
    id: int
    recipient: str
    state: str
    attempts: int
    last_error: str | None
    created_at: str
    sent_at: str | None
    subject: str
    text: str


@dataclass
class Detail:
    instance: str
    row: dict[str, Any]
    headers: list[tuple[str, str]]
    auth_headers: list[tuple[str, str]]
    history: list[dict[str, Any]]
    answers: list[Answer]
    actions: list[AdminAction]

    @property
    def can_release(self) -> bool:
        return bool(self.row["outcome"] == "quarantined" and self.row["state"] == "filed")

    @property
    def can_retry(self) -> bool:
        return self.row["outcome"] not in ("approved", "rejected", "ignored", "replay", None)

    @property
    def refreshing(self) -> bool:
        """Put back for the next pass: the page reloads itself until it is done."""
        return bool(self.row["outcome"] == "replay")


AUTH_HEADERS = ("authentication-results", "arc-authentication-results", "dkim-signature",
                "received-spf", "from", "sender", "return-path")


def find(instances: Mapping[str, Settings], key: str, instance: str = "") -> Detail | None:
    """A message's whole record, from the named instance or the first that has it."""
    for name, settings in instances.items():
        if instance and name != instance:
            continue
        with opened(settings) as ledger:
            row = ledger.db.execute("SELECT * FROM messages WHERE key = ?", (key,)).fetchone()
            if row is None:
                continue
            history = [dict(r) for r in ledger.db.execute(
                "SELECT at, state, outcome, reason, halo_status FROM history "
                "WHERE message_key = ? ORDER BY id", (key,))]
            answers = [_answer(r) for r in ledger.db.execute(
                "SELECT * FROM outbox WHERE message_key = ? ORDER BY id", (key,))]
            actions = ledger.actions(key)
        headers = _headers(row["headers"] or "")
        auth = [(k, v) for k, v in headers if k.lower() in AUTH_HEADERS]
        return Detail(name, dict(row), headers, auth, history, answers, actions)
    return None


def _headers(block: str) -> list[tuple[str, str]]:
    parsed = HeaderParser(policy=email.policy.compat32).parsestr(block + "\n\n",
                                                                  headersonly=True)
    return [(k, " ".join(str(v).split())) for k, v in parsed.items()]


def _answer(row: Any) -> Answer:
    """An answer we queued: its text part only (answers carry no attachments anyway).

    An answer over the hourly limit is held for a digest: its row holds the digest's
    entry (JSON), not an email, and the digest goes out as one email of its own.
    """
    if row["state"] in ("held", "digested"):
        entry = bytes(row["raw"]).decode("utf-8", "replace")
        subject = "(held for a digest)" if row["state"] == "held" else "(sent in a digest)"
        return Answer(row["id"], row["recipient"], row["state"], row["attempts"],
                      row["last_error"], row["created_at"], row["sent_at"], subject, entry)
    message = email.message_from_bytes(bytes(row["raw"]), policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    return Answer(row["id"], row["recipient"], row["state"], row["attempts"], row["last_error"],
                  row["created_at"], row["sent_at"], str(message.get("Subject", "")),
                  str(text))
