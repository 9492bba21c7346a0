"""``responder explain``: what the responder reads in one message, and would do with it.

Offline by default (no server is touched, no DNS); with ``online`` it reads the ticket
from Halo and shows the planned action, still without submitting anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from responder.authenticity import judge
from responder.config import Settings
from responder.decision import DEFAULT_GRAMMAR, Grammar
from responder.message import analyse, normalise_address
from responder.plan import match, triage


async def explain(raw: bytes, settings: Settings | None, *, online: bool = False) -> dict[str, Any]:
    grammar = DEFAULT_GRAMMAR
    if settings:
        p = settings.parsing
        grammar = Grammar.build(p.languages, p.approve_words, p.reject_words)
    facts = analyse(raw, settings.parsing if settings else None, grammar)
    report = facts.as_json()
    if settings is None or facts.headers is None or not facts.sender_domain:
        return report
    verdict = judge(facts.headers, facts.sender_domain, settings.security)
    report["authenticity"] = {"trusted": verdict.trusted, "method": verdict.method,
                              "reason": verdict.reason}
    plan = triage(
        facts,
        verdict,
        own_addresses=frozenset({normalise_address(settings.smtp.from_)}),
        now=datetime.now(UTC),
        max_age=timedelta(days=settings.security.max_age_days),
    )
    if plan is None and online:
        from responder.halo import HaloClient

        async with HaloClient(settings.halo) as halo:
            assert facts.ticket_id is not None
            ticket = await halo.get_ticket(facts.ticket_id)
        aliases = {normalise_address(k): normalise_address(v)
                   for k, v in settings.matching.aliases.items()}
        plan = match(facts, ticket, aliases, require_token=settings.security.require_token)
    if plan is not None:
        report["plan"] = {"outcome": plan.outcome.value, "reason": plan.reason}
        if plan.submission:
            report["plan"]["submission"] = plan.submission.as_json(settings.halo.note_field)
    else:
        report["plan"] = {"outcome": "look-up", "reason": "needs the ticket (use --online)"}
    return report
