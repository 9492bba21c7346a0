# ruff: noqa: RUF001 - the localized words and dashes are meant literally
"""Plain-text rules that find where a person's new text ends and quoted matter begins.

A reply is read top-down, line by line, and the first line that starts quoted or
forwarded matter ends the new text: a ``>`` line, an attribution ("On … wrote:" in
many languages, possibly wrapped over three lines), an Outlook-style header block
(``From:/Sent:/To:/Subject:`` in many languages), a separator such as
``-----Original Message-----`` or "Begin forwarded message:", a signature delimiter
``--`` or a mobile footer ("Sent from my iPhone"). Everything below that line is the
original and is never read as the person's decision.

Only when nothing was written above a ``>`` quote (a bottom-posted or inline reply) is
the unquoted text between ``>`` quotes taken, and then only until anything that is
not a ``>`` quote starts quoted matter. Every regex is anchored and bounded, and each
line is looked at a fixed number of times, so the work is linear in the input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from responder.reading.banners import (
    DEFAULT_BANNERS,
    Banners,
    skip_banners,
    split_glued_markers,
    without_line_tag,
)
from responder.reading.decision import is_greeting

MAX_SCAN_CHARS = 300_000  # the new text is at the top; a longer tail is all original
MAX_SCAN_LINES = 10_000  # likewise in lines: each costs some microseconds of rules
MAX_LINE_CHARS = 400  # only the start of a very long line is matched against the rules
ATTRIBUTION_LINES = 3  # an attribution wraps over at most this many lines
HEADER_BLOCK_SPAN = 8  # the fields of one header block lie within this many lines


def _keys(words: str) -> frozenset[str]:
    """Header field names, '|'-separated (some have spaces), as a lookup set."""
    return frozenset(words.split("|"))


class Cut(Enum):
    """What kind of line ends the new text."""

    QUOTE = "quote"  # a '>' line
    ATTRIBUTION = "attribution"
    HEADERS = "headers"
    SEPARATOR = "separator"
    FORWARD = "forward"
    SIGNATURE = "signature"


@dataclass(frozen=True)
class Split:
    """A plain-text body split into the new text and the quoted or forwarded original."""

    text: str
    original: str
    forwarded: bool
    original_subject: str | None


_FROM_KEYS = _keys(
    "from|von|de|fra|van|da|od|от|від|lähettäjä|feladó|kimden|mittente|remitente|afzender|"
    "avsändare|från|nadawca|odesílatel|saatja|发件人|寄件者|差出人|送信者|보낸사람|보낸 사람|"
    "de la|message du"
)
_OTHER_KEYS = _keys(
    "sent|sent on|date|to|subject|cc|bcc|reply-to|reply to|gesendet|datum|an|betreff|envoyé|"
    "envoyé le|objet|sujet|à|a|copie à|enviado|enviado el|enviada|enviada em|fecha|para|asunto|"
    "inviato|data|oggetto|sendt|til|emne|dato|verzonden|aan|onderwerp|verstuurd|skickat|till|"
    "ämne|lähetetty|vastaanottaja|aihe|päivämäärä|wysłano|do|temat|отправлено|кому|тема|дата|"
    "küldve|címzett|tárgy|dátum|gönderildi|kime|konu|tarih|发送时间|收件人|主题|日期|送信日時|"
    "宛先|件名|assunto|odesláno|komu|předmět|kopie|copie|cco|kopia|копия|másolat|抄送|제목|"
    "날짜|받는 사람|trimis|către|subiect"
)
# Outlook's header block in more of the languages it ships, and the webmails of the same
# places (Mail.ru's "От кого", QQ/163's, Naver's and Daum's labels).
_MORE_FROM_KEYS = _keys("от кого|από|מאת|من|寄件人|发信人|보낸이|kimden")
_MORE_OTHER_KEYS = _keys(
    "надіслано|відправлено|копія|wysłane|dw|data wysłania|odesláno dne|"
    "στάλθηκε|αποστολή|ημερομηνία|προς|θέμα|κοιν|κοιν.|נשלח|תאריך|אל|נושא|עותק|"
    "تم الإرسال|التاريخ|إلى|الموضوع|نسخة|"
    "寄件日期|收件者|主旨|副本|时间|发送日期|日時|送信日|cc|보낸 날짜|받는이|참조|"
    "gönderilme tarihi|bilgi"
)
_HEADER_KEYS = _FROM_KEYS | _OTHER_KEYS | _MORE_FROM_KEYS | _MORE_OTHER_KEYS
_SENDER_KEYS = _FROM_KEYS | _MORE_FROM_KEYS

# "**From:** x" (bold stars): the spaces after the stars only where there are stars, so
# no two runs of spaces meet (a line of spaces would be split between them every way).
_HEADER_LINE = re.compile(
    r"[ \t]*(?:\*+[ \t]*)?([^\W\d_][^:：*\n]{0,24}?)[ \t]*(?:\*+[ \t]*)?[:：]")
_QUOTE_LINE = re.compile(r"[ \t]*>")
_PIPE_LINE = re.compile(r"[ \t]*\|(?:[ \t]|$)")  # "| quoted": some webmail and Lotus quote so
# " AB> quoted": The Bat! and other Russian-language clients quote with the author's initials.
_INITIALS_LINE = re.compile(r"[ \t]{0,3}[^\W\d_]{1,4}>{1,4}(?:[ \t]|$)")
_DATE_FIRST = re.compile(
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}年\d{1,2}月\d{1,2}日)"
    r"(?:[ \t,]+(?:\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]*[ap]\.?m\.?)?|um|à|a las|alle|om|at))*"
    r"(?:[ \t]*(?:GMT|UTC)?[ \t]*[+-]\d{1,2}:?\d{2})?[ \t,]+"
    r"(?P<name>[^\d\s:：<>][^:：<>]{0,60}?)[ \t]*"
    r"(?P<addr><[^<>\s]+@[^<>\s]+>|\([^()\s]+@[^()\s]+\))?"
    r"[ \t]*(?P<colon>[:：])?",
    re.IGNORECASE,
)
# No two runs of the same characters meet in a pattern (spaces, dashes, underscores):
# a line of them would be split between the runs in every way (quadratic and worse).
_RULE_LINE = re.compile(r"[ \t]*(?:[-_=*~#+.·•—–]+[ \t]*)?")
_UNDERSCORE_RULE = re.compile(r"[ \t]*_{2,}[ \t]*")
_TRAILING_UNDERSCORES = re.compile(r"(.*\S)[ \t]*(________)[ \t]*")  # the last 8 of 8 or more
_SIGNATURE_DELIMITER = re.compile(r"--[ \t]?")
_DASHED_TITLE = re.compile(r"[ \t]*[-=_]{3,}[ \t]*([^-=_\s].{1,60}?)[ \t]*[-=_]{3,}[ \t]*")
_FORWARD_WORDS = re.compile(
    r"forward|weitergeleitet|transf[ée]r[ée]|r[ée]exp[ée]di|reenviad|inoltrat|doorgestuurd|"
    r"videresend|vidarebefordra|encaminhad|reencaminhad|v[äa]litetty|przekazan|пересла|"
    r"továbbított|přeposlan|iletilen|转发|転送|"
    r"전달|προωθ|הועבר|توجيه|轉寄|轉發|przesłan|пересылаем|iletil",
    re.IGNORECASE,
)
_SEPARATOR_PHRASE = re.compile(
    r"[ \t]*(?:[-=_*]+[ \t]*)?(?:begin forwarded message|anfang der weitergeleiteten nachricht|"
    r"d[ée]but du message (?:r[ée]exp[ée]di[ée]|transf[ée]r[ée])|"
    r"inicio del mensaje reenviado|comienzo del mensaje reenviado|inizio messaggio inoltrato|"
    r"begin doorgestuurd bericht|in[íi]cio da mensagem (?:reencaminhada|encaminhada)|"
    r"forwarded message|original message|urspr[üu]ngliche nachricht|original-nachricht|"
    r"weitergeleitete nachricht|message d'origine|message transf[ée]r[ée]|mensaje original|"
    r"mensaje reenviado|messaggio originale|messaggio inoltrato|oorspronkelijk bericht|"
    r"doorgestuurd bericht|originalt meddelande|vidarebefordrat meddelande|"
    r"oprindelig (?:meddelelse|besked)|videresendt (?:meddelelse|melding|besked)|"
    r"opprinnelig melding|mensagem original|mensagem encaminhada|alkuper[äa]inen viesti|"
    r"v[äa]litetty viesti|wiadomo[śs][ćc] oryginalna|przekazana wiadomo[śs][ćc]|"
    r"исходное сообщение|пересылаемое сообщение|переслане повідомлення|"
    r"původní zpráva|přeposlaná zpráva|eredeti üzenet|továbbított üzenet|"
    r"orijinal mesaj|iletilen mesaj|原始邮件|转发的邮件|元のメッセージ|転送されたメッセージ|"
    r"원본 메일|원본 메시지|전달된 메시지|전달 메시지|αρχικό μήνυμα|προωθημένο μήνυμα|"
    r"הודעה מקורית|הודעה שהועברה|الرسالة الأصلية|الرسالة المعاد توجيهها|原始郵件|"
    r"轉寄郵件|转发邮件信息|özgün ileti|iletilen ileti|пересланное сообщение|"
    r"původní e-mail|přeposlaný e-mail|oryginalna wiadomo[śs][ćc])"
    r"[ \t]*(?:[-=_*]+[ \t]*)?(?:[:：][ \t]*)?",  # no two runs of spaces meet
    re.IGNORECASE,
)
_FOOTER = re.compile(
    r"[-–—_ \t]*(?:"
    r"(?:sent|envoy[ée]|gesendet|enviado|enviada|inviato|verzonden|verstuurd|sendt|skickat|"
    r"l[äa]hetetty|wys[łl]ane|отправлено|odesláno|küldve|gönderildi|发自|寄件自)"
    r" (?:from|with|via|using|by|on|von|mit|de|desde|con|da|met|vanaf|fra|med|från|"
    r"z|с|à partir de|depuis|do|mit der) .{1,50}"
    r"|(?:get|obtenir|holen sie sich|obtener|scarica|download) (?:outlook|the outlook|"
    r"microsoft outlook).{0,40}"
    r"|(?:von|vom) (?:meinem|meiner) .{1,40} gesendet"
    r"|l[äa]hetetty .{1,40}"
    r"|yahoo mail .{0,40}|sent with .{1,40}|powered by .{1,40}"
    r")",
    re.IGNORECASE,
)
_FOOTER_WORDS = re.compile(
    r"\b(?:iphone|ipad|ipod|android|blackberry|mobile|phone|smartphone|galaxy|samsung|"
    r"huawei|xiaomi|pixel|nokia|htc|lg|sony|motorola|wiko|oneplus|tablet|device|handy|"
    r"outlook|yahoo|mail|gmail|aol|typeapp|sparrow|airmail|spark|bluemail|blackberry10|"
    r"windows|ios|verizon|t-mobile|vodafone|orange|at&t|sprint|téléphone|telefon|móvil|"
    r"movil|cellulare|telefoon|mobil|smartfon|телефона|iphone-|ipad-)",
    re.IGNORECASE,
)
# A link after a footer's words. The spaces before it start where a run of spaces starts,
# and a bracket ends at the next bracket: every run is scanned once (linear).
_URL_SUFFIX = re.compile(r"(?<!\s)\s*(?:<(?:https?:|mailto:)[^<>]*>|\(https?:[^()]*\)|https?://\S+)")
_SENTENCE_PUNCTUATION = re.compile(r"[,;!?]|\.\s+\S")

_WROTE = re.compile(
    r"(?:^|[\s,)>\"'])(?:wrote|writes|said|schrieb|a [ée]crit|[ée]crit|escribi[óo]|"
    r"ha scritto|scrisse|schreef|escreveu|skrev|skriver|napisa[łl](?:a|\(a\))?|pisze|"
    r"написал(?:а|\(а\))?|пише|kirjoitti|írta|napsal(?:a|\(a\))?|şunu yazdı|yazdı|"
    r"skrifaði|rašė|rakstīja|kirjutas|scrie|έγραψε|כתב|كتب|写道|寫道|のメッセージ|"
    r"писал(?:и|а|\(а\))?|пишет|написав(?:ла)?|napísal(?:a|\(a\))?|ha escrito|"
    r"님이 작성|wrote on)(?:$|[\s:：(])",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(
    r"(?:on|am|le|el|il|op|em|den|dnia|w dniu|in data|på|dne|quoting|citando|zitat von|"
    r"cytuję)\b",
    re.IGNORECASE,
)
# An address anywhere in a line: "x@y.z" in a word, or "<x@y>". Each alternative starts
# only where a word (or a "<") starts and runs to the word's first "@", so every word is
# tried once: linear, where a line of "@"s once cost seconds (cubic backtracking).
_EMAIL = re.compile(
    r"(?<![^\s<>()\[\]\"'])[^\s<>()\[\]\"'][^\s<>()\[\]\"'@]*@[^\s<>()\[\]\"']+\."
    r"[^\s<>()\[\]\"']+"
    r"|<[^<>\s][^<>\s@]*@[^<>\s]+>"
)
_DIGIT = re.compile(r"\d")
_GLUED_COLON = re.compile(r"[:：][ \t]{2,}\S")  # "wrote:   first quoted words" (Yahoo)
_ENGLISH_NO_COLON = re.compile(r"on\s.{6,300}\swrote[ \t]*", re.IGNORECASE)
_CLOSING = re.compile(
    r"[ \t]*(?:(?:(?:best|kind|warm|warmest|many|with)\s+)?(?:regards|wishes)|"
    r"mit freundlichen gr(?:ü|ue)(?:ß|ss)en|(?:viele|beste|liebe) "
    r"gr(?:ü|ue)(?:ß|ss)e|(?:bien )?cordialement|salutations(?: distinguées)?|saludos|"
    r"atentamente|un saludo|cordiali saluti|distinti saluti|saluti|met vriendelijke groet(?:en)?|"
    r"vriendelijke groet(?:en)?|med vänlig hälsning|vänliga hälsningar|med venlig hilsen|"
    r"med vennlig hilsen|ystävällisin terveisin|pozdrawiam|z poważaniem|с уважением|"
    r"atenciosamente|cumprimentos)[ \t]*[,.!]?[ \t]*",
    re.IGNORECASE,
)
MAX_CLOSING_TAIL = 6  # lines of name, title and contact details under "Regards,"
_SUBJECT_KEYS = _keys(
    "subject|betreff|objet|sujet|asunto|oggetto|emne|onderwerp|ämne|aihe|temat|тема|tárgy|"
    "konu|主题|件名|assunto|předmět|제목|subiect|θέμα|נושא|الموضوع|主旨"
)


def split_reply(body: str, banners: Banners = DEFAULT_BANNERS) -> Split:
    """Split a plain-text body into the new text and the original it quotes or forwards.

    Banners the mail system put at the top are dropped first: they are nobody's words.
    """
    lines = _without_banners(_lines(body[:MAX_SCAN_CHARS]), banners)
    cut = _first_cut(lines, 0)
    if cut is None:
        return Split(_tidy(_without_closing(lines)), "", False, None)
    start, kind = cut
    above = _without_closing(lines[:start])
    text = _tidy(above)
    if kind in (Cut.QUOTE, Cut.ATTRIBUTION) and (not text or is_greeting(text)) and \
            _is_quote_run(lines, start):
        # Nothing above the quote, or only a greeting (The Bat!'s "Здравствуйте, Name."
        # above "Вы писали …:"): the reply is written between or below the quotes.
        below = _tidy(_interleaved(lines, start))
        text = "\n\n".join(part for part in (text, below) if part)
    remainder = lines[start:]
    original = "\n".join(_unquote(line) for line in remainder).strip()
    forwarded = kind is Cut.FORWARD or _has_forward_marker(remainder)
    return Split(text, original, forwarded, _subject_of(remainder))


def _without_banners(lines: list[str], banners: Banners) -> list[str]:
    """The lines under any banners, and a first line's bare "[EXTERNAL]" tag removed."""
    lines = split_glued_markers(lines, banners)
    lines = lines[skip_banners(lines, banners):]
    for i, line in enumerate(lines):
        if line.strip():
            lines[i] = without_line_tag(line)
            break
    return lines


