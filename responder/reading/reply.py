"""The new text a person wrote in a reply or forward, apart from what it quotes.

``extract_reply`` reads the plain-text body when there is one with any text in it (other
than a banner the mail system added), and the HTML body otherwise. The rules themselves
live in ``responder.reading.quotes`` (plain text) and ``responder.reading.html_reply``
(HTML structure); this module only chooses between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from responder.reading.banners import DEFAULT_BANNERS, Banners
from responder.reading.html_reply import split_html
from responder.reading.language import language_of_original
from responder.reading.quotes import split_reply


@dataclass(frozen=True)
class Reply:
    """What a person wrote now, and the original they replied to or forwarded."""

    text: str  # the new text: no quotes, attributions, header blocks, signatures, footers
    forwarded: bool  # the message forwards an original ("Begin forwarded message:" …)
    original: str  # the quoted or forwarded remainder, for finding our token in it
    original_subject: str | None  # Subject: of the original's header block, when shown
    language: str | None = None  # of the attribution or header block the client wrote


def extract_reply(
    plain: str | None, html: str | None, banners: Banners = DEFAULT_BANNERS
) -> Reply:
    """The new text of a message body; never raises, and is linear in the body's size."""
    split = split_reply(plain, banners) if plain is not None and plain.strip() else None
    if (split is None or not (split.text or split.original)) and html and html.strip():
        split = split_html(html, banners)  # no plain part, or one holding only a banner
    if split is None:
        return Reply(text="", forwarded=False, original="", original_subject=None)
    return Reply(split.text, split.forwarded, split.original, split.original_subject,
                 language_of_original(split.original))
