"""``responder replay``: run one filed message again, once an admin has fixed its cause.

    ledger row (by Message-ID) -> the folder its outcome was filed in -> back into the
    watched folder -> row marked "seen"/"replay" (evidence kept) -> one pass

Idempotent: an approved or rejected message is never replayed (Halo has its decision),
and the pass reads the ticket before it submits anything, so a second replay of a
message decided by the first finds it decided and does nothing. The row is marked
before the message is moved back, so a service running meanwhile takes it as new
rather than as a copy; if the message cannot be found, the mark is undone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from responder import ledger as states
from responder.config import Settings
from responder.ledger import Ledger, Row
from responder.mailboxes import MailboxError
from responder.plan import Outcome, folder_for
from responder.service import make_mailbox, once

log = logging.getLogger("responder")

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


async def replay(
    settings: Settings,
    message_id: str,
    name: str = "default",
    progress: Callable[[str], None] | None = None,
) -> Replayed:
    """Put a filed message back and run one pass; see the module docstring."""
    put, row = await put_back(settings, message_id)
    if row is None or put.status not in ("replayed", "in-progress"):
        return put
    log.info("replaying %s (was %s: %s)", row.key, row.outcome, row.reason)
    result = await once(settings, name, progress)
    report = next((r for r in result.reports if r.key == row.key), None)
    outcome: str | None
    reason: str | None
    if report is not None:
        outcome, reason = report.outcome, report.reason
    else:  # a running service took it first, or it is not in the inbox: ask the ledger
        ledger = Ledger(settings.state.path)
        try:
            after = ledger.by_message_id(row.key)
        finally:
            ledger.close()
        outcome, reason = (after.outcome, after.reason) if after else (None, None)
    detail = f"{outcome}: {reason}"
    if put.status == "in-progress":
        detail = f"was not filed yet ({row.state}, {row.outcome}); after one pass: {detail}"
    elif put.folder is not None:
        detail = f"replayed from {put.folder}: {detail}"
    return Replayed(row.key, put.status, detail, outcome, reason, put.folder)


async def put_back(
    settings: Settings, message_id: str, vouched_by: str | None = None
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
            folder = await _restore(settings, row)
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


async def _restore(settings: Settings, row: Row) -> str | None:
    """Move the message back into the watched folder; the folder it was in, or None."""
    mailbox = make_mailbox(settings)
    await mailbox.open()
    try:
        for folder in folders_to_search(row, settings):
            if await mailbox.restore(row.key, folder):
                return folder
        return None
    finally:
        with contextlib.suppress(MailboxError):
            await mailbox.close()
