# ruff: noqa: RUF001 - localized sample text is meant literally
"""read_bodies on message bytes composed after real client formats."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import Message

from hypothesis import given, settings
from hypothesis import strategies as st

from responder.reading.body import decode_text, read_bodies, unflow


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def single(body: bytes, ctype: str = "text/plain; charset=utf-8", cte: str = "8bit") -> Message:
    head = f"From: a@example.com\nSubject: Re: x\nMIME-Version: 1.0\nContent-Type: {ctype}\n"
    return parse(head.encode() + f"Content-Transfer-Encoding: {cte}\n\n".encode() + body)


ALTERNATIVE = b"""From: Jane <jane@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: 7bit

%(plain)s
--b1
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

<html><body><p>APPROVE</p></body></html>
--b1--
"""


def test_alternative_gives_both_parts() -> None:
    bodies = read_bodies(parse(ALTERNATIVE % {b"plain": b"APPROVE"}))
    assert bodies.plain is not None and bodies.plain.strip() == "APPROVE"
    assert bodies.html is not None and "<p>APPROVE</p>" in bodies.html
    assert bodies.problems == ()


def test_alternative_with_blank_plain_part_offers_no_plain() -> None:
    bodies = read_bodies(parse(ALTERNATIVE % {b"plain": b"  \n"}))
    assert bodies.plain is None
    assert bodies.html is not None


OUTLOOK_MIXED = b"""From: Jane <jane@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset="windows-1252"
Content-Transfer-Encoding: quoted-printable

REJECT =96 the budget isn=92t approved
--inner
Content-Type: text/html; charset="windows-1252"
Content-Transfer-Encoding: quoted-printable

<p>REJECT =96 the budget</p>
--inner--

--outer
Content-Type: text/plain; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

Please reply APPROVE
--outer
Content-Type: application/ms-tnef; name="winmail.dat"
Content-Disposition: attachment; filename="winmail.dat"
Content-Transfer-Encoding: base64

eJ8+IgAAAQaQCAAEAAAAAAABAAEAAQeQBgAIAAAA5AQAAAAAAADoAAEIgAcAGAAAAElQTS5NaWNy
--outer--
"""


def test_mixed_skips_attachments_and_tnef_and_decodes_windows_1252() -> None:
    bodies = read_bodies(parse(OUTLOOK_MIXED))
    assert bodies.plain == "REJECT \u2013 the budget isn\u2019t approved"
    assert bodies.html is not None and "\u2013" in bodies.html


SIGNED = b"""From: Jane <jane@example.com>
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;
 boundary="sig"

--sig
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8

<div>Approve</div><img src="cid:logo">
--rel
Content-Type: image/png
Content-ID: <logo>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--

--sig
Content-Type: application/pkcs7-signature; name="smime.p7s"
Content-Disposition: attachment; filename="smime.p7s"
Content-Transfer-Encoding: base64

MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCAMIIF
--sig--
"""


def test_smime_signed_related_html() -> None:
    bodies = read_bodies(parse(SIGNED))
    assert bodies.plain is None
    assert bodies.html is not None and "<div>Approve</div>" in bodies.html


def test_opaque_smime_is_a_problem_not_an_exception() -> None:
    msg = single(b"MIAGCSqGSIb3", "application/pkcs7-mime; smime-type=enveloped-data", "base64")
    bodies = read_bodies(msg)
    assert bodies.plain is None and bodies.html is None
    assert any("S/MIME" in p for p in bodies.problems)


def test_base64_utf8() -> None:
    body = base64.b64encode("Genehmigt – APPROVE ✓".encode())
    assert read_bodies(single(body, cte="base64")).plain == "Genehmigt – APPROVE ✓"


def test_charsets() -> None:
    cases = [
        ("iso-8859-2", "Zatwierdzam, dziękuję", "Zatwierdzam, dziękuję"),
        ("iso-2022-jp", "承認します APPROVE", "承認します APPROVE"),
        ("shift_jis", "承認します", "承認します"),
        ("gb2312", "批准 APPROVE 镕", "批准 APPROVE 镕"),  # 镕 is GBK, not GB2312
    ]
    for charset, text, want in cases:
        encoded = text.encode("gb18030" if charset == "gb2312" else charset)
        msg = single(encoded, f"text/plain; charset={charset}")
        assert read_bodies(msg).plain == want, charset


def test_utf8_without_a_declaration_and_under_us_ascii() -> None:
    assert read_bodies(single("Approuvé".encode(), "text/plain")).plain == "Approuvé"
    msg = single("Approuvé".encode(), "text/plain; charset=us-ascii")
    assert read_bodies(msg).plain == "Approuvé"


def test_unknown_charset_falls_back_and_says_so() -> None:
    bodies = read_bodies(single("Approuvé".encode("cp1252"), "text/plain; charset=x-klingon"))
    assert bodies.plain == "Approuvé"
    assert any("x-klingon" in p for p in bodies.problems)


def test_mostly_utf8_with_one_broken_byte_stays_utf8() -> None:
    raw = "Одобряю, спасибо".encode() + b"\xd1f"
    text, note = decode_text(raw, "utf-8")
    assert text.startswith("Одобряю, спасибо")
    assert note is not None


def test_format_flowed_joins_soft_breaks_and_keeps_signature() -> None:
    body = b"APPROVE, the budget is \nfine for me.\n> quoted \n> line\n-- \nJane\n"
    msg = single(body, "text/plain; charset=utf-8; format=flowed")
    assert read_bodies(msg).plain == (
        "APPROVE, the budget is fine for me.\n> quoted line\n-- \nJane\n"
    )


def test_format_flowed_delsp() -> None:
    assert unflow("APPRO \nVE\n", delsp=True) == "APPROVE\n"
    assert unflow(" From the top\n", delsp=False) == "From the top\n"


def test_missing_start_boundary_never_raises() -> None:
    raw = b"""From: a@example.com
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="nope"

just some text without any boundary
"""
    bodies = read_bodies(parse(raw))
    assert any("Defect" in p for p in bodies.problems)


def test_no_content_type_is_plain_text() -> None:
    assert read_bodies(parse(b"From: a@example.com\n\nApprove\n")).plain == "Approve\n"


def test_headers_after_a_leading_blank_line_are_read_as_headers() -> None:
    raw = b"\nFrom: a@example.com\nContent-Type: text/html; charset=utf-8\n\n<b>APPROVE</b>\n"
    bodies = read_bodies(parse(raw))
    assert bodies.html is not None and "<b>APPROVE</b>" in bodies.html
    assert bodies.plain is None


def test_binary_in_a_text_part_is_not_text() -> None:
    bodies = read_bodies(single(b"\xd0\xcf\x11\xe0" + b"\x00" * 200, "text/plain"))
    assert bodies.plain is None
    assert any("binary" in p for p in bodies.problems)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    bodies = read_bodies(parse(raw))
    assert isinstance(bodies.problems, tuple)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=500), st.sampled_from(["plain", "html", "mixed"]))
def test_arbitrary_mime_text_never_raises(text: str, kind: str) -> None:
    raw = f"From: a@b.c\nContent-Type: multipart/{kind}; boundary=x\n\n--x\n{text}\n--x--\n"
    read_bodies(parse(raw.encode("utf-8", "surrogatepass")))
