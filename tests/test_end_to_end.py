"""End to end: a reply in a real Dovecot mailbox becomes a decision in the stand-in Halo
(over real HTTP) and an answer through a real SMTP server (aiosmtpd).

Every test runs under each of the stand-in's behaviours (``BEHAVIOURS``), since what
real Halo does is unconfirmed in each of those respects (see shared/halo)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from responder.halo.standin import BEHAVIOURS, StandinHalo
from tests.harness import Harness, gmail_reply, outlook_reply, reply, text_of


@pytest.fixture(params=sorted(BEHAVIOURS))
def halo(halo: StandinHalo, request: pytest.FixtureRequest) -> StandinHalo:
    """The conftest stand-in, under one of the behaviours Halo may turn out to have."""
    halo.behaviour = dataclasses.replace(BEHAVIOURS[request.param])
    return halo


async def test_an_outlook_approval_is_recorded_answered_filed_and_remembered(
    harness: Harness,
) -> None:
    raw = outlook_reply("Alice Approver <alice@example.com>", 1234, "Approved, thanks")
    harness.deliver(raw)

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["approved"]
    assert harness.posts() == [
        [{"ticket_id": 1234, "seq": 1, "actionnumber": 3, "result": 1, "note": "thanks"}]
    ]
    assert harness.halo.approver(1234, 1)["result"] == 1
    assert harness.halo.approver(1234, 2)["result"] is None  # Bob still to decide
    [answer] = harness.answers()
    original_id = reply_id(raw)
    assert answer["To"] == "alice@example.com"
    assert answer["Subject"] == "Re: Approval required [ID:1234]"
    assert answer["In-Reply-To"] == original_id
    assert original_id in answer["References"]
    assert answer["Auto-Submitted"] == "auto-replied"
    assert "approval of ticket 1234" in text_of(answer)
    assert harness.folder("INBOX") == []
    assert harness.folder("Approvals/Done") == [raw]
    [row] = harness.ledger_rows()
    assert (row["message_id"], row["sender"], row["ticket_id"], row["seq"]) == (
        original_id, "alice@example.com", 1234, 1)
    assert (row["decision"], row["outcome"], row["state"]) == ("approve", "approved", "filed")
    looked_up, posted = row["halo_status"].split("; ")[:2]  # every Halo answer, in order
    assert looked_up == "GET /api/tickets/1234 200 (2 approval entries, 2 pending)"
    assert posted == "POST /api/ticketapproval 200 (1 in one call)"
    if harness.halo.post_returns_records:
        assert row["halo_status"].endswith("; result 1 in its answer")
        assert harness.halo.count("GET", "/api/tickets/1234") == 1
    else:  # nothing in the POST's answer proves it: the ticket is read again
        assert row["halo_status"].endswith("; re-read shows seq 1 result 1")
        assert harness.halo.count("GET", "/api/tickets/1234") == 2


async def test_a_gmail_rejection_keeps_its_note(harness: Harness) -> None:
    harness.deliver(gmail_reply("bob@example.com", 1234, "REJECT - not approved this quarter"))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["rejected"]
    approver = harness.halo.approver(1234, 2)
    assert (approver["result"], approver["note"]) == (2, "not approved this quarter")
    assert "rejection of ticket 1234" in text_of(harness.answers()[0])


async def test_a_second_copy_of_the_same_message_does_nothing(harness: Harness) -> None:
    raw = gmail_reply("alice@example.com", 1234, "Approve")
    harness.deliver(raw)
    await harness.once()
    harness.deliver(raw)  # copied back into the inbox

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["duplicate"]
    assert len(harness.posts()) == 1
    assert len(harness.answers()) == 1
    assert harness.folder("Approvals/Ignored") == [raw]
    assert harness.halo.duplicate_decisions == 0


async def test_every_other_outcome_is_answered_and_filed(harness: Harness) -> None:
    cases = {
        "not-approver": gmail_reply("dave@example.com", 1234, "Approve"),
        "already-decided": gmail_reply("carol@example.com", 1235, "Reject"),
        "ticket-not-found": gmail_reply("alice@example.com", 999, "Approve"),
        "no-decision": gmail_reply("alice@example.com", 1300, "Looks fine to me"),
    }
    for raw in cases.values():
        harness.deliver(raw)

    result = await harness.once()

    assert sorted(r.outcome for r in result.reports) == sorted(cases)
    assert harness.posts() == []
    answers = {a["In-Reply-To"]: text_of(a) for a in harness.answers()}
    assert "not an approver" in answers[reply_id(cases["not-approver"])]
    assert "already been recorded" in answers[reply_id(cases["already-decided"])]
    assert "could not be found" in answers[reply_id(cases["ticket-not-found"])]
    assert "APPROVE or REJECT" in answers[reply_id(cases["no-decision"])]
    assert len(harness.folder("Approvals/Unmatched")) == 4
    assert result.failed == 0


async def test_a_decision_halo_refuses_is_failed_and_the_person_told(harness: Harness) -> None:
    harness.halo.faults.fail_next(400, path_prefix="/api/ticketapproval")
    raw = gmail_reply("alice@example.com", 1300, "Approve")
    harness.deliver(raw)

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["failed"]
    assert result.failed == 1
    assert "could not be processed" in text_of(harness.answers()[0])
    assert harness.folder("Approvals/Failed") == [raw]


async def test_a_halo_outage_keeps_the_message_and_nobody_is_told_yet(harness: Harness) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.fail_next(503, times=50)
    raw = gmail_reply("alice@example.com", 1300, "Approve")
    harness.deliver(raw)

    first = await harness.once()

    assert [r.outcome for r in first.reports] == ["pending"] and first.failed == 1
    assert harness.answers() == [] and harness.folder("INBOX") == [raw]
    harness.halo.faults.clear()

    second = await harness.once()

    assert [r.outcome for r in second.reports] == ["approved"]
    assert harness.halo.approver(1300, 4)["result"] == 1
    assert len(harness.answers()) == 1 and harness.folder("INBOX") == []


async def test_machines_are_filed_and_never_answered(harness: Harness) -> None:
    harness.deliver(reply("alice@example.com", "Automatic reply: Approval [ID:1234]",
                          "APPROVE requests will wait until Monday.",
                          extra_headers="Auto-Submitted: auto-replied\n"))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["ignored"]
    assert harness.answers() == [] and harness.posts() == []
    assert len(harness.folder("Approvals/Ignored")) == 1


async def test_an_unauthenticated_sender_is_quarantined_without_an_answer(
    harness: Harness,
) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve", auth=None))

    result = await harness.once()

    assert [r.outcome for r in result.reports] == ["quarantined"]
    assert harness.answers() == [] and harness.posts() == []
    assert harness.halo.approver(1234, 1)["result"] is None
    assert len(harness.folder("Approvals/Quarantine")) == 1


async def test_decisions_of_one_pass_go_to_halo_in_one_post(harness: Harness) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))

    result = await harness.once()

    assert sorted(r.outcome for r in result.reports) == ["approved", "approved", "rejected"]
    assert len(harness.halo.decisions) == 3 and harness.halo.duplicate_decisions == 0
    if harness.halo.behaviour.batch_refused_after is None:
        [post] = harness.posts()
        assert len(post) == 3
    else:  # Halo applied one, then refused: re-read, the other two posted one by one
        assert [len(p) for p in harness.posts()] == [1, 1]
    reads = harness.halo.count("GET", "/api/tickets/1234")
    assert reads == 1 if harness.halo.post_returns_records and \
        harness.halo.behaviour.batch_refused_after is None else reads <= 3


def reply_id(raw: bytes) -> str:
    import email

    return str(email.message_from_bytes(raw)["Message-ID"])


async def test_a_site_template_replaces_the_built_in_one(harness: Harness, tmp_path: Path) -> None:
    (tmp_path / "approved.txt").write_text("Thanks {{ sender }}, ticket {{ ticket_id }} is go.\n")
    harness.overrides = {"answers": {"templates": str(tmp_path)}}
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.deliver(gmail_reply("alice@example.com", 999, "Approve"))

    await harness.once()

    texts = sorted(text_of(a) for a in harness.answers())
    assert texts[0].startswith("Nothing was recorded: ticket 999")  # built-in fallback
    assert texts[1] == "Thanks alice@example.com, ticket 1234 is go."


async def test_a_broken_template_keeps_the_message_and_the_others_go_on(
    harness: Harness, tmp_path: Path
) -> None:
    (tmp_path / "not-approver.txt").write_text("{{ no_such_variable }}\n")
    harness.overrides = {"answers": {"templates": str(tmp_path)}}
    broken = gmail_reply("dave@example.com", 1234, "Approve")
    harness.deliver(broken)
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    result = await harness.once()

    assert sorted(r.outcome for r in result.reports) == ["approved", "pending"]
    assert harness.folder("INBOX") == [broken]
    assert result.failed == 1


async def test_a_backlog_reports_progress(harness: Harness) -> None:
    for ticket in (1234, 1300, 999):
        harness.deliver(gmail_reply("alice@example.com", ticket, "Approve"))
    shown: list[str] = []

    await harness.once(progress=shown.append)

    assert shown[0] == "3 messages, 3 to look up in Halo"
    assert shown[-1] == "filed 3/3"


async def test_a_slow_halo_does_not_hold_up_the_mailbox(harness: Harness) -> None:
    harness.overrides = {"halo": {"pass_deadline_seconds": 0.5}}
    harness.halo.faults.latency = 3.0
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    started = time.monotonic()
    first = await harness.once()

    assert time.monotonic() - started < 2.5  # not 3 s per call, let alone retries
    assert [r.outcome for r in first.reports] == ["pending"]
    harness.halo.faults.latency = 0.0
    second = await harness.once()
    assert [r.outcome for r in second.reports] == ["approved"]


async def test_a_decision_abandoned_past_the_deadline_is_not_posted_twice(
    harness: Harness,
) -> None:
    harness.overrides = {"halo": {"pass_deadline_seconds": 0.5}}
    harness.halo.faults.delay_before_apply = 1.0  # Halo applies it after we gave up
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))

    first = await harness.once()
    assert [r.outcome for r in first.reports] == ["pending"]
    await asyncio.sleep(1.2)
    harness.halo.faults.clear()
    second = await harness.once()

    assert [r.outcome for r in second.reports] == ["approved"]
    assert harness.halo.approver(1300, 4)["result"] == 1
    assert harness.halo.count("POST", "/api/ticketapproval") == 1
    assert harness.halo.duplicate_decisions == 0
    assert len(harness.answers()) == 1


async def test_a_refused_answer_does_not_hold_up_the_others(harness: Harness) -> None:
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))
    harness.sink.refuse_next(1)  # the first recipient of the pass: 451, try later

    first = await harness.once()

    assert (first.answers_sent, first.answers_failed) == (1, 1)
    second = await harness.once()
    assert (second.answers_sent, second.answers_failed) == (1, 0)
    assert sorted(a["To"] for a in harness.answers()) == ["alice@example.com", "bob@example.com"]
