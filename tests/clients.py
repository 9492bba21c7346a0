
"""Replies composed the way real mail clients write them (our own text, their shapes).

Each function returns the raw bytes of a reply to Halo's approval email as the responder's
mailbox would store it: Outlook desktop (Word HTML and its plain alternative), Outlook on
the web (``divRplyFwdMsg``), Outlook mobile ("Get Outlook for iOS"), Gmail web and
Android (``gmail_quote``), Apple Mail (``blockquote type=cite``) and Thunderbird
(``moz-cite-prefix``, format=flowed), with the attribution or header block in the
client's language. ``banner`` puts text the receiving system adds on top of both parts,
as an Exchange transport rule or a gateway does.
"""

from __future__ import annotations

import html as html_lib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from tests.harness import AUTHSERV, RESPONDER_ADDRESS, signature_header

_ids = itertools.count(1)
ORIGINAL = "Ticket 1234 needs your approval. Please reply APPROVE or REJECT."


@dataclass(frozen=True)
class Banner:
    """What a receiving system puts above the message, as text and as HTML."""

    text: str
    html: str


SAFETY_TIP = Banner(
    "You don't often get email from {sender}. Learn why this is important"
    "<https://aka.ms/LearnAboutSenderIdentification>\n",
    '<table border="0" cellspacing="0" cellpadding="0" align="left" width="100%"'
    ' style="border-collapse:collapse"><tbody><tr><td style="padding:7px 2px 7px 2px;'
    ' background-color:#A6A6A6">&nbsp;</td><td width="100%" style="background-color:#EAEAEA;'
    ' padding:7px 6px 7px 15px; font-family:wf_segoe-ui_normal,Segoe UI,Segoe WP,Tahoma,'
    'Arial,sans-serif; font-size:12px; color:#212121">'
    '<div style="display:none;visibility:hidden;font-size:1px;color:#ffffff;line-height:1px;'
    'max-height:0px;opacity:0;overflow:hidden"></div>'
    "You don't often get email from {sender}. <a href=\"https://aka.ms/LearnAboutSenderIdentification\""
    ' style="color:#0563C1">Learn why this is important</a></td><td width="75"'
    ' style="background-color:#EAEAEA; padding:7px 15px 7px 15px">&nbsp;</td></tr></tbody>'
    "</table>",
)
CAUTION = Banner(
    "CAUTION: This email originated from outside of the organization. Do not click links or"
    " open attachments unless you recognize the sender and know the content is safe.\n\n",
    '<div style="background-color:#FFEB9C; width:100%; border-style:solid; border-color:#9C6500;'
    ' border-width:1pt; padding:2pt; font-size:10pt; line-height:12pt; font-family:Calibri;'
    ' color:Black; text-align:left"><span style="color:#9C6500; font-weight:bold">CAUTION:</span>'
    " This email originated from outside of the organization. Do not click links or open"
    " attachments unless you recognize the sender and know the content is safe.</div><br>",
)
EXTERNAL_TAG = Banner("[EXTERNAL]\n\n", "<p><b>[EXTERNAL]</b></p>")
PROOFPOINT = Banner(
    "ZjQcmQRYFpfptBannerStart\nThis Message Is From an External Sender\nThis message came from"
    " outside your organization.\n  \nZjQcmQRYFpfptBannerEnd\n",
    '<div style="display:none !important">ZjQcmQRYFpfptBannerStart</div><table><tr><td>'
    "<b>This Message Is From an External Sender</b><br>This message came from outside your"
    ' organization.</td></tr></table><div style="display:none !important">'
    "ZjQcmQRYFpfptBannerEnd</div>",
)
MIMECAST = Banner(
    "External Email: Use caution with links and attachments. Report suspicious email to the"
    " Mimecast Service Desk.\n\n",
    '<table width="100%"><tr><td style="background:#ffcc00">External Email: Use caution with'
    " links and attachments. Report suspicious email to the Mimecast Service Desk.</td></tr>"
    "</table>",
)
BARRACUDA = Banner(
    "*** WARNING: This email was sent from an external sender. Be careful with links and"
    " attachments. ***\n",
    "<p style=\"color:red\">*** WARNING: This email was sent from an external sender. Be careful"
    " with links and attachments. ***</p>",
)
SAFETY_TIP_DE = Banner(
    "Sie erhalten nicht oft E-Mails von {sender}. Erfahren Sie, warum dies wichtig ist"
    "<https://aka.ms/LearnAboutSenderIdentification>\n\n",
    "<table><tr><td>Sie erhalten nicht oft E-Mails von {sender}. <a href=\"https://aka.ms/"
    'LearnAboutSenderIdentification">Erfahren Sie, warum dies wichtig ist</a></td></tr></table>',
)
PROOFPOINT_TAG = Banner(
    "Caution: External ({sender})\n\nFirst-Time Sender  Details\n\n"
    " Report This Email  FAQ  Protection by Proofpoint\n\n",
    '<table width="100%" style="background:#fff4ce"><tr><td><b>Caution:</b> External'
    " ({sender})</td></tr><tr><td>First-Time Sender <a href=\"https://example.invalid/d\">"
    "Details</a></td></tr><tr><td><a href=\"https://example.invalid/r\">Report This Email</a>"
    '  <a href="https://example.invalid/f">FAQ</a>  Protection by Proofpoint</td></tr></table>',
)
BANNERS = {
    "safety-tip": SAFETY_TIP,
    "caution": CAUTION,
    "external-tag": EXTERNAL_TAG,
    "proofpoint": PROOFPOINT,
    "mimecast": MIMECAST,
    "barracuda": BARRACUDA,
    "safety-tip-de": SAFETY_TIP_DE,
    "proofpoint-tag": PROOFPOINT_TAG,
}

