"""What an admin can do to a message in the console; each is recorded in the ledger.

- **release** a quarantined message: the admin vouches for the sender. It goes back into
  the watched folder marked as vouched for, and the running service's next pass (the
  mailbox tells it at once) processes it as authenticated.
- **retry** a failed, unmatched or pending message: what ``responder replay`` does, but
  the pass is the running service's, not a second one beside it.
- **resend** an answer that was sent (or given up on): sent once more, now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from responder.config import Settings
from responder.ledger import Ledger, OutboxItem
from responder.mailboxes import MailboxError
from responder.refile import MailboxFactory, put_back
from responder.senders import Sender
from responder.senders.smtp import SmtpError

log = logging.getLogger("responder")


@dataclass(frozen=True)
class Wiring:
    """What the actions build from the config, given by the service's wiring when it
    starts the console (the console never imports the wiring: it depends on the console)."""

    mailbox: MailboxFactory
    sender: Callable[[Settings], Sender]


@dataclass(frozen=True)
class Done:
    ok: bool
    detail: str  # one human line, shown on the page and kept in the ledger
    status: str = ""  # a put-back's: "replayed" (moved back) or "in-progress" (not filed)


async def release(wiring: Wiring, settings: Settings, key: str, who: str) -> Done:
    row = await asyncio.to_thread(_row_outcome, settings, key)
    if row != "quarantined":
        return Done(False, f"only a quarantined message can be released (this one: {row})")
    return await _put_back(wiring, settings, key, who, "release", vouched_by=who)


async def retry(wiring: Wiring, settings: Settings, key: str, who: str) -> Done:
    return await _put_back(wiring, settings, key, who, "retry")


async def _put_back(wiring: Wiring, settings: Settings, key: str, who: str, action: str,
                    vouched_by: str | None = None) -> Done:
    try:
        put, row = await put_back(settings, key, wiring.mailbox, vouched_by=vouched_by)
    except MailboxError as exc:
        return Done(False, f"the mailbox could not be reached: {exc}")
    ok = put.status in ("replayed", "in-progress")
    if row is not None:
        await asyncio.to_thread(_record, settings, row.key, action, who, put.detail)
    log.info("console: %s %s by %s: %s", action, key, who, put.detail)
    return Done(ok, put.detail, put.status)


async def resend(wiring: Wiring, settings: Settings, key: str, answer_id: int,
                 who: str) -> Done:
    found = await asyncio.to_thread(_answer, settings, key, answer_id)
    if found is None:
        return Done(False, "no such answer (or it is still waiting to be sent)")
    recipient, raw = found
    sender = wiring.sender(settings)
    try:
        [error] = await sender.send_many([(recipient, raw)])
    except (SmtpError, ValueError) as exc:
        error = str(exc) or "the connection broke"
    detail = f"answer {answer_id} to {recipient}: " + ("sent again" if error is None
                                                        else f"not sent: {error}")
    await asyncio.to_thread(_record, settings, key, "resend", who, detail, answer_id,
                            error is None)
    log.info("console: resend %s by %s: %s", key, who, detail)
    return Done(error is None, detail)


def _row_outcome(settings: Settings, key: str) -> str | None:
    ledger = Ledger(settings.state.path)
    try:
        row = ledger.by_message_id(key)
        return row.outcome if row else None
    finally:
        ledger.close()


def _answer(settings: Settings, key: str, answer_id: int) -> tuple[str, bytes] | None:
    ledger = Ledger(settings.state.path)
    try:
        row = ledger.db.execute(
            "SELECT recipient, raw FROM outbox WHERE id = ? AND message_key = ? "
            "AND state IN ('sent', 'dropped')",
            (answer_id, key),
        ).fetchone()
        return (str(row[0]), bytes(row[1])) if row else None
    finally:
        ledger.close()


def _record(settings: Settings, key: str, action: str, who: str, detail: str,
            answer_id: int | None = None, sent: bool = False) -> None:
    ledger = Ledger(settings.state.path)
    try:
        ledger.record_action(key, action, who, detail)
        if sent and answer_id is not None:
            ledger.answer_sent(OutboxItem(answer_id, key, "", b"", 0))
    finally:
        ledger.close()
