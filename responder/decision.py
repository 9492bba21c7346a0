"""The decision grammar: the first word of what the person wrote now decides.

``APPROVE``, ``approved.``, ``Reject!`` decide; anything else as the first word
("not approved", "please approve") does not, and neither does a question ("approve?",
"approve or reject?"). When the first word decides, the rest of that first paragraph
is the note, even if it contains the other word: "REJECT - not approved this quarter".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


BASE_WORDS: dict[str, Decision] = {
    "approve": Decision.APPROVE,
    "approved": Decision.APPROVE,
    "reject": Decision.REJECT,
    "rejected": Decision.REJECT,
}

# Off by default; switched on per language with [parsing] languages = ["de", ...].
LANGUAGE_WORDS: dict[str, dict[str, Decision]] = {
    "de": {"genehmigt": Decision.APPROVE, "genehmigen": Decision.APPROVE,
           "freigegeben": Decision.APPROVE, "abgelehnt": Decision.REJECT,
           "ablehnen": Decision.REJECT},
    "fr": {"approuvé": Decision.APPROVE, "approuve": Decision.APPROVE,
           "accepté": Decision.APPROVE, "rejeté": Decision.REJECT,
           "refusé": Decision.REJECT, "rejeter": Decision.REJECT},
    "es": {"aprobado": Decision.APPROVE, "aprobar": Decision.APPROVE,
           "rechazado": Decision.REJECT, "rechazar": Decision.REJECT},
    "it": {"approvato": Decision.APPROVE, "approvo": Decision.APPROVE,
           "rifiutato": Decision.REJECT, "respinto": Decision.REJECT},
    "nl": {"goedgekeurd": Decision.APPROVE, "akkoord": Decision.APPROVE,
           "afgewezen": Decision.REJECT, "afkeuren": Decision.REJECT},
    "pt": {"aprovado": Decision.APPROVE, "aprovar": Decision.APPROVE,
           "rejeitado": Decision.REJECT, "rejeitar": Decision.REJECT},
}

# Words that turn a decision word into a choice still to be made: "approve or reject".
_ALTERNATIVE = {"or", "/", "oder", "ou", "o", "of", "eller"}
# Quotes, dashes and brackets around a word (en/em dashes and curly quotes as escapes);
# not "?": a question never decides.
_EDGE_PUNCTUATION = "\"'`*_~.,;:!-\u2013\u2014()[]<>\u00ab\u00bb\u201c\u201d\u2018\u2019"
_NOTE_LEAD = re.compile("^[\\s\\-\u2013\u2014:;,.!/|]+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")


def _normalise(word: str) -> str:
    return unicodedata.normalize("NFC", word).casefold()


@dataclass(frozen=True)
class Grammar:
    """Which words decide (case- and accent-normalised)."""

    words: dict[str, Decision]

    @classmethod
    def build(
        cls,
        languages: Iterable[str] = (),
        approve_words: Iterable[str] = (),
        reject_words: Iterable[str] = (),
    ) -> Grammar:
        words = dict(BASE_WORDS)
        for language in languages:
            words.update(LANGUAGE_WORDS.get(language.lower(), {}))
        words.update({_normalise(w): Decision.APPROVE for w in approve_words})
        words.update({_normalise(w): Decision.REJECT for w in reject_words})
        return cls({_normalise(w): d for w, d in words.items()})


DEFAULT_GRAMMAR = Grammar.build()


@dataclass(frozen=True)
class Read:
    decision: Decision | None
    note: str | None


def read_decision(text: str, grammar: Grammar = DEFAULT_GRAMMAR) -> Read:
    """Read the decision and note from the new text of a message."""
    paragraph = _PARAGRAPH_BREAK.split(text.strip(), maxsplit=1)[0]
    tokens = paragraph.split(maxsplit=2)
    if not tokens:
        return Read(None, None)
    first = tokens[0]
    if "?" in first:
        return Read(None, None)
    decision = grammar.words.get(_normalise(first.strip(_EDGE_PUNCTUATION)))
    if decision is None:
        return Read(None, None)
    rest = paragraph.split(maxsplit=1)[1] if len(tokens) > 1 else ""
    if _is_alternative(tokens[1] if len(tokens) > 1 else "", first):
        return Read(None, None)  # "approve or reject?", "approve ?"
    note = " ".join(_NOTE_LEAD.sub("", rest).split())
    return Read(decision, note or None)


def _is_alternative(next_token: str, first: str) -> bool:
    """"approve or reject", "approve ?": a choice offered or asked, not a choice made."""
    if next_token.startswith("?"):
        return True
    return _normalise(next_token.strip(_EDGE_PUNCTUATION.replace("/", ""))) in _ALTERNATIVE
