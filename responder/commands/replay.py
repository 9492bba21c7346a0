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

import logging
from collections.abc import Callable

from responder.config import Settings
from responder.ledger import Ledger
from responder.refile import Replayed, put_back
from responder.service import make_mailbox, once

log = logging.getLogger("responder")


async def replay(
    settings: Settings,
    message_id: str,
    name: str = "default",
    progress: Callable[[str], None] | None = None,
) -> Replayed:
    """Put a filed message back and run one pass; see the module docstring."""
    put, row = await put_back(settings, message_id, make_mailbox)
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
