"""A hostile or confused Halo, end to end: answers no Halo gives, through a real pass.

Real Dovecot, real SMTP, the stand-in Halo over real HTTP sending the hostile answer
(``Faults.hostile_next``) for one ticket while another message in the same pass is about
a ticket that answers well. An answer that is not Halo's (a redirect to a maintenance or
sign-in page, HTML, JSON nested too deep, a broken or bombing gzip body) is "Halo
unavailable": the message stays in the mailbox, pending, nobody told, and is decided on a
later pass. JSON that cannot be trusted for a decision (another ticket's id, a ``result``
in words, an entry without ``seq``) is refused with the reason; nothing is posted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from responder.halo.standin import HOSTILE, Hostile
from tests.harness import Harness, gmail_reply, text_of
from tests.test_faults import decisions_for, run_cli

UNAVAILABLE: tuple[Hostile, ...] = ("redirect", "login-page", "deep-json", "broken-gzip",
                                    "gzip-bomb")
REFUSED: dict[Hostile, str] = {
    "other-ticket": "Halo answered with ticket 1301 when asked for ticket 1300",
    "result-text": "approval entry seq 4: result is 'approved', not a number",
    "no-seq": "approvers entry 1 has no seq",
}


def test_every_hostile_answer_of_the_stand_in_is_tested() -> None:
    assert sorted(HOSTILE) == sorted((*UNAVAILABLE, *REFUSED))


async def both_replies(harness: Harness) -> dict[str, tuple[str, str]]:
    """Alice answers ticket 1300 (the hostile one), Bob ticket 1234; one pass."""
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Approve"))
    result = await harness.once()
    return {r.sender or "": (r.outcome, r.reason) for r in result.reports}


@pytest.mark.parametrize("kind", UNAVAILABLE)
async def test_an_answer_that_is_not_halos_leaves_the_message_pending_and_the_pass_goes_on(
    harness: Harness, kind: Hostile
) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.hostile_next(kind, times=10, path_prefix="/api/tickets/1300")

    first = await both_replies(harness)

    assert first["bob@example.com"][0] == "approved"  # the other message was decided
    outcome, reason = first["alice@example.com"]
    assert outcome == "pending" and reason.startswith("Halo unavailable, will retry: ")
    assert harness.halo.approver(1300, 4)["result"] is None
    assert [str(a["To"]) for a in harness.answers()] == ["bob@example.com"]  # Alice: nothing
    assert len(harness.folder("INBOX")) == 1 and harness.folder("Approvals/Failed") == []
    harness.halo.faults.clear()

    second = await harness.once()

    assert [r.outcome for r in second.reports] == ["approved"]  # Halo is back
    assert decisions_for(harness.halo, 1300, 4) == 1 and harness.folder("INBOX") == []


@pytest.mark.parametrize("kind", sorted(REFUSED))
async def test_a_ticket_answer_that_cannot_be_trusted_is_refused_with_the_reason(
    harness: Harness, kind: Hostile
) -> None:
    harness.halo.faults.hostile_next(kind, times=10, path_prefix="/api/tickets/1300")

    first = await both_replies(harness)

    assert first["bob@example.com"][0] == "approved"
    outcome, reason = first["alice@example.com"]
    assert outcome == "failed" and REFUSED[kind] in reason, reason
    assert reason.startswith("Halo's answer cannot be used, not retried: ")
    assert [p for p in harness.posts() if p[0]["ticket_id"] == 1300] == []  # nothing guessed
    alice = next(a for a in harness.answers() if str(a["To"]) == "alice@example.com")
    assert "could not be processed" in text_of(alice)
    assert len(harness.folder("Approvals/Failed")) == 1


@pytest.mark.parametrize("path", ["/api/ticketapproval", "/auth/token"])
async def test_a_redirect_on_the_decision_or_the_token_is_halo_unavailable(
    harness: Harness, path: str
) -> None:
    harness.overrides = {"halo": {"max_retries": 1}}
    harness.halo.faults.hostile_next("redirect", times=10, path_prefix=path)
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    first = await harness.once()

    assert [r.outcome for r in first.reports] == ["pending"]
    assert harness.answers() == [] and harness.folder("Approvals/Failed") == []
    harness.halo.faults.clear()
    second = await harness.once()
    assert [r.outcome for r in second.reports] == ["approved"]
    assert decisions_for(harness.halo, 1234, 1) == 1 and harness.halo.duplicate_decisions == 0


def test_responder_once_keeps_a_reply_pending_through_a_maintenance_redirect(
    harness: Harness, tmp_path: Path
) -> None:
    harness.overrides = {"halo": {"max_retries": 0}}
    config = harness.write_config(tmp_path / "config.toml")
    harness.halo.faults.hostile_next("redirect", times=10, path_prefix="/api/tickets/1300")
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Approve"))

    done = run_cli("once", config)

    text = done.stdout.decode() + done.stderr.decode()
    assert "Traceback" not in text
    assert "HTTP 302" in text
    assert harness.halo.approver(1234, 2)["result"] == 1
    assert harness.halo.approver(1300, 4)["result"] is None
    assert len(harness.folder("INBOX")) == 1 and harness.folder("Approvals/Failed") == []
