# ruff: noqa: RUF001 - the localized words and apostrophes are meant literally
"""Text the mail system puts above a person's words, and the tags it puts before subjects.

Exchange Online's first-contact safety tip ("You don't often get email from …"), the
external-sender banners that transport rules and gateways (Mimecast, Proofpoint,
Barracuda …) prepend ("[EXTERNAL]", "CAUTION: This email originated from outside of the
organization …") and the same tags before the subject are not what the person wrote.
``skip_banners`` drops them from the top of a body before the reply is read, so they can
neither hide a decision under them nor make one with their own words.

A banner block starts with a line a banner starts with (built in, or a site's own
``[parsing] banner_patterns``) and goes on over the lines that wrap it: a line that
continues an unfinished sentence, or one in banner words ("outside", "sender",
"attachments" …) that does not start with a decision word. A blank line ends it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

MAX_LINE_CHARS = 400
MAX_BANNER_LINES = 12  # lines of one banner block; a longer run is the person's text
MAX_BANNERS = 4  # blocks skipped at the top of one body

_TAG_WORDS = (
    r"external(?:[ \t]+(?:e-?mail|sender|message|mail))?|ext|extern|externe?|externo|"
    r"esterno|exterieur|extérieur|caution|warning|suspicious|phish(?:ing)?[ \t]*(?:alert)?|"
    r"external[ \t]*-[ \t]*(?:e-?mail|sender)"
)
_SUBJECT_TAG = re.compile(
    r"[ \t]*(?:[\[(][ \t]*(?:" + _TAG_WORDS + r")[ \t]*[\])]|\*+[ \t]*(?:" + _TAG_WORDS
    + r")[ \t]*\*+|(?:external|ext|extern|caution)[ \t]*:(?=[ \t]))[ \t]*",
    re.IGNORECASE,
)
_LINE_TAG = re.compile(
    r"[ \t]*(?:[\[(][ \t]*(?:" + _TAG_WORDS + r")[ \t]*[\])]|\*{1,3}[ \t]*(?:" + _TAG_WORDS
    + r")[ \t]*\*{1,3})[ \t]*[:\-–—]?[ \t]*",
    re.IGNORECASE,
)
_LEAD = re.compile(r"[ \t*_!>#⚠️❗🔶🔴|-]*")  # bold stars, warning signs before a banner's words
_BUILT_IN_STARTS = (
    # Exchange Online's first-contact safety tip, in the languages we answer in and more
    r"(?:some people who received this message )?don['’]?t often get e-?mail from",
    r"you don['’]t often get e-?mail from",
    r"you do not often get e-?mail from",
    r"sie erhalten nicht (?:oft|h[äa]ufig) e-?mails? von",
    r"einige personen, die diese nachricht erhalten haben, erhalten nicht oft",
    r"vous n['’]obtenez pas souvent d['’]e-?mails?",
    r"vous ne recevez pas souvent (?:de |d['’])?(?:courriers?|e-?mails?|messages?)",
    r"no suele recibir (?:correos?|mensajes)",
    r"normalmente no recibe (?:correos?|mensajes)",
    r"u ontvangt niet vaak e-?mail",
    r"non ricevi spesso (?:messaggi|e-?mail|posta)",
    r"voc[êe] n[ãa]o costuma receber (?:e-?mails?|mensagens)",
    r"learn why this is important",
    r"erfahren sie, warum dies wichtig ist",
    r"pourquoi c['’]est important",
    r"ontdek waarom dit belangrijk is",
    r"por qu[ée] (?:es )?esto (?:es )?importante",
    r"scopri perch[ée] [èe] importante",
    # external-sender banners of transport rules and gateways
    r"(?:caution|warning|attention|alert|achtung|vorsicht|hinweis|avertissement|"
    r"precauci[óo]n|atenci[óo]n|aviso|attenzione|avviso|let op|waarschuwing|opgelet)"
    r"[ \t]*[:!\-–—](?=.{0,200}?(?:outside|external|extern|sender|absender|exp[ée]diteur|"
    r"remitente|afzender|mittente|phish|suspicious|au(?:ß|ss)erhalb|ext[ée]rieur|fuera|buiten|"
    r"esterno))",
    r"(?:external|extern|externe|externo|esterno)[ \t]+(?:e-?mail|sender|message|mail|"
    r"absender|nachricht|exp[ée]diteur|courriel|remitente|correo|mittente|afzender)\b",
    r"this (?:e-?mail|message|mail) (?:originated|came|was sent|is from|comes|has been sent|"
    r"was received) (?:from )?(?:outside|an external|externally)",
    r"this message (?:is|came) from an external",
    r"this is an external (?:e-?mail|message|sender)",
    r"(?:diese|die) (?:e-?mail|nachricht) (?:stammt|kommt|wurde) (?:von|aus) "
    r"(?:au(?:ß|ss)erhalb|einem externen|extern)",
    r"(?:ce|cet) (?:courriel|message|e-?mail) (?:provient|est originaire|a été envoyé) "
    r"(?:de l['’]ext[ée]rieur|d['’]un exp[ée]diteur externe|de l['’]ext)",
    r"este (?:correo|mensaje)(?: electr[óo]nico)? (?:se origin[óo]|proviene|procede|fue enviado) "
    r"(?:de |desde )?fuera",
    r"(?:dit|deze) (?:bericht|e-?mail) (?:is afkomstig|komt|is verzonden) (?:van )?buiten",
    r"questa e-?mail (?:proviene|[èe] stata inviata) da(?:ll['’])? (?:esterno|fuori)",
    r"zjqcmqryfpfptbannerstart",
    r"zjqcmqryfpfptbannerend",
    r"this message is from an external sender",
    r"mimecast|proofpoint|barracuda|inky\b",
    # the further lines of gateway warning tags, each its own block in the HTML layout
    r"first[- ]time sender",
    r"report (?:this|suspicious|as suspicious) (?:e-?mail|message)",
    r"(?:protection|protected|powered) by (?:proofpoint|mimecast|inky|barracuda)",
)
_VOCABULARY = re.compile(
    r"outside|external|extern|sender|links?\b|attachments?|\bsafe|phish|suspicious|"
    r"recogni[sz]e|organi[sz]ation|report|click|trust|verify|caution|learn why|"
    r"important|banner|mimecast|proofpoint|barracuda|au(?:ß|ss)erhalb|absender|anh[äa]nge|"
    r"wichtig|ext[ée]rieur|exp[ée]diteur|pi[èe]ces jointes|liens|remitente|adjuntos|enlaces|"
    r"importante|fuera|afzender|bijlagen|buiten|belangrijk|esterno|mittente|allegati|"
    r"zjqcmqryfpfpt",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?:[.!?:>\])]|important|importante|wichtig|belangrijk|safe)[ \t]*$",
                           re.IGNORECASE)
_RULE = re.compile(r"[ \t]*(?:[-_=*~#+.·•—–]+[ \t]*)?")  # no two runs of spaces meet
_FIRST_WORD = re.compile(r"[^\W\d_][\w'’-]*")


@dataclass(frozen=True)
class Banners:
    """Where banners start, and the decision words a banner's continuation never starts with."""

    starts: tuple[re.Pattern[str], ...]
    decision_words: frozenset[str] = frozenset()

    def starts_banner(self, line: str) -> bool:
        bare = line[:MAX_LINE_CHARS]
        if _LINE_TAG.match(bare) and (
            not _LINE_TAG.sub("", bare, count=1).strip()
            or _VOCABULARY.search(_LINE_TAG.sub("", bare, count=1))
        ):
            return True
        bare = _LEAD.sub("", bare, count=1)
        return any(pattern.match(bare) for pattern in self.starts)


