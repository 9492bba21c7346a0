# ruff: noqa: RUF001, RUF002, RUF003 - the full-width marks and localized words are meant literally
"""The decision grammar: the first word of what the person wrote now decides.

A short greeting alone on the first line ("Hi Halo,", "Dear team,", "Hallo,") is skipped
first; a longer first line is the first paragraph ("Hi, I can't approve this" decides
nothing).
``APPROVE``, ``approved.``, ``Reject!`` decide; anything else as the first word
("not approved", "please approve") does not, and neither does a question ("approve?",
"approve or reject?"). When the first word decides, the rest of that first paragraph
is the note, even if it contains the other word: "REJECT - not approved this quarter".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
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
_NOTE_LEAD = re.compile("^[\\s\\-\u2013\u2014:;,.!/|\u3001\u3002\uff01\uff0c\uff0e\uff1a\uff1b]+")
# Chinese and Japanese keyboards write punctuation full width and with no space after the
# word before it ("REJECT，预算不够", "APPROVE。"): the word ends at the first such mark.
_FULL_WIDTH_MARKS = re.compile(
    "[\u3001\u3002\u3008-\u3011\uff01\uff08\uff09\uff0c\uff0e\uff1a\uff1b\uff1f"
    "\uff61\uff64]")
_FULL_WIDTH_QUESTION = "\uff1f"  # "approve？" asks
_FULL_WIDTH_EDGES = "\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011\uff08\uff09"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r]*\n")


def _normalise(word: str) -> str:
    return unicodedata.normalize("NFC", word).casefold()


@dataclass(frozen=True)
class Grammar:
    """Which words decide (case- and accent-normalised)."""

    words: dict[str, Decision]
    languages: dict[str, str] = field(default_factory=dict)  # localized word -> language

    @classmethod
    def build(
        cls,
        languages: Iterable[str] = (),
        approve_words: Iterable[str] = (),
        reject_words: Iterable[str] = (),
    ) -> Grammar:
        words = dict(BASE_WORDS)
        word_languages: dict[str, str] = {}
        for language in languages:
            localized = LANGUAGE_WORDS.get(language.lower(), {})
            words.update(localized)
            word_languages.update({_normalise(w): language.lower() for w in localized})
        words.update({_normalise(w): Decision.APPROVE for w in approve_words})
        words.update({_normalise(w): Decision.REJECT for w in reject_words})
        for word in (*approve_words, *reject_words):
            word_languages.pop(_normalise(word), None)  # a site's own word has no language
        return cls({_normalise(w): d for w, d in words.items()}, word_languages)


DEFAULT_GRAMMAR = Grammar.build()


@dataclass(frozen=True)
class Read:
    decision: Decision | None
    note: str | None
    language: str | None = None  # the language of a localized decision word


def read_decision(text: str, grammar: Grammar = DEFAULT_GRAMMAR) -> Read:
    """Read the decision and note from the new text of a message."""
    paragraph = _PARAGRAPH_BREAK.split(_without_greeting(text.strip(), grammar), maxsplit=1)[0]
    tokens = paragraph.split(maxsplit=2)
    if not tokens:
        return Read(None, None)
    first = tokens[0]
    first, glued = _split_full_width(first)
    if "?" in first or glued.startswith(_FULL_WIDTH_QUESTION):
        return Read(None, None)
    word = _normalise(first.strip(_EDGE_PUNCTUATION + _FULL_WIDTH_EDGES))
    decision = grammar.words.get(word)
    if decision is None:
        return Read(None, None)
    rest = paragraph.split(maxsplit=1)[1] if len(tokens) > 1 else ""
    if glued:  # "REJECT，预算不够": what follows the full-width mark begins the note
        rest = f"{glued} {rest}" if rest else glued
    if _is_alternative(tokens[1] if len(tokens) > 1 else "", first) or (
            glued and _offers_a_choice(glued)):
        return Read(None, None)  # "approve or reject?", "approve ?", "approve，还是reject？"
    note = " ".join(_NOTE_LEAD.sub("", rest).split())
    return Read(decision, note or None, grammar.languages.get(word))


_GREETING = re.compile(
    r"(?:hi|hello|hey|hiya|dear|greetings|good (?:morning|afternoon|evening|day)|morning|"
    r"hallo|hi zusammen|liebe|lieber|sehr geehrte[rs]?|guten (?:morgen|tag|abend)|moin|servus|"
    r"gr[üu](?:ß|ss) gott|gr[üu]ezi|bonjour|bonsoir|salut|cher|ch[èe]re|madame|monsieur|"
    r"hola|buenos d[íi]as|buenas(?: tardes| noches)?|estimad[oa]s?|querid[oa]s?|"
    r"beste|geachte|goedemorgen|goedemiddag|goedenavond|hoi|dag|"
    r"ciao|buongiorno|buonasera|gentile|caro|cara|ol[áa]|bom dia|boa tarde|prezad[oa]|hej|"
    r"здравствуйте|здравствуй|добрый день|доброе утро|добрый вечер|привет|доброго дня|"
    r"уважаем(?:ый|ая|ые)|вітаю|dzie[ńn] dobry|witam|dobr[ýy] den|merhaba|"
    r"你好|您好|こんにちは|안녕하세요|γεια σας|שלום|مرحبا)"
    r"(?=[\s,!.:;，！。]|$)",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"[^\W\d_][\w.'\u2019-]{0,30}")
_GREETING_CLOSE = ",!.:;，！。"
MAX_GREETING_WORDS = 5  # "Dear Service Desk team," and no longer


def _without_greeting(text: str, grammar: Grammar) -> str:
    """The text without a salutation alone on its first line ("Hi Halo," / "Hallo,")."""
    first, newline, rest = text.partition("\n")
    if newline and _is_greeting(first.strip(), grammar):
        return rest.strip()
    return text


def _is_greeting(line: str, grammar: Grammar) -> bool:
    """A greeting word and at most a few name words, with nothing after the closing comma."""
    opening = _GREETING.match(line)
    if not opening or len(line) > 60:
        return False
    names = line[opening.end():].strip().rstrip(_GREETING_CLOSE).strip()
    if names[:1] in (",", "，") and names[1:].strip()[:1].isupper():
        names = names[1:].strip()  # "Здравствуйте, Service.": The Bat!'s greeting
    words = names.split()
    if len(words) > MAX_GREETING_WORDS or any(c in names for c in _GREETING_CLOSE + "?"):
        return False
    return all(
        _NAME_WORD.fullmatch(word)
        and _normalise(word.strip(_EDGE_PUNCTUATION)) not in grammar.words
        for word in words
    )


def _split_full_width(token: str) -> tuple[str, str]:
    """The word before a full-width mark glued to it, and the rest from that mark on."""
    mark = _FULL_WIDTH_MARKS.search(token)
    if mark is None or mark.start() == 0:
        return token, ""
    return token[: mark.start()], token[mark.start():]


# "or" in the languages whose keyboards write full width (no space before the next word).
_GLUED_ALTERNATIVES = ("或", "还是", "還是", "または", "もしくは", "또는")


def _offers_a_choice(glued: str) -> bool:
    """"，还是REJECT？", "，or reject?": the text after a full-width mark offers a choice."""
    after = _NOTE_LEAD.sub("", glued)
    if after.startswith(_GLUED_ALTERNATIVES):
        return True
    words = after.split(maxsplit=1)
    return bool(words) and _is_alternative(words[0], "")


def is_greeting(text: str) -> bool:
    """``text`` is one short greeting line alone ("Hi Halo," / "Здравствуйте, Service.")."""
    line = text.strip()
    return bool(line) and "\n" not in line and _is_greeting(line, DEFAULT_GRAMMAR)


def _is_alternative(next_token: str, first: str) -> bool:
    """"approve or reject", "approve ?": a choice offered or asked, not a choice made."""
    if next_token.startswith("?"):
        return True
    return _normalise(next_token.strip(_EDGE_PUNCTUATION.replace("/", ""))) in _ALTERNATIVE