# The header block Outlook writes above the original, per language.
_OUTLOOK_BLOCK = {
    "en": ("From", "Sent", "To", "Subject", "Saturday, November 28, 2026 8:55 AM", "RE: "),
    "de": ("Von", "Gesendet", "An", "Betreff", "Samstag, 28. November 2026 08:55", "AW: "),
    "fr": ("De\u00a0", "Envoyé\u00a0", "À\u00a0", "Objet\u00a0", "samedi 28 novembre 2026 08:55",
           "RE\u00a0: "),
    "nl": ("Van", "Verzonden", "Aan", "Onderwerp", "zaterdag 28 november 2026 08:55", "RE: "),
    "es": ("De", "Enviado el", "Para", "Asunto", "sábado, 28 de noviembre de 2026 8:55", "RE: "),
}
# Gmail's attribution line, per language.
_GMAIL_ATTRIBUTION = {
    "en": "On Sat, Nov 28, 2026 at 8:55\u202fAM Service Desk <{a}> wrote:",
    "de": "Am Sa., 28. Nov. 2026 um 08:55\u00a0Uhr schrieb Service Desk <{a}>:",
    "fr": "Le sam. 28 nov. 2026 à 08:55, Service Desk <{a}> a écrit :",
    "nl": "Op za 28 nov 2026 om 08:55 schreef Service Desk <{a}>:",
    "es": "El sáb, 28 nov 2026 a las 8:55, Service Desk (<{a}>) escribió:",
}


def _headers(sender: str, subject: str, content_type: str, extra: str = "") -> str:
    domain = sender.rpartition("@")[2].rstrip(">")
    lines = [
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d={domain};"
        f" dmarc=pass header.from={domain}",
        signature_header(domain),
        f"From: {sender}",
        f"To: Service Desk <{RESPONDER_ADDRESS}>",
        f"Subject: {subject}",
        "Date: Sat, 28 Nov 2026 09:00:00 +0000",
        f"Message-ID: <{next(_ids)}.reply@{domain}>",
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
    ]
    return "\r\n".join(lines) + "\r\n" + (extra.replace("\n", "\r\n") if extra else "")


def _alternative(boundary: str, text: str, html: str, text_type: str = "text/plain;"
                 ' charset="utf-8"') -> str:
    return (
        f"--{boundary}\r\nContent-Type: {text_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{_crlf(text)}\r\n--{boundary}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{_crlf(html)}\r\n--{boundary}--\r\n"
    )


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _with_banner(banner: Banner | None, sender: str, text: str, html_body: str) -> tuple[str, str]:
    if banner is None:
        return text, html_body
    address = sender.rpartition("<")[2].rstrip(">")
    return (banner.text.format(sender=address) + text,
            banner.html.format(sender=address) + html_body)


def _paragraphs_html(text: str) -> str:
    return "".join(
        f'<p class="MsoNormal">{html_lib.escape(line) or "&nbsp;"}<o:p></o:p></p>'
        for line in text.split("\n")
    )


def _build(sender: str, subject: str, text: str, html_body: str, boundary: str,
           banner: Banner | None, extra: str = "", text_type: str = 'text/plain; charset="utf-8"'
           ) -> bytes:
    text, html_body = _with_banner(banner, sender, text, html_body)
    head = _headers(sender, subject, f'multipart/alternative; boundary="{boundary}"', extra)
    return (head + "\r\n" + _alternative(boundary, text, html_body, text_type)).encode("utf-8")


