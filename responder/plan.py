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

from responder.config import FolderSettings, Settings
from responder.halo.tickets import Approver, Result, Submission, Ticket
from responder.reading.decision import Decision, Grammar
from responder.reading.message import Facts, normalise_address
from responder.trust.authenticity import Verdict


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
    extra: tuple[Submission, ...] = ()  # more entries of the same person, same reply

    @property
    def submissions(self) -> tuple[Submission, ...]:
        """Every decision this plan posts: one per pending entry of the sender."""
        return (self.submission, *self.extra) if self.submission else ()

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
    if not any(normalise_address(a.emailaddress) == sender for a in ticket.entries):
        return Plan(Outcome.NOT_APPROVER, f"{facts.sender} is not an approver of {ticket.id}")
    pending = pending_entries(ticket, sender)
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
    unnumbered = [a.seq for a in pending if a.actionnumber is None]
    if unnumbered:  # a decision needs it: never posted with a guessed one
        return Plan(Outcome.FAILED, f"Halo shows no actionnumber for approval seq "
                    f"{', '.join(map(str, unnumbered))} of ticket {ticket.id}, so it cannot "
                    f"be decided by email")
    result = Result.APPROVE if facts.decision is Decision.APPROVE else Result.REJECT
    subs = [Submission(ticket.id, a.seq, a.actionnumber, result, facts.note)
            for a in pending if a.actionnumber is not None]
    seqs = " and ".join(str(a.seq) for a in pending)
    return Plan(Outcome.SUBMIT, f"{facts.decision.value} as approver seq {seqs}",
                subs[0], tuple(subs[1:]))


def pending_entries(ticket: Ticket, sender: str) -> list[Approver]:
    """The entries one reply from ``sender`` decides, each once, as Halo means pending.

    Pending: ``result`` null or 0 and no ``dateapproved``, in ``approvers`` (an entry in
    ``approvers_history`` is decided, whatever it shows). Of those with the sender's
    address, the ones of the ticket's current step (``approval_process_step``) when it
    names one and the sender has entries in it, else those of the earliest step; entries
    without a step belong to every step. All of that step's entries for the address are
    decided by the one reply (the person may be asked as themselves and as a CAB member).
    """
    history = {a.seq for a in ticket.history}
    mine = [a for a in ticket.approvers if normalise_address(a.emailaddress) == sender
            and a.pending and a.seq not in history]
    steps = {a.step_id for a in mine if a.step_id is not None}
    if steps:
        step = ticket.current_step if ticket.current_step in steps else min(steps)
        mine = [a for a in mine if a.step_id in (None, step)]
    unique = {a.seq: a for a in mine}
    return [unique[s] for s in sorted(unique)]


def describe(ticket: Ticket) -> list[str]:
    """How the responder reads a ticket's approval entries: one line each, and who a
    reply would decide (for ``responder check --online --ticket``)."""
    step = ticket.current_step
    lines = [f"ticket {ticket.id}: {ticket.summary!r}; current step "
             f"{step if step is not None else '(not named)'}"]
    history = {a.seq for a in ticket.history}
    for where, entries in (("approvers", ticket.approvers),
                           ("approvers_history", ticket.history)):
        for a in entries:
            state = "pending" if a.pending and a.seq not in history else "decided"
            lines.append(
                f"  {where}: seq {a.seq} actionnumber {a.actionnumber} {a.emailaddress or '?'}"
                f" step {a.step_id if a.step_id is not None else '-'} result {a.result}"
                f" dateapproved {a.dateapproved or '-'} -> {state}")
    people = sorted({normalise_address(a.emailaddress) for a in ticket.entries
                     if a.emailaddress})
    for person in people:
        seqs = [a.seq for a in pending_entries(ticket, person)]
        decides = f"decides seq {', '.join(map(str, seqs))}" if seqs else "already decided"
        lines.append(f"  a reply from {person}: {decides}")
    if not ticket.entries:
        lines.append("  no approval entries: every reply would be 'not an approver'")
    return lines


def _compact(text: str) -> str:
    """Text without whitespace or quote marks, so a token wrapped in a quote still matches."""
    return re.sub(r"[\s>]+", "", text)


def confirm(plan: Plan, found: Approver | Mapping[int, Approver | None] | None) -> Plan:
    """Halo's record after the submission decides the outcome the person is told.

    ``found`` is Halo's entry for each submitted seq (from the POST's answer or a re-read
    of ``approvers`` and ``approvers_history``); one entry alone stands for the first.
    An entry shows our decision when its ``result`` is ours, or when it is decided
    (``dateapproved``) without a result; another result means someone decided first.
    """
    subs = plan.submissions
    assert subs
    if found is None or isinstance(found, Approver):
        found = {subs[0].seq: found}
    ours = [s for s in subs if _shows(found.get(s.seq), s.result)]
    others = [s for s in subs if (a := found.get(s.seq)) is not None and a.decided
              and s not in ours]
    if ours:
        outcome = Outcome.APPROVED if ours[0].result is Result.APPROVE else Outcome.REJECTED
        note = f" (seq {', '.join(str(s.seq) for s in others)} decided by someone else first)" \
            if others else ""
        return replace(plan, outcome=outcome, reason=f"recorded in Halo: {plan.reason}{note}")
    if others and len(others) == len(subs):
        return replace(plan, outcome=Outcome.ALREADY_DECIDED,
                       reason="another decision was recorded first")
    return replace(plan, outcome=Outcome.FAILED,
                   reason="Halo accepted the submission but does not show it recorded")


def _shows(approver: Approver | None, result: Result) -> bool:
    if approver is None or approver.pending:
        return False
    return approver.result == result or not approver.result


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
            own_addresses=frozenset({normalise_address(settings.answer_from)}),
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