def _lines(body: str) -> list[str]:
    """Lines with CR/LF normalised, Outlook's glued ``text_____`` rule split off."""
    out: list[str] = []
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:MAX_SCAN_LINES]:
        glued = _TRAILING_UNDERSCORES.fullmatch(line[:MAX_LINE_CHARS])
        if glued and len(line) <= MAX_LINE_CHARS:
            out.extend((glued.group(1), glued.group(2)))
        else:
            out.append(line)
    return out


def _first_cut(lines: Sequence[str], begin: int) -> tuple[int, Cut] | None:
    """The index and kind of the first line at or after ``begin`` that starts quoted matter."""
    for i in range(begin, len(lines)):
        kind = _cut_at(lines, i)
        if kind is None:
            continue
        return _before_rules(lines, i), kind
    return None


def _cut_at(lines: Sequence[str], i: int) -> Cut | None:
    """Whether line ``i`` starts quoted matter, and how."""
    line = lines[i][:MAX_LINE_CHARS]
    stripped = line.strip()
    if not stripped:
        return None
    if _QUOTE_LINE.match(line) or _is_marked_quote(lines, i):
        return Cut.QUOTE
    if _SIGNATURE_DELIMITER.fullmatch(line) or _is_footer(stripped):
        return Cut.SIGNATURE
    if _UNDERSCORE_RULE.fullmatch(line):
        return Cut.SEPARATOR
    separator = _separator_kind(stripped)
    if separator is not None:
        return separator
    if _is_header_block(lines, i):
        return Cut.HEADERS
    if _attribution_end(lines, i) or _names_the_quote_below(lines, i):
        return Cut.ATTRIBUTION
    return None


