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
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment

from responder import ledger as states
from responder.answers.compose import compose
from responder.answers.digest import Entry, compose_digest, entry_for
from responder.config import Settings
from responder.halo.tickets import Ticket
from responder.ledger import Ledger, OutboxItem
from responder.plan import Plan
from responder.reading.message import Facts
from responder.senders import Sender
from responder.senders.smtp import SmtpError

log = logging.getLogger("responder")
Blocking = Callable[..., Awaitable[Any]]  # runs blocking work off the event loop

MAX_ANSWER_ATTEMPTS = 50  # real delivery attempts (refusals), not passes while SMTP is down
SENDING_ABANDONED = timedelta(minutes=10)  # one answer's send takes a timeout at most


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
        """Send every queued answer and digest; failures stay queued for the next pass.

        Each one is marked "sending" in the ledger just before it goes and "sent" as soon
        as the server took it, one at a time over the one connection: a crash (kill -9)
        between the two leaves that one answer alone unrecorded, and it alone is sent
        again. One another process is sending (it is alive) is left to it.
        """
        pending: list[OutboxItem] = await blocking(self._to_send)
        sent = Sent()
        in_flight: list[OutboxItem] = []  # marked "sending", its fate not recorded yet

        async def before(index: int) -> bool:
            item = pending[index]
            if not await blocking(self._sending, item):
                return False
            in_flight.append(item)
            return True

        async def after(index: int, error: str | None) -> None:
            item = pending[index]
            await blocking(self._tried, item, error)
            in_flight.remove(item)
            if error is None:
                sent.answers += 1
                sent.digests += item.digest
            else:
                sent.failed += 1

        try:
            results = await self.sender.send_many([(p.recipient, p.raw) for p in pending],
                                                  before=before, after=after)
        except SmtpError as exc:  # none was sent: nothing counted as an attempt
            if pending:
                log.warning("%d answers not sent yet: %s", len(pending), exc)
            await blocking(self._released, list(in_flight))
            return Sent(failed=len(pending))
        sent.failed += len(pending) - len(results)  # the connection broke: not tried
        return sent

    def _sending(self, item: OutboxItem) -> bool:
        """Mark it "sending"; False to leave it (another live process is sending it)."""
        pid = os.getpid()
        if item.sending_pid is not None:
            other = item.sending_pid != pid  # ours: an earlier pass, or pid 1 again
            if other and _alive(item.sending_pid) and not _abandoned(item.sending_at):
                return False
            what = "digest" if item.digest else "answer"
            log.warning("the %s to %s was being sent when the responder stopped (crash or "
                        "kill); it may have gone out, and is sent again", what, item.recipient)
        return self.ledger.answer_sending(item, pid)

    def _released(self, items: list[OutboxItem]) -> None:
        for item in items:
            self.ledger.answer_unsent(item)

    def _to_send(self) -> list[OutboxItem]:
        self._bundle_digests()
        self._log_over_limit()
        for stale in self.ledger.drop_stale_answers(MAX_ANSWER_ATTEMPTS):
            log.error("gave up answering %s after %d attempts", stale, MAX_ANSWER_ATTEMPTS)
        return self.ledger.pending_answers(MAX_ANSWER_ATTEMPTS)

    def _tried(self, item: OutboxItem, error: str | None) -> None:
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


def _abandoned(since: str | None) -> bool:
    """Marked "sending" longer than any one send takes: its process is not sending it,
    whatever holds that pid now (a pid is reused, in a container soon)."""
    try:
        at = datetime.fromisoformat(since or "")
    except ValueError:
        return True
    return datetime.now(UTC) - at > SENDING_ABANDONED


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a ledger is a local SQLite file, so
    every process sharing one runs here). A pid of ours after a restart in a container
    (pid 1 again) is ours: the caller has checked that first."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds that pid now: alive
        return True
    return True


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _people(counts: Counter[str], shown: int = 3) -> str:
    names = [f"{who}: {n}" for who, n in counts.most_common(shown)]
    more = len(counts) - shown
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
