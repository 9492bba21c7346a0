"""What the ledger keeps of a message beyond its outcome, and the plans read back from it.

The orchestrator records each message as it goes; these shape those records (the
evidence the console shows, the claim name a ledger keeps) and turn a row back into a
plan: a submission a crash interrupted, a copy of a message already handled.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

from responder.config import Settings
from responder.halo.tickets import Result, Submission
from responder.ledger import Ledger, Row
from responder.plan import Outcome, Plan
from responder.reading.message import Facts
from responder.trust.authenticity import Verdict


def vouched(who: str) -> Verdict:
    """The verdict for a message an admin released in the console: they vouch for it."""
    return Verdict(True, "admin", f"released by {who}, who vouched for the sender")


MAX_HEADER_CHARS = 64_000  # what the console shows of a message's raw header block


def evidence_columns(raw: bytes, facts: Facts, verdict: Verdict | None) -> dict[str, Any]:
    """What the review console shows of a message: its header block and the text read."""
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0),
              default=len(raw))
    columns = {
        "headers": raw[:end].decode("utf-8", "replace")[:MAX_HEADER_CHARS],
        "reply_text": facts.reply_text[:MAX_HEADER_CHARS],
    }
    if verdict is not None:
        columns["auth_details"] = "\n".join(verdict.details)[:MAX_HEADER_CHARS]
    return columns


OWNER_STATE = "claim_owner"  # the ledger's mailbox_state row that names its claims


def default_owner(settings: Settings) -> str:
    """A new ledger's name in mailbox claims (from this host and the ledger's path)."""
    where = f"{socket.gethostname()}:{Path(settings.state.path).resolve()}"
    return hashlib.sha256(where.encode()).hexdigest()[:12]


def ledger_owner(ledger: Ledger, settings: Settings) -> str:
    """This instance's name in mailbox claims: one per ledger, kept in it.

    Made once (``default_owner``) and then read back, so a restart holds the claims of
    the run before it at once, also under another host name: a container recreated
    after a crash gets a new one, and with a name made from the host each time, the
    messages the killed run had claimed waited ``claim_timeout_seconds`` (10 minutes)
    to be taken over as another instance's. A ledger from before keeps its name: the
    first run stores the name it had been using on this host.
    """
    return ledger.keep_state(OWNER_STATE, default_owner(settings))


def resumed_plan(row: Row) -> Plan:
    """The submission a crash interrupted, every entry of it (``entries``: "seq:action")."""
    assert row.ticket_id is not None and row.seq is not None
    result = Result.APPROVE if row.decision == "approve" else Result.REJECT
    pairs = [(row.seq, row.actionnumber or 0)]
    for part in (row.entries or "").split(","):
        seq, _, action = part.partition(":")
        if seq.strip().isdigit() and (int(seq), int(action or 0)) not in pairs:
            pairs.append((int(seq), int(action or 0)))
    subs = [Submission(row.ticket_id, seq, action, result, row.note) for seq, action in pairs]
    return Plan(Outcome.SUBMIT, "resuming a submission", subs[0], tuple(subs[1:]))


def copy_plan(row: Row) -> Plan:
    return Plan(Outcome.DUPLICATE, f"same content as {row.key}")


def new_round(plan: Plan, earlier: Row) -> bool:
    """A reply with the content of an earlier one is acted on only when it would decide
    another approver entry (a new approval round) than the earlier message did."""
    if plan.outcome is not Outcome.SUBMIT or plan.submission is None:
        return False
    sub = plan.submission
    return (sub.ticket_id, sub.seq) != (earlier.ticket_id, earlier.seq)
