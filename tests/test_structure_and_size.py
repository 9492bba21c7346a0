"""Families 5 and 6: broken MIME read as clients show it; the size limit counts text only.

A multipart whose declared boundary never occurs is shown by mail clients as its body:
so it is read. An Outlook reply with a 2.7 MB PDF attached is decided over IMAP, from a
Maildir, in ``explain`` and on replay alike: attachments are never read, never counted.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, reject, settings

from responder.config import ParsingSettings, parse_settings
from responder.mailboxes.maildir import deliver
from responder.reading.body import HostileMessage, parse_message, read_bodies, text_only
from responder.reading.message import analyse
from responder.service import responder
from tests.clients import outlook_desktop
from tests.harness import AUTHSERV, RESPONDER_ADDRESS, Harness, reply, signature_header
from tests.test_hostile import mime_tree

REPO = Path(__file__).resolve().parent.parent
ALICE = "Alice Approver <alice@example.com>"


def headers(content_type: str) -> str:
    return (
        f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=example.com;"
        " dmarc=pass header.from=example.com\r\n"
        f"{signature_header('example.com')}\r\n"
        f"From: {ALICE}\r\nTo: {RESPONDER_ADDRESS}\r\nSubject: RE: Approval required [ID:1234]\r\n"
        "Date: Sat, 28 Nov 2026 09:00:00 +0000\r\nMessage-ID: <broken.1@example.com>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n"
    )


# --- family 5: a declared boundary that never occurs -----------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ('multipart/alternative; boundary="Apple-Mail-2A1B"',
         "Approve\r\n\r\nOn 28 Nov 2026, at 08:55, Service Desk <a@b.example> wrote:\r\n\r\n"
         "> Please reply APPROVE or REJECT\r\n"),
        ('multipart/mixed; boundary="----=_NextPart_000_0001"',
         "Reject - not this year\r\n\r\n-----Original Message-----\r\nFrom: Service Desk\r\n"),
        ("multipart/alternative", "Approve\r\n"),  # no boundary parameter at all
        ('multipart/alternative; boundary="b1"',
         "<html><body><div>Approve</div><blockquote type=\"cite\">Please reply"
         " REJECT</blockquote></body></html>\r\n"),
    ],
    ids=["apple", "outlook-express", "no-boundary", "html"],
)
def test_a_multipart_without_its_boundary_is_read_as_its_body(content_type: str, body: str) -> None:
    facts = analyse((headers(content_type) + body).encode())
    assert facts.decision in ("approve", "reject")
    assert facts.unreadable is None
    assert any("boundary never occurs" in p for p in facts.problems)
    assert "Please reply" not in facts.reply_text


def test_a_nested_part_without_its_boundary_is_read_as_its_body() -> None:
    raw = headers('multipart/mixed; boundary="outer"') + (
        "--outer\r\nContent-Type: multipart/alternative; boundary=\"inner-never-used\"\r\n\r\n"
        "Approve\r\n--outer--\r\n"
    )
    assert analyse(raw.encode()).decision == "approve"


def test_a_boundary_that_occurs_keeps_the_parts_apart() -> None:  # the twin: no change
    raw = headers('multipart/mixed; boundary="b"') + (
        "--b\r\nContent-Type: text/plain\r\n\r\nApprove\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n\r\nReject\r\n--b--\r\n"
    )
    facts = analyse(raw.encode())
    assert (facts.decision, facts.reply_text, facts.problems) == ("approve", "Approve", ())


# --- family 6: size is about text ---------------------------------------------------------


def with_pdf(raw: bytes, size: int = 2_700_000, disposition: str = "attachment") -> bytes:
    """Outlook's multipart/mixed: the reply's alternative, then the PDF, base64 in 76s."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"content-type")]
    data = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    inner = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type")]
    mixed = b"_004_AM0PR01MB1234ABCDEFeurprd01prod_"
    return b"\r\n".join([
        *lines, b'Content-Type: multipart/mixed; boundary="' + mixed + b'"', b"",
        b"--" + mixed, *inner, b"", body.rstrip(b"\r\n"),
        b"--" + mixed,
        b'Content-Type: application/pdf; name="quote.pdf"',
        b"Content-Description: quote.pdf",
        b'Content-Disposition: ' + disposition.encode() + b'; filename="quote.pdf";'
        b" size=" + str(size).encode() + b";\r\n\tcreation-date=\"Sat, 28 Nov 2026 08:59:00 GMT\"",
        b"Content-Transfer-Encoding: base64", b"", data.rstrip(b"\r\n"),
        b"--" + mixed + b"--", b"",
    ])


