"""Every person who replies hears back: past the hourly limit, in one digest.

Real Dovecot, the SMTP sink and the stand-in Halo over HTTP; ``responder run`` as a
subprocess where ``kill -9`` is the point.
"""

from __future__ import annotations

import email
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from email.message import Message
from pathlib import Path

import pytest

from responder.answers.compose import template_environment
from responder.answers.digest import DIGEST, Entry, compose_digest
from responder.ledger import Ledger
from responder.plan import ANSWERED
from responder.reading.message import RESPONDER_HEADER
from tests.harness import Harness, gmail_reply, text_of

REPO = Path(__file__).resolve().parent.parent
BOSS = "boss@example.com"


def tickets_for(harness: Harness, count: int, first: int = 7000) -> list[int]:
    ids = list(range(first, first + count))
    for ticket_id in ids:
        harness.halo.add_ticket(ticket_id, f"Purchase {ticket_id}",
                                [{"emailaddress": BOSS, "seq": 1, "actionnumber": 1}])
    return ids


def approvals(harness: Harness, ids: list[int], word: str = "Approve") -> list[str]:
    """Deliver one reply per ticket; their Message-IDs, in order."""
    sent = []
    for ticket_id in ids:
        raw = gmail_reply(BOSS, ticket_id, f"{word} - batch {ticket_id}",
                          msgid=f"<reply{ticket_id}@example.com>")
        harness.deliver(raw)
        sent.append(f"<reply{ticket_id}@example.com>")
    return sent


def split(answers: list[Message]) -> tuple[list[Message], list[Message]]:
    digests = [a for a in answers if a[RESPONDER_HEADER] == DIGEST]
    return [a for a in answers if a[RESPONDER_HEADER] != DIGEST], digests


def covered(answers: list[Message]) -> Counter[str]:
    """How often each reply is answered: alone (In-Reply-To) or in a digest (References)."""
    singles, digests = split(answers)
    count = Counter(str(a["In-Reply-To"]) for a in singles)
    for digest in digests:
        count.update(str(digest["References"]).split())
    return count


