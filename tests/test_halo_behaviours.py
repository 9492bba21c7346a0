"""What Halo leaves open, end to end: each case under every behaviour of the stand-in.

Real Dovecot, real SMTP, the stand-in Halo over real HTTP. Each test states the
outcome a person cares about (decided once, the right answer, the right folder)
whatever Halo turns out to do: answer the POST with records, nothing or ``{}``; apply
a batch in part; move decided entries to ``approvers_history``; refuse decided entries;
refuse some tickets with 403; enforce scope and tenant; run several approval steps.
"""

from __future__ import annotations

import dataclasses

import pytest

from responder.halo.standin import BEHAVIOURS, StandinHalo
from tests.harness import Harness, gmail_reply, text_of


@pytest.fixture(params=sorted(BEHAVIOURS))
def halo(halo: StandinHalo, request: pytest.FixtureRequest) -> StandinHalo:
    halo.behaviour = dataclasses.replace(BEHAVIOURS[request.param])
    return halo


def outcomes(result: object) -> list[str]:
    return sorted(r.outcome for r in result.reports)  # type: ignore[attr-defined]


async def test_a_person_asked_twice_in_one_step_decides_both_entries_once(
    harness: Harness,
) -> None:
    harness.halo.add_ticket(1500, "Change with a CAB", [
        {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 4},
        {"emailaddress": "alice@example.com", "seq": 5, "actionnumber": 4, "cab_id": 3},
        {"emailaddress": "bob@example.com", "seq": 6, "actionnumber": 4, "cab_id": 3},
    ])
    harness.deliver(gmail_reply("alice@example.com", 1500, "Approve"))

    result = await harness.once()

    assert outcomes(result) == ["approved"]
    assert [(d["seq"], d["result"]) for d in harness.halo.decisions] == [(1, 1), (5, 1)]
    assert harness.halo.approver(1500, 6)["result"] is None
    assert harness.halo.duplicate_decisions == 0
    [answer] = harness.answers()
    assert "approval of ticket 1500" in text_of(answer)
    assert len(harness.folder("Approvals/Done")) == 1


async def test_the_current_step_is_decided_first_and_the_next_step_by_the_next_reply(
    harness: Harness,
) -> None:
    harness.halo.add_ticket(1600, "Two-step change", [
        {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 8, "step_id": 1},
        {"emailaddress": "alice@example.com", "seq": 2, "actionnumber": 8, "step_id": 2},
    ])
    harness.deliver(gmail_reply("alice@example.com", 1600, "Approve"))

    first = await harness.once()

    assert outcomes(first) == ["approved"]
    assert harness.halo.approver(1600, 1)["result"] == 1
    assert harness.halo.approver(1600, 2)["result"] is None
    harness.deliver(gmail_reply("alice@example.com", 1600, "Reject - step two: no"))

    second = await harness.once()

    assert outcomes(second) == ["rejected"]
    assert harness.halo.approver(1600, 2)["result"] == 2
    assert harness.halo.duplicate_decisions == 0
    assert len(harness.answers()) == 2 and len(harness.folder("Approvals/Done")) == 2


async def test_a_later_reply_after_the_decision_is_already_decided_not_a_stranger(
    harness: Harness,
) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))
    await harness.once()
    harness.deliver(gmail_reply("alice@example.com", 1300, "Reject, changed my mind"))

    result = await harness.once()

    assert outcomes(result) == ["already-decided"]
    assert harness.halo.approver(1300, 4)["result"] == 1
    assert len(harness.posts()) == 1 and harness.halo.duplicate_decisions == 0
    assert "already been recorded" in text_of(harness.answers()[-1])


async def test_a_ticket_halo_refuses_to_show_fails_at_once_and_is_answered(
    harness: Harness,
) -> None:
    harness.halo.behaviour.forbidden = frozenset({1300})
    raw = gmail_reply("alice@example.com", 1300, "Approve")
    harness.deliver(raw)

    result = await harness.once()

    assert outcomes(result) == ["failed"]
    assert harness.posts() == [] and harness.halo.count("GET", "/api/tickets/1300") == 1
    assert "could not be processed" in text_of(harness.answers()[0])
    assert harness.folder("Approvals/Failed") == [raw] and harness.folder("INBOX") == []
    [row] = harness.ledger_rows()
    assert "GET /api/tickets/1300" in row["reason"] and "403" in row["reason"]
    again = await harness.once()  # nothing left to retry
    assert again.reports == [] and harness.halo.count("GET", "/api/tickets/1300") == 1


