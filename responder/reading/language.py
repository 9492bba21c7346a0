# ruff: noqa: RUF001 - the localized words are meant literally
"""Which language the approver's mail client writes in, read from what it quoted.

A reply's attribution line ("Am … schrieb …:", "Le … a écrit :") and Outlook's header
block ("Von:/Gesendet:/Betreff:", "De :/Envoyé :/Objet :") are written by the client in
its user's language, so they say which language to answer in when the decision word
itself does not. Each language scores one point per line with one of its markers in the
first lines of the quoted original; the best score wins, and a tie says nothing.
"""

from __future__ import annotations

import re

HEAD_LINES = 8  # non-blank lines at the top of the original: the attribution or header block

_MARKERS: dict[str, re.Pattern[str]] = {
    language: re.compile(pattern, re.IGNORECASE)
    for language, pattern in {
        "en": r"^(?:from|sent|to|subject|date|cc)[ \t]*:|\bwrote[ \t]*:|original message|"
              r"forwarded message",
        "de": r"^(?:von|gesendet|an|betreff|datum|kopie)[ \t]*:|\bschrieb\b|"
              r"urspr[üu]ngliche nachricht|weitergeleitete nachricht|original-nachricht",
        "fr": r"^(?:de|envoy[ée](?: le)?|[àa]|objet|copie [àa])[ \t\u00a0]*:|"
              r"a [ée]crit[ \t\u00a0]*:|message d['’]origine|message transf[ée]r[ée]",
        "nl": r"^(?:van|verzonden|aan|onderwerp|datum)[ \t]*:|\bschreef\b|oorspronkelijk bericht|"
              r"doorgestuurd bericht",
        "es": r"^(?:de|enviado(?: el)?|para|asunto|fecha|cc)[ \t]*:|\bescribi[óo][ \t]*:|"
              r"mensaje original|mensaje reenviado",
        "it": r"^(?:da|inviato|a|oggetto|data)[ \t]*:|ha scritto[ \t]*:|messaggio originale|"
              r"messaggio inoltrato",
        "pt": r"^(?:de|enviado|enviada em|para|assunto|data)[ \t]*:|escreveu[ \t]*:|"
              r"mensagem original|mensagem encaminhada",
    }.items()
}
MAX_LINE_CHARS = 400


def language_of_original(original: str) -> str | None:
    """The language of the attribution or header block at the top of ``original``."""
    lines = [line.strip(" \t>*")[:MAX_LINE_CHARS] for line in original.splitlines()[:40]]
    head = [line for line in lines if line][:HEAD_LINES]
    scores = {
        language: sum(1 for line in head if pattern.search(line))
        for language, pattern in _MARKERS.items()
    }
    best = max(scores.values(), default=0)
    winners = [language for language, score in scores.items() if score == best]
    return winners[0] if best and len(winners) == 1 else None