def _names_the_quote_below(lines: Sequence[str], i: int) -> bool:
    """ "Service Desk wrote:" (no date, no address) or a date and a name, right above a quote."""
    stripped = lines[i][:MAX_LINE_CHARS].strip()
    if len(stripped) > 120:
        return False
    wrote = stripped.endswith((":", "：")) and bool(_WROTE.search(stripped))
    dated = _is_date_name(stripped, need_colon=False)
    if not (wrote or dated):
        return False
    below = next((j for j in range(i + 1, min(i + 3, len(lines))) if lines[j].strip()), None)
    return below is not None and bool(
        _QUOTE_LINE.match(lines[below]) or _is_marked_quote(lines, below)
    )


def _is_marked_quote(lines: Sequence[str], i: int) -> bool:
    """A line quoted with a mark other than a bare '>': '|', or the author's initials."""
    return _is_pipe_quote(lines, i) or _is_initials_quote(lines, i)


def _is_initials_quote(lines: Sequence[str], i: int) -> bool:
    """" AB> text": two such lines, or one beside a '>' line (one alone may be text)."""
    if not _INITIALS_LINE.match(lines[i][:MAX_LINE_CHARS]):
        return False
    neighbours = (lines[j][:MAX_LINE_CHARS] for j in (i - 1, i + 1) if 0 <= j < len(lines))
    return any(_INITIALS_LINE.match(line) or _QUOTE_LINE.match(line) for line in neighbours)