async def test_an_approver_over_the_limit_hears_back_in_one_digest(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.overrides = {"security": {"answers_per_sender_per_hour": 3}}
    ids = tickets_for(harness, 8)
    replies = approvals(harness, ids)

    with caplog.at_level(logging.INFO, logger="responder"):
        result = await harness.once()

    said = [r.getMessage() for r in caplog.records if "over the limit" in r.getMessage()]
    assert said == [f"5 answers over the limit of 3 per hour held for a digest ({BOSS}: 5); "
                    f"1 digest queued, covering 5 answers ({BOSS}: 5)"]  # once, not per message

    assert [r.outcome for r in result.reports] == ["approved"] * 8
    assert len(harness.halo.decisions) == 8
    singles, [digest] = split(harness.answers())
    assert [str(a["In-Reply-To"]) for a in singles] == replies[:3]
    assert str(digest["In-Reply-To"]) == replies[-1]  # the latest
    assert str(digest["References"]).split() == replies[3:]  # every reply it answers
    assert digest["To"] == BOSS and digest["Auto-Submitted"] == "auto-replied"
    assert digest["Subject"] == f"Re: Approval required [ID:{ids[-1]}]"
    text = text_of(digest)
    assert "This email answers 5 replies:" in text
    for ticket_id in ids[3:]:
        assert (f"Ticket {ticket_id} (Purchase {ticket_id}): your approval is recorded in Halo."
                f" Your note: batch {ticket_id}") in text
    assert str(ids[0]) not in text
    [html] = [p for p in digest.walk() if p.get_content_type() == "text/html"]
    assert f"<li>Ticket {ids[3]} (Purchase {ids[3]})" in html.get_payload(decode=True).decode()
    assert harness.folder("INBOX") == []


async def test_the_digest_names_each_outcome(harness: Harness) -> None:
    """Not only confirmations: whatever each answer would have said."""
    harness.overrides = {"security": {"answers_per_sender_per_hour": 0}}
    [ticket] = tickets_for(harness, 1)
    harness.deliver(gmail_reply(BOSS, ticket, "Reject - too expensive"))
    harness.deliver(gmail_reply(BOSS, ticket, "Approve"))  # decided by the first
    harness.deliver(gmail_reply(BOSS, 424242, "Approve"))
    harness.deliver(gmail_reply(BOSS, ticket, "Thanks!"))

    await harness.once()

    [digest] = harness.answers()
    text = text_of(digest)
    assert f"Ticket {ticket} (Purchase {ticket}): your rejection is recorded in Halo." in text
    assert "Your note: too expensive" in text
    assert "nothing changed: your decision had already been recorded" in text
    assert "Ticket 424242: nothing recorded: the ticket could not be found in Halo" in text
    assert "nothing recorded (no APPROVE or REJECT as the first word)" in text


async def test_digests_are_spaced_and_wait_in_the_ledger(harness: Harness) -> None:
    harness.overrides = {"security": {"answers_per_sender_per_hour": 1, "digest_minutes": 10}}
    ids = tickets_for(harness, 6)
    approvals(harness, ids[:3])
    await harness.once()
    assert [len(group) for group in split(harness.answers())] == [1, 1]

    later = approvals(harness, ids[3:])
    await harness.once()  # a digest went out just now: these wait
    assert len(harness.answers()) == 2
    assert harness.folder("INBOX") == []  # filed all the same: the ledger holds the answers
    ledger = Ledger(harness.settings.state.path)
    assert ledger.outbox_size() == 3
    ledger.close()

    harness.overrides["security"]["digest_minutes"] = 0  # ... as if ten minutes had passed
    await harness.once()
    _, [_, second] = split(harness.answers())
    assert str(second["References"]).split() == later
    assert covered(harness.answers()) == Counter({m: 1 for m in
                                                  [f"<reply{i}@example.com>" for i in ids]})


async def test_a_refused_digest_is_retried_and_sent_once(harness: Harness) -> None:
    """The digest is queued as one unit: SMTP trouble delays it, nothing is doubled, and
    answers held meanwhile wait for a digest of their own (one per person per pass)."""
    harness.overrides = {"security": {"answers_per_sender_per_hour": 2, "digest_minutes": 0}}
    ids = tickets_for(harness, 7)
    replies = approvals(harness, ids[:5])
    harness.sink.refuse_next(3)  # both answers, then the digest
    first = await harness.once()
    assert (first.answers_sent, first.answers_failed, first.digests_sent) == (0, 3, 0)
    assert harness.answers() == []

    replies += approvals(harness, ids[5:])
    second = await harness.once()  # a new process, as after a restart
    assert (second.answers_sent, second.answers_failed, second.digests_sent) == (3, 0, 1)
    _, [digest] = split(harness.answers())
    assert str(digest["References"]).split() == replies[2:5]

    third = await harness.once()
    assert (third.answers_sent, third.answers_failed) == (1, 0)
    _, [_, later] = split(harness.answers())
    assert str(later["References"]).split() == replies[5:]
    assert covered(harness.answers()) == Counter({r: 1 for r in replies})


async def test_only_authenticated_people_get_past_the_limit(harness: Harness) -> None:
    """Unauthenticated mail is quarantined unanswered anyway; with checks off, the limit
    is the only brake on a loop, so nobody gets a digest."""
    harness.overrides = {"security": {"answers_per_sender_per_hour": 2, "policy": "off"}}
    ids = tickets_for(harness, 4)
    approvals(harness, ids)
    await harness.once()
    assert [len(group) for group in split(harness.answers())] == [2, 0]
    assert len(harness.halo.decisions) == 4


# -- the digest's own templates ----------------------------------------------------------

TEMPLATES = REPO / "templates"
INTRO = {"en": "This email answers 2 replies:", "de": "Diese E-Mail beantwortet 2 Nachrichten:",
         "fr": "Cet e-mail répond à 2 messages :", "nl": "Deze e-mail beantwoordt 2 berichten:",
         "es": "Este correo responde a 2 mensajes:"}
RECORDED = {"en": "your approval is recorded in Halo",
            "de": "Ihre Genehmigung ist in Halo erfasst",
            "fr": "votre approbation est enregistrée dans Halo",
            "nl": "uw goedkeuring is vastgelegd in Halo",
            "es": "su aprobación está registrada en Halo"}


def entry(ticket_id: int, outcome: str, language: str | None, sent_at: str) -> Entry:
    return Entry(ticket_id, f"Purchase {ticket_id}", outcome, "no APPROVE or REJECT", "approve",
                 "ok", f"Re: Approval required [ID:{ticket_id}]", f"<r{ticket_id}@x>", sent_at,
                 language)


@pytest.mark.parametrize("lang", ["en", "de", "fr", "nl", "es"])
def test_a_digest_is_written_in_the_language_of_the_latest_reply(lang: str) -> None:
    older = entry(1, "no-decision", "fr" if lang != "fr" else "de", "2026-11-28T09:00:00+00:00")
    latest = entry(2, "approved", lang, "2026-11-28T10:00:00+00:00")
    digest = compose_digest(template_environment(None), BOSS, [latest, older],
                            sender="approvals@service.example", start_tag="[ID:", end_tag="]")
    message = email.message_from_bytes(digest.as_bytes())
    text = text_of(message)
    assert INTRO[lang] in text and RECORDED[lang] in text
    assert "(no APPROVE or REJECT)" in text  # the reason, as the ledger has it
    [html] = [p for p in message.walk() if p.get_content_type() == "text/html"]
    assert f'<html lang="{lang}">' in html.get_payload(decode=True).decode() or lang == "en"
    assert message["Content-Language"] == (None if lang == "en" else lang)
    assert message["In-Reply-To"] == "<r2@x>"  # the latest by its Date:, not by position
    assert message["References"] == "<r2@x> <r1@x>"


def test_every_shipped_language_has_the_digest_pair() -> None:
    for language in ("de", "fr", "nl", "es"):
        names = {p.name for p in (TEMPLATES / language).iterdir()}
        assert {"digest.txt", "digest.html", "_digest_outcomes.txt"} <= names, language


@pytest.mark.parametrize("lang", ["en", "de", "fr", "nl", "es"])
def test_every_outcome_has_a_phrase_in_every_language(lang: str) -> None:
    """A digest names each outcome in words, never by its internal name."""
    folder = "" if lang == "en" else f"{lang}/"
    env = template_environment(None)
    phrases = env.get_template(f"{folder}_digest_outcomes.txt").module
    assert set(phrases.outcomes) == {o.value for o in ANSWERED}  # type: ignore[attr-defined]


# -- forty approvals, Halo faults, kill -9 ----------------------------------------------


class Service:
    """``responder run`` as a process of its own, to kill -9 and start again."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "responder", "run", "--config", str(self.config)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def wait_until(condition: object, timeout: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(
    ("batch", "confirm"),
    [(True, "response"), (False, "reread")],
    ids=["one-post-confirmed-by-its-answer", "post-each-confirmed-by-rereading"],
)
def test_forty_approvals_under_faults_and_kill_9_each_answered_once(
    harness: Harness, tmp_path: Path, batch: bool, confirm: str
) -> None:
    harness.overrides = {
        "security": {"digest_minutes": 0},  # the spacing has its own test
        "halo": {"timeout": 2.0, "max_retries": 1, "batch_decisions": batch,
                 "confirm": confirm},
        "service": {"retry_seconds": 0.5},
    }
    ids = tickets_for(harness, 40, first=9000)
    service = Service(harness.write_config(tmp_path / "config.toml"), tmp_path / "run.log")
    halo = harness.halo
    service.start()
    replies: list[str] = []
    try:
        for round_, batch_ids in enumerate([ids[:12], ids[12:20], ids[20:32], ids[32:]]):
            if round_ == 1:
                halo.faults.error_rate = 0.3
            before = len(halo.decisions)
            if round_ in (0, 2):  # kill -9 with a decision POST applied but not answered
                halo.faults.delay_after_apply = 3.0
            replies += approvals(harness, batch_ids)
            if round_ in (0, 2):
                assert wait_until(lambda: len(halo.decisions) > before, 15)  # noqa: B023
                time.sleep(0.3)
                service.kill()
                halo.faults.delay_after_apply = 0.0
                service.start()
            elif round_ == 3:  # kill -9 at a random moment of the work
                time.sleep(0.5 + (os.getpid() % 7) / 10)
                service.kill()
                service.start()
            else:
                time.sleep(1.0)
        halo.faults.clear()

        def inbox_empty() -> bool:
            try:
                return not harness.folder("INBOX")
            except KeyError:  # a message moved between the listing and its fetch
                return False

        def settled() -> bool:
            done = all(halo.approver(t, 1)["result"] is not None for t in ids)
            return done and inbox_empty() and sum(
                covered(harness.answers()).values()) >= len(replies)

        assert wait_until(settled, 60), service.log.read_text()[-3000:]
        time.sleep(1.0)  # a last pass would show anything doubled
        assert service.stop() == 0
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.kill()

    assert covered(harness.answers()) == Counter({r: 1 for r in replies})
    singles, digests = split(harness.answers())
    assert len(singles) == 10 and digests  # the hourly limit, then digests
    assert halo.duplicate_decisions == 0
    assert sorted(d["ticket_id"] for d in halo.decisions) == ids
    assert harness.folder("INBOX") == []
    log = service.log.read_text()
    assert "not answering" not in log
    assert "held for a digest" in log
    assert "not posting again" in log  # the kills did land with a POST in flight