@lru_cache(maxsize=16)
def banners_for(site_patterns: tuple[str, ...] = (),
                decision_words: frozenset[str] = frozenset()) -> Banners:
    """The built-in banner starts plus a site's own (regular expressions, case-insensitive)."""
    patterns = (*site_patterns, *_BUILT_IN_STARTS)
    return Banners(tuple(re.compile(p, re.IGNORECASE) for p in patterns), decision_words)


DEFAULT_BANNERS = banners_for()


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """Why each pattern that is not a valid regular expression is not (for the config)."""
    errors: list[str] = []
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(f"{pattern!r}: {exc}")
    return errors


def strip_banner_tags(subject: str, banners: Banners = DEFAULT_BANNERS) -> str:
    """The subject without the "[EXTERNAL]" / "EXT:" tags a gateway put before it."""
    for _ in range(4):
        tag = _SUBJECT_TAG.match(subject)
        site = next((m for p in banners.starts[: _site_count(banners)]
                     if (m := p.match(subject.lstrip())) and m.end()), None)
        if tag and tag.end():
            subject = subject[tag.end():]
        elif site is not None:
            subject = subject.lstrip()[site.end():].lstrip(" \t:-")
        else:
            break
    return subject


def _site_count(banners: Banners) -> int:
    return len(banners.starts) - len(_BUILT_IN_STARTS)