def _is_pipe_quote(lines: Sequence[str], i: int) -> bool:
    """A '|' quote: two such lines in a row (one alone is more likely a table row)."""
    if not _PIPE_LINE.match(lines[i][:MAX_LINE_CHARS]):
        return False
    neighbours = (lines[j] for j in (i - 1, i + 1) if 0 <= j < len(lines))
    return any(_PIPE_LINE.match(line[:MAX_LINE_CHARS]) for line in neighbours)


def _separator_kind(stripped: str) -> Cut | None:
    if _SEPARATOR_PHRASE.fullmatch(stripped):
        return Cut.FORWARD if _FORWARD_WORDS.search(stripped) else Cut.SEPARATOR
    dashed = _DASHED_TITLE.fullmatch(stripped)
    if dashed and any(c.isalpha() for c in dashed.group(1)):
        return Cut.FORWARD if _FORWARD_WORDS.search(stripped) else Cut.SEPARATOR
    return None


def _is_footer(stripped: str) -> bool:
    """A mobile or webmail footer line ("Sent from my iPhone"), not a sentence about one."""
    if len(stripped) > 160:
        return False
    bare = _URL_SUFFIX.sub("", stripped).strip()
    if not bare or len(bare) > 60 or not _FOOTER.fullmatch(bare):
        return False
    if _SENTENCE_PUNCTUATION.search(bare.rstrip(".")):
        return False
    return bool(_FOOTER_WORDS.search(bare)) or bare.lower().startswith(
        ("sent from my", "sent with")
    )


