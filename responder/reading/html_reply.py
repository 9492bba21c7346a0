"""HTML replies: cut the quoted part out of the document tree, then turn the rest to text.

Mail clients mark what they quote in the HTML structure (Gmail ``div.gmail_quote``,
Apple and Thunderbird ``blockquote type=cite``, Outlook ``#divRplyFwdMsg`` and its
border-top header block, Yahoo ``yahoo_quoted`` …). The first such element in document
order and everything after it is the original; what comes before it is the reply. The
reply is converted to text with inscriptis (which keeps the layout of paragraphs, lists
and tables) and then read with the plain-text rules, which catch attribution lines,
header blocks and footers that carry no HTML marker.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

import lxml.etree
import lxml.html
from inscriptis import Inscriptis
from inscriptis.model.config import ParserConfig

from responder.reading.banners import DEFAULT_BANNERS, Banners
from responder.reading.quotes import Split, split_reply

MAX_HTML_CHARS = 2_000_000  # beyond this the rest is all quoted original
MAX_HTML_ELEMENTS = 10_000
"""Elements of an HTML body looked at as the reply and laid out with inscriptis.

The decision is in the first few KB of the new text, and inscriptis takes some 15 µs an
element: a 1.2 MB document of 300,000 paragraphs took 5 s. The elements from this one on
count as the quoted original, whose text is then read with lxml alone (its words are
kept for finding our token; its layout is not).
"""

_QUOTE_CLASSES = (
    "gmail_quote",
    "gmail_attr",
    "yahoo_quoted",
    "moz-cite-prefix",
    "moz-forward-container",
    "outlookmessageheader",
    "divrplyfwdmsg",
    "protonmail_quote",
    "zmail_extra",
    "aolmsgpart",
    "mailru-quote",
)
_QUOTE_IDS = ("divrplyfwdmsg", "appendonsend", "olk_src_body_section", "yahoo_quoted", "zwchr")
_FORWARD_CLASSES = ("moz-forward-container",)
_PARSER = lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
_CONFIG = ParserConfig()


MAX_ORIGINAL_HEAD_CHARS = 20_000
"""Text at the top of the quoted part read for its header block (From:, Subject: …).

The header block and any "forwarded message" line open the original; reading all of a
huge quoted part again with the plain-text rules would only cost time.
"""


@dataclass(frozen=True)
class _Cut:
    reply: lxml.html.HtmlElement
    quoted: lxml.html.HtmlElement | None
    forwarded: bool


def split_html(html: str, banners: Banners = DEFAULT_BANNERS) -> Split:
    """Split an HTML body into the new text and the original it quotes or forwards."""
    root = _parse(html[:MAX_HTML_CHARS])
    if root is None:
        return Split("", "", False, None)
    cut = _cut_quote(root)
    split = split_reply(_text(cut.reply), banners)
    quoted = _text(cut.quoted).strip() if cut.quoted is not None else ""
    if not quoted:
        return Split(
            split.text, split.original, split.forwarded or cut.forwarded, split.original_subject
        )
    inner = split_reply(quoted[:MAX_ORIGINAL_HEAD_CHARS])  # read alone, for its header block
    return Split(
        text=split.text,
        original="\n".join(part for part in (split.original, quoted) if part),
        forwarded=split.forwarded or cut.forwarded or inner.forwarded,
        original_subject=split.original_subject or inner.original_subject,
    )


def _parse(html: str) -> lxml.html.HtmlElement | None:
    if not html.strip():
        return None
    try:
        root = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=_PARSER)
    except (lxml.etree.LxmlError, ValueError):
        return None
    return root if isinstance(root, lxml.html.HtmlElement) else None


def _text(element: lxml.html.HtmlElement) -> str:
    """The element's text laid out by inscriptis, or its bare words when it is too large."""
    if sum(1 for _ in islice(element.iter(), MAX_HTML_ELEMENTS + 1)) > MAX_HTML_ELEMENTS:
        return "\n".join(line for text in element.itertext() if (line := text.strip()))
    text: str = Inscriptis(element, _CONFIG).get_text()
    return text


def _cut_quote(root: lxml.html.HtmlElement) -> _Cut:
    """Detach the first quote marker and everything after it in document order."""
    marker = next(
        (
            el
            for count, el in enumerate(root.iter())
            if count >= MAX_HTML_ELEMENTS or (isinstance(el.tag, str) and _is_marker(el))
        ),
        None,
    )
    if marker is None:
        return _Cut(root, None, False)
    forwarded = isinstance(marker.tag, str) and _has_class(marker, _FORWARD_CLASSES)
    quoted = lxml.html.Element("div")
    removed = [marker]
    node = marker
    while (parent := node.getparent()) is not None:
        removed.extend(node.itersiblings())
        node = parent
    for element in removed:
        parent = element.getparent()
        if parent is not None:
            parent.remove(element)  # lxml takes the tail text along: it follows the element
        quoted.append(element)
    return _Cut(root, quoted, forwarded)


def _is_marker(el: lxml.html.HtmlElement) -> bool:
    """An element that starts the quoted original in some mail client's HTML."""
    tag = el.tag.lower() if isinstance(el.tag, str) else ""
    if tag in ("head", "style", "script", "title"):
        return False
    if tag == "hr":
        return True
    style = "".join(str(el.get("style", "")).lower().split())
    if tag == "blockquote":
        kind = str(el.get("type", "")).lower()
        return (
            kind == "cite" or "quote" in str(el.get("class", "")).lower() or "border-left" in style
        )
    if _has_class(el, _QUOTE_CLASSES):
        return True
    element_id = str(el.get("id", "")).lower()
    if element_id and any(marker in element_id for marker in _QUOTE_IDS):
        return True
    return tag == "div" and _is_header_rule(style) and ":" in el.text_content()[:300]


def _is_header_rule(style: str) -> bool:
    """Outlook's header block: a div with only a solid top border above ``From: …``."""
    return (
        "border-top:solid" in style
        or "border-top-style:solid" in style
        or ("border-top:" in style and "solid" in style)
    ) and "border-bottom:solid" not in style


def _has_class(el: lxml.html.HtmlElement, names: tuple[str, ...]) -> bool:
    classes = str(el.get("class", "")).lower().split()
    return any(name in classes or any(c.endswith("_" + name) for c in classes) for name in names)
