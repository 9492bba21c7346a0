"""The plan: which messages need Halo, and what each one's outcome is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from responder.config import FolderSettings
from responder.halo.tickets import Approver, Result, Submission, Ticket
from responder.plan import Outcome, Plan, confirm, folder_for, match, triage
from responder.reading.message import Facts, analyse
from responder.trust.authenticity import Verdict
from tests.harness import gmail_reply, reply

TRUSTED = Verdict(True, "dmarc", "dmarc=pass")
UNTRUSTED = Verdict(False, "none", "no Authentication-Results from a trusted server")
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
TICKET = Ticket(1234, "New laptop", (
    Approver(seq=1, actionnumber=3, emailaddress="Alice@Example.com"),
    Approver(seq=2, actionnumber=3, emailaddress="bob@example.com", result=1),
))


def triaged(raw: bytes, verdict: Verdict = TRUSTED) -> Plan | None:
    return triage(analyse(raw), verdict, own_addresses=frozenset({"approvals@service.example"}),
                  now=NOW, max_age=timedelta(days=30))


def facts(raw: bytes) -> Facts:
    return analyse(raw)


def test_a_good_reply_needs_the_ticket() -> None:
    assert triaged(gmail_reply("alice@example.com", 1234, "Approve")) is None


def test_machines_forgeries_and_wordless_replies_need_no_halo_call() -> None:
    auto = reply("alice@example.com", "Out of office [ID:1234]", "Approve",
                 extra_headers="Auto-Submitted: auto-replied\n")
    assert triaged(auto).outcome is Outcome.IGNORED
    own = gmail_reply("approvals@service.example", 1234, "Approve")
    assert triaged(own).outcome is Outcome.IGNORED
    forged = gmail_reply("alice@example.com", 1234, "Approve")
    assert triaged(forged, UNTRUSTED).outcome is Outcome.QUARANTINED
    two_senders = reply("alice@example.com, bob@example.com", "Re: [ID:1234]", "Approve")
    assert triaged(two_senders).outcome is Outcome.QUARANTINED
    no_word = gmail_reply("alice@example.com", 1234, "Looks good")
    assert triaged(no_word).outcome is Outcome.NO_DECISION
    no_tag = reply("alice@example.com", "Re: the laptop", "Approve")
    assert triaged(no_tag).outcome is Outcome.NO_DECISION


def test_an_old_reply_is_not_acted_on() -> None:
    old = gmail_reply("alice@example.com", 1234, "Approve")
    plan = triage(analyse(old), TRUSTED, own_addresses=frozenset(), now=NOW + timedelta(days=31),
                  max_age=timedelta(days=30))
    assert plan is not None and plan.outcome is Outcome.TOO_OLD


def test_the_sender_is_matched_to_a_pending_approver_case_insensitively() -> None:
    plan = match(facts(gmail_reply("ALICE@example.COM", 1234, "Reject - too dear")), TICKET, {})
    assert plan.outcome is Outcome.SUBMIT
    assert plan.submission == Submission(1234, 1, 3, Result.REJECT, "too dear")


def test_not_an_approver_already_decided_and_not_found() -> None:
    assert match(facts(gmail_reply("dave@example.com", 1234, "Approve")), TICKET, {}).outcome \
        is Outcome.NOT_APPROVER
    assert match(facts(gmail_reply("bob@example.com", 1234, "Approve")), TICKET, {}).outcome \
        is Outcome.ALREADY_DECIDED
    assert match(facts(gmail_reply("alice@example.com", 9, "Approve")), None, {}).outcome \
        is Outcome.TICKET_NOT_FOUND


def test_an_alias_answers_for_its_approver() -> None:
    raw = gmail_reply("alice.private@example.net", 1234, "Approve")
    plan = match(facts(raw), TICKET, {"alice.private@example.net": "alice@example.com"})
    assert plan.submission is not None and plan.submission.seq == 1


def test_confirmation_comes_from_halos_record() -> None:
    planned = Plan(Outcome.SUBMIT, "approve", Submission(1234, 1, 3, Result.APPROVE))
    recorded = Approver(seq=1, actionnumber=3, emailaddress="a@x", result=1)
    assert confirm(planned, recorded).outcome is Outcome.APPROVED
    other = Approver(seq=1, actionnumber=3, emailaddress="a@x", result=2)
    assert confirm(planned, other).outcome is Outcome.ALREADY_DECIDED
    assert confirm(planned, None).outcome is Outcome.FAILED


def test_each_outcome_has_a_folder() -> None:
    folders = FolderSettings()
    assert folder_for(Outcome.APPROVED, folders) == "Approvals/Done"
    assert folder_for(Outcome.NOT_APPROVER, folders) == "Approvals/Unmatched"
    assert folder_for(Outcome.QUARANTINED, folders) == "Approvals/Quarantine"
    assert folder_for(Outcome.PENDING, folders) is None


# -- reply-token binding ([security] require_token) ------------------------------------

TOKENED = Ticket(
    1234,
    "New laptop",
    (Approver(seq=1, actionnumber=3, emailaddress="alice@example.com", token="tok-4f1d9c"),),
)


def with_quote(quoted: str) -> Facts:
    body = f"Approve\n\nOn Sat, 28 Nov 2026, Service Desk wrote:\n\n> {quoted}\n"
    return facts(reply("alice@example.com", "Re: Approval [ID:1234]", body))


def test_a_required_token_must_appear_in_the_quoted_original() -> None:
    bound = match(with_quote("Ref tok-4f1d9c"), TOKENED, {}, require_token=True)
    assert bound.outcome is Outcome.SUBMIT
    missing = match(with_quote("Ref none"), TOKENED, {}, require_token=True)
    assert missing.outcome is Outcome.TOKEN_MISSING and missing.answered
    assert match(with_quote("Ref none"), TOKENED, {}).outcome is Outcome.SUBMIT  # off


def test_an_approver_entry_without_a_token_is_not_bound() -> None:
    plan = match(
        facts(gmail_reply("alice@example.com", 1234, "Approve")), TICKET, {}, require_token=True
    )
    assert plan.outcome is Outcome.SUBMIT


def test_the_token_chooses_among_several_entries_of_one_approver() -> None:
    ticket = Ticket(
        1234,
        "x",
        (
            Approver(seq=1, actionnumber=3, emailaddress="alice@example.com", token="tok-aaaa"),
            Approver(seq=2, actionnumber=3, emailaddress="alice@example.com", token="tok-bbbb"),
        ),
    )
    plan = match(with_quote("Ref tok-bbbb"), ticket, {}, require_token=True)
    assert plan.submission is not None and plan.submission.seq == 2


# -- the pending approver, as Halo means it ------------------------------------------------


def alice(seq: int, **fields: object) -> Approver:
    return Approver(seq=seq, actionnumber=3, emailaddress="alice@example.com", **fields)  # type: ignore[arg-type]


def planned_seqs(ticket: Ticket) -> list[int]:
    plan = match(facts(gmail_reply("alice@example.com", 1234, "Approve")), ticket, {})
    return [s.seq for s in plan.submissions]


def test_pending_means_no_result_and_no_date_of_decision() -> None:
    ticket = Ticket(1234, "x", (alice(1, result=0), alice(2, dateapproved="2026-11-28T08:00Z")))
    assert planned_seqs(ticket) == [1]  # result 0 is pending; a date means decided
    assert Approver(seq=1, actionnumber=1, emailaddress="a@x", result=0).pending


def test_only_decided_entries_is_already_decided_wherever_halo_keeps_them() -> None:
    moved = Ticket(1234, "x", (), history=(alice(1, result=1),))
    plan = match(facts(gmail_reply("alice@example.com", 1234, "Approve")), moved, {})
    assert plan.outcome is Outcome.ALREADY_DECIDED  # not "not an approver"
    assert moved.approver(1) == alice(1, result=1)


def test_every_entry_of_the_person_in_the_step_is_decided_once() -> None:
    ticket = Ticket(1234, "x", (alice(5), alice(1), alice(5)))  # also in a CAB, listed twice
    assert planned_seqs(ticket) == [1, 5]


def test_the_current_step_is_preferred_else_the_earliest() -> None:
    steps = (alice(1, step_id=1, result=1, dateapproved="d"), alice(2, step_id=2),
             alice(3, step_id=3), alice(4))
    assert planned_seqs(Ticket(1234, "x", steps, current_step=2)) == [2, 4]
    assert planned_seqs(Ticket(1234, "x", steps, current_step=None)) == [2, 4]
    assert planned_seqs(Ticket(1234, "x", steps[2:], current_step=2)) == [3, 4]


def test_a_history_copy_of_an_entry_counts_as_decided() -> None:
    ticket = Ticket(1234, "x", (alice(1), alice(2)), history=(alice(1, result=2),))
    assert planned_seqs(ticket) == [2]
    assert ticket.approver(1) == alice(1, result=2)


def test_confirmation_of_several_entries() -> None:
    subs = (Submission(1234, 1, 3, Result.APPROVE), Submission(1234, 5, 3, Result.APPROVE))
    planned = Plan(Outcome.SUBMIT, "approve", subs[0], subs[1:])
    assert confirm(planned, {1: alice(1, result=1), 5: alice(5, result=1)}).outcome \
        is Outcome.APPROVED
    partly = confirm(planned, {1: alice(1, result=1), 5: alice(5, result=2)})
    assert partly.outcome is Outcome.APPROVED and "seq 5 decided by someone else" in partly.reason
    assert confirm(planned, {1: alice(1, result=2), 5: alice(5, result=2)}).outcome \
        is Outcome.ALREADY_DECIDED
    assert confirm(planned, {1: alice(1), 5: None}).outcome is Outcome.FAILED
    dated = confirm(planned, {1: alice(1, dateapproved="d"), 5: alice(5, dateapproved="d")})
    assert dated.outcome is Outcome.APPROVED  # decided, result not shown: ours