def _header_key(line: str) -> str | None:
    match = _HEADER_LINE.match(line[:MAX_LINE_CHARS])
    if not match:
        return None
    key = " ".join(match.group(1).lower().split())
    return key if key in _HEADER_KEYS else None


def _is_header_block(lines: Sequence[str], i: int) -> bool:
    """Line ``i`` opens a block of two or more mail header fields, one of them the sender."""
    first = _header_key(lines[i])
    if first is None:
        return False
    keys = {first}
    for line in lines[i + 1 : i + HEADER_BLOCK_SPAN]:
        key = _header_key(line)
        if key is not None:
            keys.add(key)
    return len(keys) >= 2 and bool(keys & _SENDER_KEYS)


def _attribution_end(lines: Sequence[str], i: int) -> bool:
    """Line ``i`` starts an attribution of at most three lines ending in a colon."""
    window = []
    for line in lines[i : i + ATTRIBUTION_LINES]:
        if not line.strip():
            return False
        window.append(line.strip()[:MAX_LINE_CHARS])
        joined = " ".join(window)
        if _is_attribution(joined):
            return True
        if len(window) < ATTRIBUTION_LINES and not _continues_attribution(window[-1]):
            return False
    return False


def _continues_attribution(line: str) -> bool:
    """A line that may be the first or middle part of a wrapped attribution."""
    if line.endswith((".", "!", "?", ";")) and not _DIGIT.search(line[-3:]):
        return False
    return bool(_DIGIT.search(line) or "@" in line or "<" in line or _ATTRIBUTION_START.match(line))