@pytest.fixture(scope="module")
def big_reply() -> bytes:
    return with_pdf(outlook_desktop(ALICE, "Approve\nQuote attached."))


def test_an_attachment_is_neither_read_nor_counted(big_reply: bytes) -> None:
    assert len(big_reply) > ParsingSettings().max_message_bytes
    facts = analyse(big_reply)
    assert (facts.unreadable, facts.decision, facts.note) == (None, "approve", "Quote attached.")
    assert len(text_only(big_reply)) < 10_000


@pytest.mark.parametrize("disposition", ["attachment", "inline"])
def test_the_same_facts_whatever_mailbox_fetched_it(disposition: str) -> None:
    full = with_pdf(outlook_desktop(ALICE, "Reject - too dear"), 300_000, disposition)
    imap_like = text_only(full)  # what the IMAP mailbox fetches: header and text parts
    assert analyse(full).content_hash == analyse(imap_like).content_hash
    assert analyse(full).decision == analyse(imap_like).decision == "reject"


def test_too_much_text_is_still_too_large() -> None:
    raw = with_pdf(reply("alice@example.com", "Re: Approval [ID:1234]",
                         "Approve\n" + "words words words\n" * 20_000), 50_000)
    facts = analyse(raw, ParsingSettings(max_message_bytes=100_000))
    assert facts.unreadable and "too large" in facts.unreadable
    assert str(len(text_only(raw))) in facts.unreadable  # the text's size, not the file's


def test_explain_reads_a_reply_with_a_large_attachment(big_reply: bytes, tmp_path: Path) -> None:
    path = tmp_path / "reply.eml"
    path.write_bytes(big_reply)
    done = subprocess.run([sys.executable, "-m", "responder", "explain", str(path), "--json"],
                          cwd=REPO, capture_output=True, timeout=60, check=True)
    shown = json.loads(done.stdout)
    assert (shown["decision"], shown["unreadable"]) == ("approve", None)


async def test_imap_and_maildir_both_decide_a_reply_with_a_large_attachment(
    harness: Harness, big_reply: bytes, tmp_path: Path
) -> None:
    harness.deliver(big_reply)
    result = await harness.once()
    assert [r.outcome for r in result.reports] == ["approved"]

    config = harness.config()
    del config["imap"]
    config["maildir"] = {"path": str(tmp_path / "Maildir"), "poll_seconds": 0.2}
    config["state"] = {"path": str(tmp_path / "maildir-ledger.sqlite3")}
    second = big_reply.replace(b"Approve\r\nQuote", b"Reject\r\nQuote").replace(
        b"From: Alice Approver <alice@example.com>", b"From: bob@example.com")
    deliver(tmp_path / "Maildir", second)
    async with responder(parse_settings(config)) as worker:
        result = await worker.run_once()
    assert [r.outcome for r in result.reports] == ["rejected"]
    assert harness.halo.approver(1234, 2)["result"] == 2


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mime_tree())
def test_leaving_attachments_out_never_changes_the_text_read(tree: Message) -> None:
    tree["From"] = ALICE
    raw = tree.as_bytes()
    try:
        whole = read_bodies(parse_message(raw))
    except HostileMessage:
        reject()  # more multiparts than real mail has: refused, never read

    text = read_bodies(parse_message(text_only(raw)))
    assert (text.plain, text.html) == (whole.plain, whole.html)


def test_deep_nesting_around_a_large_attachment_is_linear() -> None:
    depth = 15
    nest = b"".join(b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i)
                    for i in range(depth))
    data = base64.encodebytes(os.urandom(3_000_000)).replace(b"\n", b"\r\n")
    raw = (headers("text/plain").encode().split(b"Content-Type")[0] + nest
           + b"Content-Type: application/pdf\r\n\r\n" + data
           + b"".join(b"\r\n--n%d--\r\n" % i for i in reversed(range(depth))))
    started = time.process_time()
    assert len(text_only(raw)) < 5_000  # one pass over the lines that may be boundaries
    assert time.process_time() - started < 1
