"""``responder explain``: what the responder reads in one message, and would do with it.

Offline by default (no server is touched, no DNS); with ``online`` it reads the ticket
from Halo and shows the planned action, still without submitting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from responder.authenticity import judge
from responder.config import Settings
from responder.decision import DEFAULT_GRAMMAR
from responder.message import analyse
from responder.plan import Rules


async def explain(raw: bytes, settings: Settings | None, *, online: bool = False) -> dict[str, Any]:
    rules = Rules.from_settings(settings) if settings else None
    facts = analyse(raw, settings.parsing if settings else None,
                    rules.grammar if rules else DEFAULT_GRAMMAR)
    report = facts.as_json()
    if settings is None or rules is None or facts.headers is None or not facts.sender_domain:
        return report
    verdict = judge(facts.headers, facts.sender_domain, settings.security)
    report["authenticity"] = {"trusted": verdict.trusted, "method": verdict.method,
                              "reason": verdict.reason}
    plan = rules.triage(facts, verdict, datetime.now(UTC))
    if plan is None and online:
        from responder.halo import HaloClient

        async with HaloClient(settings.halo) as halo:
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
