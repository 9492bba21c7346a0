"""Putting a filed message back into the watched folder, for ``replay`` and the console.

    ledger row (by Message-ID) -> the folder its outcome was filed in -> back into the
    watched folder -> row marked "seen"/"replay" (evidence kept)

The row is marked before the message is moved back, so a service running meanwhile
takes it as new rather than as a copy; if the message cannot be found, the mark is
undone. An approved or rejected message is never put back: Halo has its decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

from responder import ledger as states
from responder.config import Settings
from responder.ledger import Ledger, Row
from responder.mailboxes import Mailbox, MailboxError
from responder.plan import Outcome, folder_for

MailboxFactory = Callable[[Settings], Mailbox]  # the wiring's make_mailbox

FINAL = frozenset({Outcome.APPROVED.value, Outcome.REJECTED.value})


@dataclass
class Replayed:
    """What ``replay`` did with one Message-ID."""

    message_id: str
    status: str  # replayed | decided | unknown | not-found | in-progress | failed
    detail: str  # one human line
    outcome: str | None = None  # the message's outcome after the pass
    reason: str | None = None
    folder: str | None = None  # where it was found

    @property
    def ok(self) -> bool:
        bad = {Outcome.FAILED.value, Outcome.PENDING.value, states.REPLAY}
        return self.status in ("replayed", "decided", "in-progress") and self.outcome not in bad

    def as_json(self) -> dict[str, str | None]:
        return asdict(self)


def folders_to_search(row: Row, settings: Settings) -> list[str]:
    """The folder the row's outcome was filed in; every folder when that is not known."""
    try:
        folder = folder_for(Outcome(row.outcome or ""), settings.folders)
    except ValueError:  # "replay" (put back, then interrupted) or an outcome we do not know
        folder = None
    if folder is not None:
        return [folder]
    f = settings.folders
    return list(dict.fromkeys([f.unmatched, f.failed, f.quarantine, f.ignored, f.done]))


async def put_back(
    settings: Settings, message_id: str, mailbox: MailboxFactory, vouched_by: str | None = None
) -> tuple[Replayed, Row | None]:
    """Move a filed message back into the watched folder, marked for the next pass.

    ``status`` is "replayed" (put back), "in-progress" (not filed yet: the next pass
    takes it anyway), or why nothing was done. ``vouched_by`` (the console's release)
    makes the next pass take the sender as authenticated.
    """
    ledger = Ledger(settings.state.path)
    try:
        row = ledger.by_message_id(message_id)
        if row is None:
            detail = f"no message {message_id} in the ledger {settings.state.path}"
            return Replayed(message_id, "unknown", detail), None
        if row.outcome in FINAL:
            detail = f"already {row.outcome} in Halo ({row.reason}); nothing to do"
            return Replayed(row.key, "decided", detail, row.outcome, row.reason), row
        if vouched_by:
            ledger.vouch(row.key, vouched_by)
        if not (row.state == states.FILED or row.outcome == states.REPLAY):
            detail = f"not filed yet ({row.state}, {row.outcome}): the next pass takes it"
            return Replayed(row.key, "in-progress", detail, row.outcome, row.reason), row
        ledger.mark_replay(row.key)
        try:
            folder = await _restore(settings, row, mailbox)
        except BaseException:
            _unmark(ledger, row)
            raise
        if folder is None and row.outcome != states.REPLAY:  # else: maybe in the inbox
            _unmark(ledger, row)
            where = " or ".join(folders_to_search(row, settings))
            detail = f"{row.outcome}, but not in {where} any more (moved by hand?)"
            return Replayed(row.key, "not-found", detail, row.outcome, row.reason), row
        detail = f"put back from {folder or 'the inbox'} for the next pass"
        return Replayed(row.key, "replayed", detail, row.outcome, row.reason, folder), row
    finally:
        ledger.close()


def _unmark(ledger: Ledger, row: Row) -> None:
    """Undo ``mark_replay`` (and a vouch) when the message was not put back."""
    ledger.vouch(row.key, row.vouched_by)
    if row.outcome != states.REPLAY:
        ledger.record(row.key, state=row.state, outcome=row.outcome, reason=row.reason)


async def _restore(settings: Settings, row: Row, make: MailboxFactory) -> str | None:
    """Move the message back into the watched folder; the folder it was in, or None."""
    mailbox = make(settings)
    await mailbox.open()
    try:
        for folder in folders_to_search(row, settings):
            if await mailbox.restore(row.key, folder):
                return folder
        return None
    finally:
        with contextlib.suppress(MailboxError):
            await mailbox.close()
