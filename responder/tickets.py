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

    @property
    def pending(self) -> bool:
        return not self.result


@dataclass(frozen=True)
class Ticket:
    id: int
    summary: str
    approvers: tuple[Approver, ...]

    def approver(self, seq: int) -> Approver | None:
        return next((a for a in self.approvers if a.seq == seq), None)


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
    )


def ticket_from_json(data: dict[str, Any]) -> Ticket:
    approvers = data.get("approvers") or []
    return Ticket(
        id=_int(data.get("id")),
        summary=str(data.get("summary") or ""),
        approvers=tuple(approver_from_json(a) for a in approvers if isinstance(a, dict)),
    )