def _is_attribution(joined: str) -> bool:
    if len(joined) > 3 * MAX_LINE_CHARS:
        return False
    if _is_dashed_attribution(joined) or _is_date_name(joined) or _is_glued_attribution(joined):
        return True
    if joined.endswith((":", "：")):
        has_date = bool(_DIGIT.search(joined))
        has_email = bool(_EMAIL.search(joined))
        if _WROTE.search(joined) and (has_date or has_email):
            return True
        return has_date and has_email and len(joined) <= 300
    return bool(_ENGLISH_NO_COLON.fullmatch(joined) and _DIGIT.search(joined))


def _is_dashed_attribution(joined: str) -> bool:
    """Zoho's "---- On Thu, 03 Mar 2016 17:21 +0100 Name <addr> wrote ----"."""
    inner = _between_dashes(joined)
    return bool(inner and _WROTE.search(inner) and _DIGIT.search(joined))


def _between_dashes(line: str) -> str | None:
    """The 6 to 300 characters between two or more dashes (or '=') at each end, or None."""
    inner = line.strip("-=")
    if len(line) - len(line.lstrip("-=")) < 2 or len(line) - len(line.rstrip("-=")) < 2:
        return None
    inner = inner.strip(" \t")
    return inner if 6 <= len(inner) <= 300 else None