def outlook_desktop(sender: str, words: str, *, lang: str = "en", banner: Banner | None = None,
                    ticket: int = 1234) -> bytes:
    """Outlook for Windows: Word HTML with a border-top header block, and its text twin."""
    f, s, t, subj, date, prefix = _OUTLOOK_BLOCK[lang]
    original_subject = f"Approval required [ID:{ticket}]"
    block = (f"{f}: Service Desk <{RESPONDER_ADDRESS}>\n{s}: {date}\n{t}: {sender}\n"
             f"{subj}: {original_subject}")
    text = f"{words}\n\n{block}\n\n{ORIGINAL}\n"
    html_body = (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><meta http-equiv='
        '"Content-Type" content="text/html; charset=utf-8"><style>p.MsoNormal{margin:0cm}</style>'
        '</head><body lang="EN-US" link="#0563C1"><div class="WordSection1">'
        + _paragraphs_html(words) + '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
        f'<p class="MsoNormal"><b>{f}:</b> Service Desk &lt;{RESPONDER_ADDRESS}&gt; <br><b>{s}:'
        f"</b> {date}<br><b>{t}:</b> {html_lib.escape(sender)}<br><b>{subj}:</b>"
        f" {original_subject}</p></div><p class=\"MsoNormal\">{ORIGINAL}</p></div></body></html>"
    )
    extra = ("Thread-Topic: " + original_subject + "\nThread-Index: AQHbQk1zYWxsIGFwcHJvdmFs\n"
             "X-MS-Has-Attach:\nX-MS-TNEF-Correlator:\n"
             f"Content-Language: {'en-US' if lang == 'en' else lang + '-' + lang.upper()}\n")
    return _build(sender, prefix + original_subject, text, html_body,
                  "_000_AM0PR01MB1234ABCDEFeurprd01prod_", banner, extra)


def outlook_web(sender: str, words: str, *, lang: str = "en", banner: Banner | None = None,
                ticket: int = 1234) -> bytes:
    """Outlook on the web (and new Outlook): ``appendonsend`` and ``divRplyFwdMsg``."""
    f, s, t, subj, date, prefix = _OUTLOOK_BLOCK[lang]
    original_subject = f"Approval required [ID:{ticket}]"
    text = (f"{words}\n\n________________________________\n{f}: Service Desk <{RESPONDER_ADDRESS}>"
            f"\n{s}: {date}\n{t}: {sender}\n{subj}: {original_subject}\n\n{ORIGINAL}\n")
    html_body = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
        '<body dir="ltr"><div class="elementToProof" style="font-family:Aptos,Calibri,sans-serif;'
        ' font-size:12pt">' + "<br>".join(html_lib.escape(w) for w in words.split("\n"))
        + '</div><div id="appendonsend"></div><hr style="display:inline-block;width:98%"'
        ' tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif"'
        f' style="font-size:11pt" color="#000000"><b>{f}:</b> Service Desk &lt;'
        f"{RESPONDER_ADDRESS}&gt;<br><b>{s}:</b> {date}<br><b>{t}:</b> {html_lib.escape(sender)}"
        f"<br><b>{subj}:</b> {original_subject}</font><div>&nbsp;</div></div><div>{ORIGINAL}"
        "</div></body></html>"
    )
    return _build(sender, prefix + original_subject, text, html_body,
                  "_000_DB9PR02MB5678WEBeurprd02prod_", banner)


def outlook_mobile(sender: str, words: str, *, lang: str = "en", banner: Banner | None = None,
                   ticket: int = 1234) -> bytes:
    """Outlook for iOS/Android: its "Get Outlook" footer, then the header block."""
    f, s, t, subj, date, prefix = _OUTLOOK_BLOCK[lang]
    footer = {"en": "Get Outlook for iOS", "de": "Outlook für iOS herunterladen",
              "fr": "Obtenir Outlook pour iOS", "nl": "Outlook voor iOS downloaden",
              "es": "Obtener Outlook para iOS"}[lang]
    original_subject = f"Approval required [ID:{ticket}]"
    text = (f"{words}\n\n{footer}<https://aka.ms/o0ukef>\n________________________________\n"
            f"{f}: Service Desk <{RESPONDER_ADDRESS}>\n{s}: {date}\n{t}: {sender}\n"
            f"{subj}: {original_subject}\n\n{ORIGINAL}\n")
    html_body = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
        '<body><div dir="ltr">' + html_lib.escape(words).replace("\n", "<br>") + "</div>"
        f'<div dir="ltr"><br></div><div class="ms-outlook-mobile-signature">{footer}</div>'
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
        f'<div id="divRplyFwdMsg" dir="ltr"><b>{f}:</b> Service Desk<br><b>{s}:</b> {date}<br>'
        f"<b>{subj}:</b> {original_subject}</div><div>{ORIGINAL}</div></body></html>"
    )
    return _build(sender, prefix + original_subject, text, html_body,
                  "_000_PA4PR03MB9012MOBeurprd03prod_", banner)


