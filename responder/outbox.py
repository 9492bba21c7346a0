"""Answers: one per human message, the hourly limit per person, digests, sending.

An answer is queued in the ledger's outbox in the same step that records the message's
outcome, and sent afterwards, so a crash in between sends it on the next pass. Past
``security.answers_per_sender_per_hour`` a person proven to be the sender has the rest
held for one digest (``digest.py`` writes it); anyone else is not answered at all, so a
mail loop or a forged sender cannot make us send without end.

The ledger side is blocking (every write is an fsync): the orchestrator calls ``queue``
in its worker thread and hands ``send`` the same thread for the ledger's part.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment

from responder import ledger as states
from responder.answers import compose
from responder.config import Settings
from responder.digest import Entry, compose_digest, entry_for
from responder.ledger import Ledger, OutboxItem
from responder.message import Facts
from responder.plan import Plan
from responder.senders import Sender
from responder.senders.smtp import SmtpError
from responder.tickets import Ticket

log = logging.getLogger("responder")
Blocking = Callable[..., Awaitable[Any]]  # runs blocking work off the event loop

MAX_ANSWER_ATTEMPTS = 50  # real delivery attempts (refusals), not passes while SMTP is down


@dataclass
class Sent:
    """What one ``send`` did."""

    answers: int = 0  # emails sent, digests included
    failed: int = 0  # still queued for the next pass
    digests: int = 0  # of ``answers``: emails that each answer several replies


@dataclass
class OverLimit:
    """What the hourly answer limit did in one pass, per recipient, for one log line."""

    held: Counter[str] = field(default_factory=Counter)  # held for a digest
    bundled: Counter[str] = field(default_factory=Counter)  # put into a digest now
    dropped: Counter[str] = field(default_factory=Counter)  # not answered at all


class Outbox:
    def __init__(self, settings: Settings, ledger: Ledger, sender: Sender,
                 templates: Environment) -> None:
        self.settings = settings
        self.ledger = ledger
        self.sender = sender  # SMTP, or Graph's sendMail
        self.templates = templates
        self._over_limit = OverLimit()

    def queue(self, facts: Facts, plan: Plan, ticket: Ticket | None,
              may_digest: Callable[[], bool]) -> None:
        """Queue the answer; over the hourly limit, hold it for a digest or (loops) drop it.

        ``may_digest`` is asked only past the limit: only a person proven to be the sender
        gets answers there (it may have to check a DKIM signature)."""
        wanted = plan.answered and facts.sender and self.settings.answers.enabled
        limit = self.settings.security.answers_per_sender_per_hour
        if wanted and facts.sender:
            if self.ledger.answers_to(facts.sender, timedelta(hours=1)) < limit:
                msg = compose(self.templates, facts, plan, ticket,
                              sender=self.settings.answer_from, parsing=self.settings.parsing)
                self.ledger.queue_answer(facts.key, facts.sender, msg.as_bytes())
            elif may_digest():
                entry = entry_for(facts, plan, ticket).dumps()
                if self.ledger.hold_answer(facts.key, facts.sender, entry):
                    self._over_limit.held[facts.sender] += 1
            else:
                self._over_limit.dropped[facts.sender] += 1
        self.ledger.record(facts.key, state=states.ANSWERED)

    async def send(self, blocking: Blocking) -> Sent:
        """Send every queued answer and digest; failures stay queued for the next pass."""
        pending: list[OutboxItem] = await blocking(self._to_send)
        try:
            errors = await self.sender.send_many([(p.recipient, p.raw) for p in pending])
        except SmtpError as exc:  # not one was tried: no attempt counted
            if pending:
                log.warning("%d answers not sent yet: %s", len(pending), exc)
            return Sent(failed=len(pending))
        await blocking(self._tried, pending, errors)
        tried = list(zip(pending, errors, strict=False))
        sent = sum(e is None for e in errors)
        return Sent(answers=sent, failed=len(pending) - sent,
                    digests=sum(e is None and p.digest for p, e in tried))

    def _to_send(self) -> list[OutboxItem]:
        self._bundle_digests()
        self._log_over_limit()
        for stale in self.ledger.drop_stale_answers(MAX_ANSWER_ATTEMPTS):
            log.error("gave up answering %s after %d attempts", stale, MAX_ANSWER_ATTEMPTS)
        return self.ledger.pending_answers(MAX_ANSWER_ATTEMPTS)

    def _tried(self, pending: list[OutboxItem], errors: Sequence[str | None]) -> None:
        for item, error in zip(pending, errors, strict=False):
            if error is None:
                self.ledger.answer_sent(item)
            else:
                what = "digest" if item.digest else "answer"
                log.warning("%s to %s not sent yet: %s", what, item.recipient, error)
                self.ledger.answer_failed(item, error)

    def _bundle_digests(self) -> None:
        """One digest per person with held answers, unless they had one too recently."""
        spacing = timedelta(minutes=self.settings.security.digest_minutes)
        now = datetime.now(UTC)  # the ledger's clock, which stamps the digests
        for recipient, held in self.ledger.held_answers().items():
            last = self.ledger.last_digest_at(recipient)
            recent = last is not None and now - last < spacing
            if recent or self.ledger.digest_unsent(recipient):
                continue  # they wait for a later pass: one digest at a time per person
            try:
                msg = compose_digest(
                    self.templates, recipient, [Entry.loads(h.entry) for h in held],
                    sender=self.settings.answer_from,
                    start_tag=self.settings.parsing.start_tag,
                    end_tag=self.settings.parsing.end_tag,
                )
            except Exception:  # a broken custom template: the answers stay held
                log.exception("could not compose the digest to %s; retrying next pass",
                              recipient)
                continue
            if self.ledger.queue_digest(recipient, msg.as_bytes(), held):
                self._over_limit.bundled[recipient] += len(held)

    def _log_over_limit(self) -> None:
        """Once per pass, not once per message: what the hourly limit did."""
        over, limit = self._over_limit, self.settings.security.answers_per_sender_per_hour
        said = []
        if over.held:
            held = sum(over.held.values())
            said.append(f"{_n(held, 'answer')} over the limit of {limit} per hour held for a "
                        f"digest ({_people(over.held)})")
        if over.bundled:
            said.append(f"{_n(len(over.bundled), 'digest')} queued, covering "
                        f"{_n(sum(over.bundled.values()), 'answer')} ({_people(over.bundled)})")
        if said:
            log.info("; ".join(said))
        if over.dropped:
            log.warning(
                "not answering %s over the limit of %d per hour from senders not "
                "authenticated as a person (%s)", _n(sum(over.dropped.values()), "message"),
                limit, _people(over.dropped))
        self._over_limit = OverLimit()


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _people(counts: Counter[str], shown: int = 3) -> str:
    names = [f"{who}: {n}" for who, n in counts.most_common(shown)]
    more = len(counts) - shown
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