def _is_date_name(joined: str, need_colon: bool = True) -> bool:
    """Older Gmail's "2016-03-03 17:21 GMT+01:00 Name <addr>:" and a date and a name alone.

    A line that starts with a date and holds nothing else but a short name, ending with a
    colon or an address (or right above a quote): no sentence a person writes looks so.
    """
    if len(joined) > 160:
        return False
    found = _DATE_FIRST.fullmatch(joined)
    if not found or (need_colon and not (found.group("colon") or found.group("addr"))):
        return False
    name = found.group("name").strip(" ,")
    return 0 < len(name.split()) <= 6 and not _SENTENCE_PUNCTUATION.search(name)


def _is_glued_attribution(joined: str) -> bool:
    """Yahoo's "On …, Name<addr> wrote:   first quoted words" on one line."""
    if not _ATTRIBUTION_START.match(joined):
        return False
    colon = _GLUED_COLON.search(joined)
    if colon is None:
        return False
    head = joined[: colon.start()]
    return bool(_WROTE.search(head + ":") and _DIGIT.search(head) and _EMAIL.search(head))


def _before_rules(lines: Sequence[str], i: int) -> int:
    """Move a cut up over blank and rule-only lines (``____``, ``====``) right above it."""
    while i > 0 and _RULE_LINE.fullmatch(lines[i - 1][:MAX_LINE_CHARS]):
        i -= 1
    return i


def _is_quote_run(lines: Sequence[str], start: int) -> bool:
    """Quoted matter that starts with '>' lines (maybe under an attribution)."""
    return any(
        _QUOTE_LINE.match(line) or _is_marked_quote(lines, start + k)
        for k, line in enumerate(lines[start : start + ATTRIBUTION_LINES + 2])
    )


def _interleaved(lines: Sequence[str], start: int) -> list[str]:
    """The unquoted lines between '>' quotes, until anything else starts quoted matter."""
    taken: list[str] = []
    i = start
    while i < len(lines):
        kind = _cut_at(lines, i)
        if kind is Cut.QUOTE:
            i += 1
            continue
        if kind is Cut.ATTRIBUTION and _is_quote_run(lines, i + 1):
            i = _skip_attribution(lines, i)
            continue
        if kind is not None:
            break
        taken.append(lines[i])
        i += 1
    return taken


def _skip_attribution(lines: Sequence[str], i: int) -> int:
    end = i + 1
    while (end < len(lines) and end < i + ATTRIBUTION_LINES
           and not (_QUOTE_LINE.match(lines[end]) or _is_marked_quote(lines, end))):
        end += 1
    return end


def _without_closing(lines: Sequence[str]) -> Sequence[str]:
    """Drop a closing ("Regards,") and the short name block under it at the end of the text."""
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    for i in range(end - 1, max(end - MAX_CLOSING_TAIL - 2, -1), -1):
        line = lines[i][:MAX_LINE_CHARS]
        if len(line) > 80:
            return lines
        if _CLOSING.fullmatch(line.strip()):
            return lines[:i] if i > 0 else lines
    return lines


def _tidy(lines: Sequence[str]) -> str:
    """Joined lines with surrounding blank lines and trailing spaces removed."""
    return "\n".join(line.rstrip() for line in lines).strip()


def _unquote(line: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith(">"):
        return stripped.lstrip("> \t")
    initials = _INITIALS_LINE.match(line[:MAX_LINE_CHARS])
    if initials:
        return line[initials.end():].lstrip(" \t")
    if _PIPE_LINE.match(stripped):
        return stripped[1:].lstrip()
    return line


def _has_forward_marker(remainder: Sequence[str]) -> bool:
    """The original begins with a forward separator within its first few lines."""
    for line in remainder[:HEADER_BLOCK_SPAN]:
        kind = _separator_kind(line.strip()[:MAX_LINE_CHARS]) if line.strip() else None
        if kind is Cut.FORWARD:
            return True
    return False


def _subject_of(remainder: Sequence[str]) -> str | None:
    """The Subject: field of the original's first header block, when it has one."""
    for line in remainder[: HEADER_BLOCK_SPAN * 3]:
        text = _unquote(line)
        key = _header_key(text)
        if key in _SUBJECT_KEYS:
            value = re.split(r"[:：]", text, maxsplit=1)[1]
            value = value.strip().strip("*").strip()
            return value or None
    return None