def gmail(sender: str, words: str, *, lang: str = "en", banner: Banner | None = None,
          ticket: int = 1234, android: bool = False) -> bytes:
    """Gmail web (or the Android app): ``gmail_quote`` HTML and '>' quoted text."""
    attribution = _GMAIL_ATTRIBUTION[lang].format(a=RESPONDER_ADDRESS)
    if android and lang == "en":
        attribution = f"On Sat, 28 Nov 2026, 08:55 Service Desk, <{RESPONDER_ADDRESS}> wrote:"
    original_subject = f"Approval required [ID:{ticket}]"
    text = f"{words}\n\n{attribution}\n\n> {ORIGINAL}\n>\n"
    lines = "".join(f"<div>{html_lib.escape(w) or '<br>'}</div>" for w in words.split("\n"))
    html_body = (
        f'<div dir="{"auto" if android else "ltr"}">{lines}</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">{html_lib.escape(attribution)}<br></div>'
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid'
        f' rgb(204,204,204);padding-left:1ex">{ORIGINAL}</blockquote></div>'
    )
    return _build(sender, "Re: " + original_subject, text, html_body,
                  "000000000000a1b2c3d4e5f60718", banner)


def apple_mail(sender: str, words: str, *, banner: Banner | None = None, ticket: int = 1234,
               iphone: bool = False) -> bytes:
    """Apple Mail (macOS, or iPhone with its footer): ``blockquote type=cite``."""
    original_subject = f"Approval required [ID:{ticket}]"
    footer = "\n\nSent from my iPhone" if iphone else ""
    attribution = f"On 28 Nov 2026, at 08:55, Service Desk <{RESPONDER_ADDRESS}> wrote:"
    text = f"{words}{footer}\n\n> {attribution}\n> \n> {ORIGINAL}\n"
    html_body = (
        '<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head>'
        '<body dir="auto">' + html_lib.escape(words).replace("\n", "<br>")
        + ("<br><br><div dir=\"ltr\">Sent from my iPhone</div>" if iphone else "")
        + f'<div dir="ltr"><br><blockquote type="cite">{html_lib.escape(attribution)}<br><br>'
        f"{ORIGINAL}</blockquote></div></body></html>"
    )
    return _build(sender, "Re: " + original_subject, text, html_body,
                  "Apple-Mail=_5F2A1B3C-0D4E-4F5A-8B6C-7D8E9F0A1B2C", banner)


def thunderbird(sender: str, words: str, *, banner: Banner | None = None,
                ticket: int = 1234) -> bytes:
    """Thunderbird: format=flowed text and ``moz-cite-prefix`` HTML."""
    original_subject = f"Approval required [ID:{ticket}]"
    attribution = "On 28/11/2026 08:55, Service Desk wrote:"
    text = f"{words}\n\n{attribution}\n> {ORIGINAL}\n"
    html_body = (
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Type" content="text/html;'
        ' charset=UTF-8"></head><body><p>' + html_lib.escape(words).replace("\n", "<br>")
        + f'</p><div class="moz-cite-prefix">{attribution}<br></div><blockquote type="cite"'
        f' cite="mid:1@service.example">{ORIGINAL}</blockquote></body></html>'
    )
    return _build(sender, "Re: " + original_subject, text, html_body,
                  "------------0A1B2C3D4E5F6A7B8C9D0E1F", banner,
                  text_type="text/plain; charset=UTF-8; format=flowed")


Client = Callable[..., bytes]
CLIENTS: dict[str, Client] = {
    "outlook-desktop": outlook_desktop,
    "outlook-web": outlook_web,
    "outlook-mobile": outlook_mobile,
    "gmail-web": gmail,
    "gmail-android": lambda s, w, **k: gmail(s, w, android=True, **k),
    "apple-mail": apple_mail,
    "iphone-mail": lambda s, w, **k: apple_mail(s, w, iphone=True, **k),
    "thunderbird": thunderbird,
}
LOCALIZED_CLIENTS: dict[str, Client] = {
    "outlook-desktop": outlook_desktop,
    "outlook-web": outlook_web,
    "outlook-mobile": outlook_mobile,
    "gmail-web": gmail,
}
