"""What to do with one message: facts (and the ticket) in, a plan out, no I/O.

Expected outcomes ("not an approver", "no decision word") are values here, not
exceptions. The orchestrator carries a plan out; these functions only decide.

    triage(facts, verdict, ...)  -> Plan, or None when the ticket must be looked up
    match(facts, ticket, ...)    -> Plan (a submission, or why there is none)
    confirm(plan, approver)      -> Plan (approved/rejected once Halo shows our result)

``Rules.from_settings`` reads what the settings say about these once, for the worker and
for ``responder explain`` alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from responder.authenticity import Verdict
from responder.config import FolderSettings, Settings
from responder.decision import Decision, Grammar
from responder.message import Facts, normalise_address
from responder.tickets import Approver, Result, Submission, Ticket


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    NOT_APPROVER = "not-approver"
    ALREADY_DECIDED = "already-decided"
    TICKET_NOT_FOUND = "ticket-not-found"
    NO_DECISION = "no-decision"
    TOO_OLD = "too-old"
    TOKEN_MISSING = "token-missing"  # [security] require_token: not a reply to our email
    FAILED = "failed"  # could not be processed: needs an admin
    PENDING = "pending"  # Halo unreachable for now: stays in the inbox, tried again
    SUBMIT = "submit"  # planned, not yet carried out
    IGNORED = "ignored"  # written by a machine: filed, never answered
    QUARANTINED = "quarantined"  # not provably from the sender: filed, never answered
    DUPLICATE = "duplicate"  # a copy of a message already handled


# Outcomes that tell the person something; the template is named after the outcome.
ANSWERED = frozenset(
    {
        Outcome.APPROVED,
        Outcome.REJECTED,
        Outcome.NOT_APPROVER,
        Outcome.ALREADY_DECIDED,
        Outcome.TICKET_NOT_FOUND,
        Outcome.NO_DECISION,
        Outcome.TOO_OLD,
        Outcome.TOKEN_MISSING,
        Outcome.FAILED,
    }
)


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    reason: str  # one human line, for logs, the ledger and the answer
    submission: Submission | None = None

    @property
    def answered(self) -> bool:
        return self.outcome in ANSWERED


def folder_for(outcome: Outcome, folders: FolderSettings) -> str | None:
    """The folder an outcome is filed in; None means: leave it in the inbox for now."""
    return {
        Outcome.APPROVED: folders.done,
        Outcome.REJECTED: folders.done,
        Outcome.FAILED: folders.failed,
        Outcome.IGNORED: folders.ignored,
        Outcome.DUPLICATE: folders.ignored,
        Outcome.QUARANTINED: folders.quarantine,
        Outcome.PENDING: None,
        Outcome.SUBMIT: None,
    }.get(outcome, folders.unmatched)


def triage(
    facts: Facts,
    verdict: Verdict,
    *,
    own_addresses: frozenset[str],
    now: datetime,
    max_age: timedelta,
) -> Plan | None:
    """Settle every message that needs no look-up in Halo; None means: look it up."""
    if facts.auto_submitted:
        return Plan(Outcome.IGNORED, f"written by a machine ({facts.machine_reason})")
    if facts.sender in own_addresses:
        return Plan(Outcome.IGNORED, "sent from the responder's own address")
    if facts.unreadable and facts.sender is None:
        return Plan(Outcome.FAILED, facts.unreadable)
    if facts.sender is None or facts.suspicious:
        reasons = "; ".join(facts.suspicious) or "no single sender address"
        return Plan(Outcome.QUARANTINED, f"suspicious headers: {reasons}")
    if not verdict.trusted:
        return Plan(Outcome.QUARANTINED, f"sender not authenticated: {verdict.reason}")
    if facts.unreadable:
        return Plan(Outcome.FAILED, facts.unreadable)
    if facts.ticket_id is None:
        return Plan(Outcome.NO_DECISION, "no ticket reference in the subject")
    if facts.decision is None:
        return Plan(Outcome.NO_DECISION, "no APPROVE or REJECT as the first word")
    if facts.sent_at and now - facts.sent_at > max_age:
        return Plan(Outcome.TOO_OLD, f"sent {facts.sent_at:%Y-%m-%d}, older than the limit")
    return None


def match(
    facts: Facts,
    ticket: Ticket | None,
    aliases: Mapping[str, str],
    *,
    require_token: bool = False,
) -> Plan:
    """Find the sender among the ticket's approvers and plan the submission.

    With ``require_token``, an approver entry that has a ``token`` counts only when the
    token appears in the message (the quoted or forwarded approval email, or the reply).
    """
    if ticket is None:
        return Plan(Outcome.TICKET_NOT_FOUND, f"ticket {facts.ticket_id} was not found in Halo")
    assert facts.sender is not None and facts.decision is not None  # triage saw to it
    sender = normalise_address(aliases.get(facts.sender, facts.sender))
    mine = [a for a in ticket.approvers if normalise_address(a.emailaddress) == sender]
    if not mine:
        return Plan(Outcome.NOT_APPROVER, f"{facts.sender} is not an approver of {ticket.id}")
    pending = [a for a in mine if a.pending]
    if not pending:
        return Plan(Outcome.ALREADY_DECIDED, f"{facts.sender} has already decided {ticket.id}")
    if require_token:
        seen = _compact(f"{facts.original}\n{facts.reply_text}")
        bound = [a for a in pending if _compact(a.token or "") in seen]  # "" is in any
        if not bound:
            return Plan(
                Outcome.TOKEN_MISSING,
                f"the approval email for {ticket.id} is not quoted or forwarded",
            )
        pending = bound
    approver = min(pending, key=lambda a: a.seq)
    result = Result.APPROVE if facts.decision is Decision.APPROVE else Result.REJECT
    submission = Submission(ticket.id, approver.seq, approver.actionnumber, result, facts.note)
    return Plan(Outcome.SUBMIT, f"{facts.decision.value} as approver seq {approver.seq}",
                submission)


def _compact(text: str) -> str:
    """Text without whitespace or quote marks, so a token wrapped in a quote still matches."""
    return re.sub(r"[\s>]+", "", text)


def confirm(plan: Plan, approver: Approver | None) -> Plan:
    """Halo's record after the submission decides the outcome the person is told."""
    submission = plan.submission
    assert submission is not None
    if approver is not None and approver.result == submission.result:
        outcome = Outcome.APPROVED if submission.result is Result.APPROVE else Outcome.REJECTED
        return replace(plan, outcome=outcome, reason=f"recorded in Halo: {plan.reason}")
    if approver is not None and approver.result:
        return replace(plan, outcome=Outcome.ALREADY_DECIDED,
                       reason="another decision was recorded first")
    return replace(plan, outcome=Outcome.FAILED,
                   reason="Halo accepted the submission but does not show it recorded")


@dataclass(frozen=True)
class Rules:
    """The settings that reading, triage and matching depend on, normalised once."""

    grammar: Grammar
    own_addresses: frozenset[str]
    aliases: Mapping[str, str]
    max_age: timedelta
    require_token: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        p = settings.parsing
        return cls(
            grammar=Grammar.build(p.languages, p.approve_words, p.reject_words),
            own_addresses=frozenset({normalise_address(settings.smtp.from_)}),
            aliases={normalise_address(k): normalise_address(v)
                     for k, v in settings.matching.aliases.items()},
            max_age=timedelta(days=settings.security.max_age_days),
            require_token=settings.security.require_token,
        )

    def triage(self, facts: Facts, verdict: Verdict, now: datetime) -> Plan | None:
        return triage(facts, verdict, own_addresses=self.own_addresses, now=now,
                      max_age=self.max_age)

    def match(self, facts: Facts, ticket: Ticket | None) -> Plan:
        return match(facts, ticket, self.aliases, require_token=self.require_token)
