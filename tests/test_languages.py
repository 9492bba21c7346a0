"""Family 7: answers in the approver's language.

The language comes from a localized decision word (``[parsing] languages``) or from the
attribution line / header block the approver's client wrote; de, fr, nl and es
templates ship for every outcome beside English, and a site can add ``templates/<lang>/``.
"""

from __future__ import annotations

import email
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from responder.answers.compose import compose, template_environment
from responder.config import ParsingSettings
from responder.halo.tickets import Ticket
from responder.plan import ANSWERED, Outcome, Plan
from responder.reading.decision import Grammar
from responder.reading.message import Facts, analyse
from tests.clients import LOCALIZED_CLIENTS, Client, apple_mail, gmail, outlook_desktop
from tests.harness import Harness, text_of

ALICE = "Alice Approver <alice@example.com>"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# A phrase of each language's "approved" answer, and of its "no-decision" answer.
APPROVED = {"en": "Your approval of ticket 1234", "de": "Ihre Genehmigung von Ticket 1234",
            "fr": "Votre approbation du ticket 1234", "nl": "Uw goedkeuring van ticket 1234",
            "es": "Su aprobación del ticket 1234"}
NO_DECISION = {"en": "Nothing was recorded", "de": "Nichts wurde erfasst",
               "fr": "Rien n'a été enregistré", "nl": "Er is niets vastgelegd",
               "es": "No se registró nada"}
LOCAL_WORDS = {"de": "Genehmigt", "fr": "Approuvé", "nl": "Goedgekeurd", "es": "Aprobado"}


def answer(facts: Facts, outcome: Outcome, folder: Path | None = None) -> EmailMessage:
    ticket = Ticket(1234, "New laptop", ())
    return compose(template_environment(folder), facts, Plan(outcome, "a reason"), ticket,
                   sender="approvals@service.example", parsing=ParsingSettings())


def html_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError("no html part")


def test_every_outcome_has_a_template_pair_in_every_shipped_language() -> None:
    names = {f"{o.value}.{ext}" for o in ANSWERED for ext in ("txt", "html")}
    for language in ("de", "fr", "nl", "es"):
        assert names <= {p.name for p in (TEMPLATES / language).iterdir()}, language


@pytest.mark.parametrize("lang", ["de", "fr", "nl", "es"])
@pytest.mark.parametrize("client", LOCALIZED_CLIENTS.values(), ids=LOCALIZED_CLIENTS.keys())
def test_the_clients_attribution_chooses_the_language(client: Client, lang: str) -> None:
    facts = analyse(client(ALICE, "Approve"))
    assert facts.language == "en"
    facts = analyse(client(ALICE, "Approve", lang=lang))
    assert (facts.decision, facts.language) == ("approve", lang)
    approved = answer(facts, Outcome.APPROVED)
    assert APPROVED[lang] in text_of(approved)
    assert APPROVED[lang].split(" ")[1] in html_of(approved)
    assert approved["Content-Language"] == lang
    assert NO_DECISION[lang] in text_of(answer(facts, Outcome.NO_DECISION))


@pytest.mark.parametrize("lang", ["de", "fr", "nl", "es"])
def test_a_localized_decision_word_chooses_the_language(lang: str) -> None:
    grammar = Grammar.build([lang])
    facts = analyse(gmail(ALICE, LOCAL_WORDS[lang]), None, grammar)  # English Gmail
    assert (facts.decision, facts.language) == ("approve", lang)
    assert APPROVED[lang] in text_of(answer(facts, Outcome.APPROVED))


@pytest.mark.parametrize("outcome", sorted(ANSWERED), ids=str)
@pytest.mark.parametrize("lang", ["de", "fr", "nl", "es"])
def test_every_outcome_renders_in_every_language(outcome: Outcome, lang: str) -> None:
    facts = analyse(outlook_desktop(ALICE, "Reject - zu teuer", lang=lang))
    message = email.message_from_bytes(answer(facts, outcome).as_bytes())
    text = text_of(message)
    assert "1234" in text or outcome is Outcome.FAILED
    assert "Nothing was" not in text and "This is an automatic answer" not in text
    assert f'<html lang="{lang}">' in html_of(message)


def test_english_and_unknown_languages_get_english_answers() -> None:
    assert "Your approval" in text_of(answer(analyse(apple_mail(ALICE, "Approve")),
                                             Outcome.APPROVED))
    italian = analyse(apple_mail(ALICE, "Approvato").replace(b"wrote:", b"ha scritto:"),
                      None, Grammar.build(["it"]))
    assert (italian.decision, italian.language) == ("approve", "it")
    reply = answer(italian, Outcome.APPROVED)  # no Italian templates ship
    assert "Your approval" in text_of(reply)
    assert reply["Content-Language"] is None


def test_a_site_adds_its_own_language(tmp_path: Path) -> None:
    (tmp_path / "it").mkdir()
    (tmp_path / "it" / "approved.txt").write_text("La sua approvazione del ticket {{ ticket_id }}"
                                                  " è registrata.\n")
    italian = analyse(gmail(ALICE, "Approvato"), None, Grammar.build(["it"]))
    reply = answer(italian, Outcome.APPROVED, tmp_path)
    assert "La sua approvazione del ticket 1234" in text_of(reply)
    assert "approval</strong> of ticket 1234" in html_of(reply)  # no it/approved.html


async def test_a_german_outlook_approval_is_answered_in_german(harness: Harness) -> None:
    harness.overrides = {"parsing": {"languages": ["de"]}}
    harness.deliver(outlook_desktop(ALICE, "Genehmigt\nBudget ist da.", lang="de"))
    harness.deliver(gmail("bob@example.com", "Bonjour,\nApprove", lang="fr"))

    result = await harness.once()

    assert sorted(r.outcome for r in result.reports) == ["approved", "approved"]
    answers = {a["To"]: a for a in harness.answers()}
    assert "Ihre Genehmigung von Ticket 1234" in text_of(answers["alice@example.com"])
    assert "Ihre Notiz: Budget ist da." in text_of(answers["alice@example.com"])
    assert "Votre approbation du ticket 1234" in text_of(answers["bob@example.com"])
