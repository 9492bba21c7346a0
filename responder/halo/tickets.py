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
    actionnumber: int | None  # None: Halo did not say (then the entry cannot be decided)
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


class Malformed(ValueError):
    """Halo's JSON lacks a value a decision needs, or holds one that is not what it should
    be: nothing is guessed (a POST built from a default ``seq`` would decide someone else)."""


_LONGEST_NUMBER = 18  # digits; Halo's ids are int32


def _number(value: Any, what: str) -> int | None:
    """A whole number as Halo may write it (``7``, ``7.0``, ``"7"``); None for null or "".

    Anything else (text, ``true``, ``1.5``, a list, a 400-digit string) is ``Malformed``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise Malformed(f"{what} is {str(value).lower()}, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = value.strip() if isinstance(value, str) else ""
    digits = text[1:] if text[:1] == "-" else text
    if digits.isascii() and digits.isdigit() and len(digits) <= _LONGEST_NUMBER:
        return int(text)
    raise Malformed(f"{what} is {_shown(value)}, not a number")


def _text(value: Any, what: str, longest: int) -> str:
    """A string field (numbers are taken as written), cut to ``longest``; null is ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:longest]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)[:longest]
    raise Malformed(f"{what} is {_shown(value)}, not text")


def _shown(value: Any) -> str:
    """A hostile value described in a few characters (never its whole, maybe deep, self)."""
    if isinstance(value, str):
        return repr(value[:20] + ("…" if len(value) > 20 else ""))
    return f"a JSON {type(value).__name__}" if isinstance(value, list | dict) else repr(value)


def approver_from_json(data: dict[str, Any], where: str = "an approval entry") -> Approver:
    """One approval entry; ``Malformed`` (naming ``where``) when it cannot be trusted."""
    seq = _number(data.get("seq"), f"{where}: seq")
    if seq is None:
        raise Malformed(f"{where} has no seq")
    where = f"approval entry seq {seq}"
    result = _number(data.get("result"), f"{where}: result")
    dateapproved = _text(data.get("dateapproved"), f"{where}: dateapproved", 64)
    return Approver(
        seq=seq,
        actionnumber=_number(data.get("actionnumber"), f"{where}: actionnumber"),
        emailaddress=_text(data.get("emailaddress"), f"{where}: emailaddress", 320).strip(),
        name=_text(data.get("name"), f"{where}: name", 200),
        result=result or None,
        token=_text(data.get("token"), f"{where}: token", 200) or None,
        ticket_id=_number(data.get("ticket_id"), f"{where}: ticket_id") or 0,
        dateapproved=dateapproved or None,
        step_id=_number(data.get("step_id"), f"{where}: step_id"),
    )


def _entries(data: Any, key: str) -> tuple[Approver, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise Malformed(f"{key} is {_shown(data)}, not a list")
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise Malformed(f"{key} entry {index + 1} is {_shown(item)}, not an object")
    return tuple(approver_from_json(a, f"{key} entry {n + 1}") for n, a in enumerate(data))


def ticket_from_json(data: dict[str, Any]) -> Ticket:
    """A ticket as Halo sent it; ``Malformed`` when its id or an approval entry is not
    usable (``HaloClient.get_ticket`` also checks it is the ticket asked for)."""
    ticket_id = _number(data.get("id"), "the ticket's id")
    if ticket_id is None:
        raise Malformed("the ticket has no id")
    return Ticket(
        id=ticket_id,
        summary=str(data["summary"])[:500] if isinstance(data.get("summary"), str) else "",
        approvers=_entries(data.get("approvers"), "approvers"),
        history=_entries(data.get("approvers_history"), "approvers_history"),
        current_step=_number(data.get("approval_process_step"), "approval_process_step")
        or None,
    )