_PROOFPOINT_END = re.compile(r"(.*?zjqcmqryfpfptbannerend)[ \t]*(\S.*)", re.IGNORECASE)


_GLUED_AFTER_END = re.compile(
    r"(.*?(?:know the content is safe|learn why this is important|warum dies wichtig ist|"
    r"pourquoi c['’]est important|waarom dit belangrijk is|esto es importante|"
    r"perch[ée] [èe] importante)[.!]?(?:[ \t]*<[^<>\s]*>)?)[ \t]*(\S.*)",
    re.IGNORECASE,
)


def split_glued_markers(lines: list[str], banners: Banners = DEFAULT_BANNERS) -> list[str]:
    """A banner's end glued to the person's first words, as inline HTML layout leaves it.

    Proofpoint's hidden end marker, or the last words of a known banner ("… know the
    content is safe.", "Learn why this is important"), followed by more text on the
    same line: the line is split there, so the banner can be skipped and the rest read.
    """
    for i, line in enumerate(lines[: 3 * MAX_BANNER_LINES]):
        if len(line) > MAX_LINE_CHARS:
            continue
        glued = _PROOFPOINT_END.fullmatch(line)
        if glued is None and banners.starts_banner(line):
            glued = _GLUED_AFTER_END.fullmatch(line)
        if glued:
            return [*lines[:i], glued.group(1), glued.group(2), *lines[i + 1 :]]
    return lines


def skip_banners(lines: Sequence[str], banners: Banners = DEFAULT_BANNERS) -> int:
    """The index of the first line under the banners at the top of ``lines`` (0: none)."""
    i = _skip_blank(lines, 0)
    end = 0
    for _ in range(MAX_BANNERS):
        if i >= len(lines) or not banners.starts_banner(lines[i]):
            break
        if "zjqcmqryfpfptbannerstart" in lines[i][:MAX_LINE_CHARS].lower():
            i = _proofpoint_end(lines, i)
        else:
            i = _block_end(lines, i, banners)
        end = i = _skip_blank(lines, i)
    return end


def without_line_tag(line: str) -> str:
    """A first line that starts with a bare tag ("[EXTERNAL] Approve"): the tag removed."""
    tag = _LINE_TAG.match(line[:MAX_LINE_CHARS])
    return line[tag.end():] if tag and tag.end() else line


def _skip_blank(lines: Sequence[str], i: int) -> int:
    while i < len(lines) and _RULE.fullmatch(lines[i][:MAX_LINE_CHARS]):
        i += 1
    return i


def _proofpoint_end(lines: Sequence[str], i: int) -> int:
    """Proofpoint marks its banner: everything up to its end marker is the banner."""
    for j in range(i, min(len(lines), i + 3 * MAX_BANNER_LINES)):
        if "zjqcmqryfpfptbannerend" in lines[j][:MAX_LINE_CHARS].lower():
            return j + 1
    return i + 1


def _block_end(lines: Sequence[str], i: int, banners: Banners) -> int:
    """The line after one banner block starting at line ``i``."""
    ended = bool(_SENTENCE_END.search(lines[i][:MAX_LINE_CHARS]))
    j = i + 1
    while j < len(lines) and j < i + MAX_BANNER_LINES:
        line = lines[j][:MAX_LINE_CHARS].strip()
        if not line:
            break
        if not (banners.starts_banner(line) or _continues(line, ended, banners)):
            break
        ended = bool(_SENTENCE_END.search(line))
        j += 1
    return j


def _continues(line: str, ended: bool, banners: Banners) -> bool:
    """A line that goes on with the banner above it, rather than starting the person's text."""
    first = _FIRST_WORD.match(line)
    word = first.group(0).casefold() if first else ""
    if word in banners.decision_words:
        return False
    if not ended and line[:1].islower():
        return True
    return bool(_VOCABULARY.search(line))
