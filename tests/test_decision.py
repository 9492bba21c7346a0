"""The decision grammar: the first word of the new text decides, nothing else does."""

import pytest

from responder.reading.decision import Decision, Grammar, read_decision


@pytest.mark.parametrize(
    ("text", "decision", "note"),
    [
        ("APPROVE", Decision.APPROVE, None),
        ("approve", Decision.APPROVE, None),
        ("Approved.", Decision.APPROVE, None),
        ("Approved!", Decision.APPROVE, None),
        ("**Approve**", Decision.APPROVE, None),
        ("Approved, thanks.\n\nAlice", Decision.APPROVE, "thanks."),
        ("reject", Decision.REJECT, None),
        ("REJECTED: too expensive", Decision.REJECT, "too expensive"),
        ("REJECT - not approved this quarter", Decision.REJECT, "not approved this quarter"),
        ("Approve - but please reject the extended warranty",
         Decision.APPROVE, "but please reject the extended warranty"),
        ("  \n\nApprove\nwith a second line\n\nsecond paragraph",
         Decision.APPROVE, "with a second line"),
    ],
)
def test_the_first_word_decides_and_the_rest_of_the_paragraph_is_the_note(
    text: str, decision: Decision, note: str | None
) -> None:
    read = read_decision(text)
    assert (read.decision, read.note) == (decision, note)


@pytest.mark.parametrize(
    "text",
    [
        "not approved",
        "please approve",
        "I approve",
        "approve?",
        "Approve ?",
        "approve or reject?",
        "Approve/reject?",
        "approval",
        "",
        "   ",
        "Thanks!\n\nApprove",
    ],
)
def test_anything_else_is_no_decision(text: str) -> None:
    assert read_decision(text).decision is None


def test_language_words_are_off_by_default_and_on_per_language() -> None:
    assert read_decision("Genehmigt").decision is None
    german = Grammar.build(languages=["de"])
    assert read_decision("Genehmigt.", german).decision is Decision.APPROVE
    assert read_decision("ABGELEHNT - zu teuer", german).note == "zu teuer"
    french = Grammar.build(languages=["fr"])
    assert read_decision("Approuvé", french).decision is Decision.APPROVE
    assert read_decision("REJETÉ", french).decision is Decision.REJECT


def test_own_words_can_be_added() -> None:
    grammar = Grammar.build(approve_words=["OK"], reject_words=["Declined"])
    assert read_decision("ok, go ahead", grammar).decision is Decision.APPROVE
    assert read_decision("declined", grammar).decision is Decision.REJECT