async def test_a_refused_batch_is_re_read_and_nothing_halo_applied_is_posted_again(
    harness: Harness,
) -> None:
    harness.halo.behaviour.batch_refused_after = 2
    harness.halo.add_ticket(1700, "Three approvers", [
        {"emailaddress": f"{name}@example.com", "seq": seq, "actionnumber": 2}
        for seq, name in enumerate(("alice", "bob", "carol", "dave"), 1)
    ])
    for name in ("alice", "bob", "carol", "dave"):
        harness.deliver(gmail_reply(f"{name}@example.com", 1700, "Approve"))

    result = await harness.once()

    assert outcomes(result) == ["approved"] * 4
    assert sorted(d["seq"] for d in harness.halo.decisions) == [1, 2, 3, 4]
    assert harness.halo.duplicate_decisions == 0
    posted = [e["seq"] for r in harness.halo.requests
              if r.matches("POST", "/api/ticketapproval") for e in r.body]
    assert sorted(posted) == [1, 2, 3, 3, 4, 4]  # 3 and 4 once refused, once applied
    assert len(harness.answers()) == 4


async def test_a_token_without_the_scope_to_decide_fails_the_message_with_the_reason(
    harness: Harness,
) -> None:
    harness.halo.behaviour.enforce_scope = True
    harness.overrides = {"halo": {"scope": "read:tickets"}}
    raw = gmail_reply("alice@example.com", 1300, "Approve")
    harness.deliver(raw)

    result = await harness.once()

    assert outcomes(result) == ["failed"]
    assert harness.halo.approver(1300, 4)["result"] is None
    assert harness.folder("Approvals/Failed") == [raw]
    assert "could not be processed" in text_of(harness.answers()[0])
    [row] = harness.ledger_rows()
    assert "POST /api/ticketapproval" in row["reason"] and "403" in row["reason"]


async def test_a_decision_for_an_entry_halo_shows_decided_is_never_posted(
    harness: Harness,
) -> None:
    """Decided by someone in Halo's web UI between the approval email and the reply."""
    harness.deliver(gmail_reply("alice@example.com", 1300, "Reject"))
    harness.halo.add_ticket(1300, "Licence renewal", [
        {"emailaddress": "alice@example.com", "seq": 4, "actionnumber": 9,
         "result": None, "dateapproved": "2026-11-28T08:59:00Z"},
    ])

    result = await harness.once()

    assert outcomes(result) == ["already-decided"]
    assert harness.halo.count("POST", "/api/ticketapproval") == 0


# -- copies and new rounds ---------------------------------------------------------------

def alice_asked_to_approve(harness: Harness) -> None:
    harness.halo.add_ticket(1800, "Change", [
        {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2}])


def button_reply(msgid: str) -> bytes:
    """The same one-word reply each time (a phone's canned answer): only the id differs."""
    return gmail_reply("alice@example.com", 1800, "Approve", msgid=msgid)


async def test_a_second_round_answered_the_same_way_is_acted_on(harness: Harness) -> None:
    alice_asked_to_approve(harness)
    harness.deliver(button_reply("<round1@example.com>"))
    await harness.once()
    harness.halo.add_ticket(1800, "Change", [  # the change was sent round again: a new entry
        {"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2, "result": 1,
         "dateapproved": "2026-11-28T09:00:00Z"},
        {"emailaddress": "alice@example.com", "seq": 2, "actionnumber": 3}])
    harness.deliver(button_reply("<round2@example.com>"))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.halo.approver(1800, 2)["result"] == 1
    assert len(harness.answers()) == 2 and harness.halo.duplicate_decisions == 0


async def test_a_reply_delivered_twice_in_one_pass_is_answered_once(harness: Harness) -> None:
    alice_asked_to_approve(harness)
    harness.deliver(button_reply("<twice-a@example.com>"))
    harness.deliver(button_reply("<twice-b@example.com>"))  # the same reply, another id

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved", "duplicate"]
    assert len(harness.answers()) == 1 and len(harness.posts()) == 1
    assert harness.folder("INBOX") == []


async def test_a_copy_arriving_while_the_original_waits_for_halo_is_answered_once(
    harness: Harness,
) -> None:
    alice_asked_to_approve(harness)
    harness.deliver(button_reply("<waiting@example.com>"))
    harness.halo.faults.fail_next(503, times=50, path_prefix="/api/tickets")
    assert [r.outcome for r in (await harness.once()).reports] == ["pending"]
    harness.halo.faults.clear()
    harness.deliver(button_reply("<resent-meanwhile@example.com>"))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved", "duplicate"]
    assert len(harness.answers()) == 1 and len(harness.posts()) == 1


async def test_a_copy_under_another_message_id_is_a_copy_only_while_recent(
    harness: Harness,
) -> None:
    alice_asked_to_approve(harness)
    harness.deliver(button_reply("<first@example.com>"))
    await harness.once()
    harness.deliver(button_reply("<resent@example.com>"))  # a mail system's second copy

    copy = await harness.once()

    assert [r.outcome for r in copy.reports] == ["duplicate"]
    assert len(harness.answers()) == 1 and len(harness.posts()) == 1
    harness.overrides = {"service": {"copy_window_minutes": 0}}
    harness.deliver(button_reply("<much-later@example.com>"))

    later = await harness.once()  # not recent: a message of its own, answered as such

    assert [r.outcome for r in later.reports] == ["already-decided"]
    assert len(harness.answers()) == 2 and len(harness.posts()) == 1
