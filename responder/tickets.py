"""Halo's tickets and approvals as plain values (no I/O).

Halo's JSON is loose (null, 0, missing keys, strings for numbers); it is read here,
once, into small frozen dataclasses that the rest of the responder can trust.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Result(IntEnum):
    """Halo's approval `result` codes."""

    APPROVE = 1
    REJECT = 2


@dataclass(frozen=True)
class Approver:
    seq: int
    actionnumber: int
    emailaddress: str
    name: str = ""
    result: int | None = None  # null or 0 while pending
    token: str | None = None
    ticket_id: int = 0  # set where Halo's record carries it (the POST's answer)
    dateapproved: str | None = None  # set once decided (some records may lack a result)
    step_id: int | None = None  # the approval step this entry belongs to, if Halo says

    @property
    def pending(self) -> bool:
        """Halo's meaning of pending: no result (null or 0) and no date of decision."""
        return not self.result and not self.dateapproved

    @property
    def decided(self) -> bool:
        return not self.pending


@dataclass(frozen=True)
class Ticket:
    id: int
    summary: str
    approvers: tuple[Approver, ...]
    # Decided entries may leave ``approvers`` for ``approvers_history`` (unconfirmed).
    history: tuple[Approver, ...] = ()
    current_step: int | None = None  # ``approval_process_step``, where the ticket names one

    @property
    def entries(self) -> tuple[Approver, ...]:
        """Every approval entry, current ones first, then the history."""
        return self.approvers + self.history

    def approver(self, seq: int) -> Approver | None:
        """The entry ``seq`` wherever Halo keeps it (``approvers`` or ``approvers_history``).

        An entry in both lists is read from whichever shows it decided.
        """
        found = [a for a in self.entries if a.seq == seq]
        return next((a for a in found if a.decided), found[0] if found else None)


@dataclass(frozen=True)
class Submission:
    """One decision to POST to /api/ticketapproval."""

    ticket_id: int
    seq: int
    actionnumber: int
    result: Result
    note: str | None = None

    def as_json(self, note_field: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ticket_id": self.ticket_id,
            "seq": self.seq,
            "actionnumber": self.actionnumber,
            "result": int(self.result),
        }
        if self.note:
            body[note_field] = self.note
        return body


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def approver_from_json(data: dict[str, Any]) -> Approver:
    result = data.get("result")
    return Approver(
        seq=_int(data.get("seq")),
        actionnumber=_int(data.get("actionnumber")),
        emailaddress=str(data.get("emailaddress") or "").strip(),
        name=str(data.get("name") or ""),
        result=_int(result) if result not in (None, "") else None,
        token=str(data["token"]) if data.get("token") else None,
        ticket_id=_int(data.get("ticket_id")),
        dateapproved=str(data["dateapproved"]) if data.get("dateapproved") else None,
        step_id=_int(data["step_id"]) if data.get("step_id") not in (None, "") else None,
    )


def _entries(data: Any) -> tuple[Approver, ...]:
    items = data if isinstance(data, list) else []
    return tuple(approver_from_json(a) for a in items if isinstance(a, dict))


def ticket_from_json(data: dict[str, Any]) -> Ticket:
    step = data.get("approval_process_step")
    return Ticket(
        id=_int(data.get("id")),
        summary=str(data.get("summary") or ""),
        approvers=_entries(data.get("approvers")),
        history=_entries(data.get("approvers_history")),
        current_step=_int(step) if step not in (None, "", 0) else None,
    )
