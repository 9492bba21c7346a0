"""``responder explain``: what the responder reads in one message, and would do with it.

Offline by default (no server is touched, no DNS); with ``online`` it reads the ticket
from Halo and shows the planned action, still without submitting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from responder.config import Settings
from responder.plan import Rules
from responder.reading.decision import DEFAULT_GRAMMAR
from responder.reading.message import analyse
from responder.terminal import printable
from responder.trust.authenticity import Verdict, judge


async def explain(raw: bytes, settings: Settings | None, *, online: bool = False) -> dict[str, Any]:
    rules = Rules.from_settings(settings) if settings else None
    facts = analyse(raw, settings.parsing if settings else None,
                    rules.grammar if rules else DEFAULT_GRAMMAR)
    report = facts.as_json()
    if settings is None or rules is None or facts.headers is None:
        return report
    verdict = (judge(facts.headers, facts.sender_domain, settings.security) if facts.sender_domain
               else Verdict(False, "none", "no sender to authenticate"))
    report["authenticity"] = {"trusted": verdict.trusted, "method": verdict.method,
                              "reason": verdict.reason, "evidence": list(verdict.details)}
    plan = rules.triage(facts, verdict, datetime.now(UTC))
    if plan is None and online:
        from responder.service import halo_client

        async with halo_client(settings) as halo:
            assert facts.ticket_id is not None
            ticket = await halo.get_ticket(facts.ticket_id)
        plan = rules.match(facts, ticket)
    if plan is not None:
        report["plan"] = {"outcome": plan.outcome.value, "reason": plan.reason}
        if plan.submission:
            report["plan"]["submission"] = plan.submission.as_json(settings.halo.note_field)
    else:
        report["plan"] = {"outcome": "look-up", "reason": "needs the ticket (use --online)"}
    return report


_VERBS = {"quarantined": "quarantine", "ignored": "ignore", "duplicate": "ignore as a copy",
          "failed": "file as failed", "pending": "wait and retry"}


def verdict(report: dict[str, Any]) -> str:
    """The one line an admin reads first: what the responder would do, and why."""
    plan, sender, ticket = report.get("plan"), report.get("sender") or "?", report["ticket_id"]
    if plan and plan["outcome"] == "submit":
        sub = plan["submission"]
        verb = "approve" if sub["result"] == 1 else "reject"
        return f"would {verb} ticket {sub['ticket_id']} for {sender} (seq {sub['seq']})"
    if plan and plan["outcome"] == "look-up":
        return (f"would look ticket {ticket} up in Halo to match {sender} "
                "(add --online to see the decision)")
    if plan:
        outcome = plan["outcome"]
        return f"would {_VERBS.get(outcome, 'answer ' + outcome)}: {plan['reason']}"
    if report.get("unreadable"):
        return f"cannot read it: {report['unreadable']}"
    if report.get("machine_reason"):
        return f"reads: written by a machine ({report['machine_reason']})"
    if report.get("suspicious") or report.get("sender") is None:
        why = "; ".join(report.get("suspicious") or ()) or "no single sender address"
        return f"would quarantine: suspicious headers: {why}"
    if report.get("decision") is None or ticket is None:
        missing = "no decision word" if report.get("decision") is None else "no ticket tag"
        return f"reads: {missing} from {sender}"
    return (f"reads: {report['decision']} ticket {ticket} from {sender} "
            "(add --config to judge the sender and plan)")


def describe(report: dict[str, Any]) -> list[str]:
    """``explain``'s human output: the verdict, then aligned ``key  value`` evidence, with
    the message's control characters shown escaped (they must not drive the terminal)."""
    rows: list[tuple[str, str]] = []
    for key, value in report.items():
        if key in ("reply_text", "plan", "authenticity"):
            continue
        rows.append((key, _text(value)))
    auth = report.get("authenticity")
    if auth:
        trusted = "trusted" if auth["trusted"] else "NOT trusted"
        rows.append(("authenticity", f"{trusted} ({auth['method'] or 'no method'}): "
                                     f"{auth['reason']}"))
        rows += [("  evidence", line) for line in auth.get("evidence", [])]
    plan = report.get("plan")
    if plan:
        rows.append(("plan", f"{plan['outcome']}: {plan['reason']}"))
        for key, value in (plan.get("submission") or {}).items():
            rows.append((f"  {key}", _text(value)))
    width = max(len(key) for key, _ in rows) + 2
    lines = [printable(verdict(report)), ""]
    lines += [f"{key:{width}}{printable(value)}".rstrip() for key, value in rows]
    lines.append("reply_text")
    lines += [f"  | {printable(line)}"
              for line in (str(report.get("reply_text") or "").splitlines() or [""])]
    return lines


def _text(value: Any) -> str:
    """A value as a person writes it: yes/no, '-' for nothing, lists comma-separated."""
    if value is None or value == [] or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    return str(value)
