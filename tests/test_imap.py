"""ImapMailbox against a real Dovecot: fetch, partial fetch, move, IDLE, polling, failures."""

from __future__ import annotations

import asyncio
import email
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from imapclient.exceptions import IMAPClientError

from responder.config import ImapSettings
from responder.mailboxes import MailboxError
from responder.mailboxes.imap import (
    ImapMailbox,
    is_text_only,
    leaves,
    readable_parts,
    reassemble,
    server_folder,
)
from tests.fixtures_mail import (  # noqa: F401 - fixtures
    dovecot_no_idle_server,
    dovecot_server,
    imap_settings_for_new_user,
    new_mail_user,
    settings_for,
)
from tests.servers import Dovecot, free_port


def plain(subject: str, body: str = "APPROVE\r\n") -> bytes:
    return f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\r\n{body}".encode()


def with_attachments(size: int = 2_000_000) -> bytes:
    msg = EmailMessage()
    msg["From"] = "approver@example.org"
    msg["Subject"] = "Re: Approval needed [ID:42]"
    msg.set_content("APPROVE\n\nLooks fine to me.\n")
    msg.add_alternative("<p>APPROVE</p><p>Looks fine to me.</p>\n", subtype="html")
    msg.add_attachment("a text file, still an attachment\n", filename="notes.txt")
    msg.add_attachment(
        os.urandom(size), maintype="application", subtype="octet-stream", filename="big.bin"
    )
    return msg.as_bytes(policy=SMTP)


@pytest.fixture
async def box(imap_settings: ImapSettings) -> AsyncIterator[ImapMailbox]:
    mailbox = ImapMailbox(imap_settings)
    await mailbox.open()
    yield mailbox
    await mailbox.close()


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    """A private server for tests that restart it."""
    with Dovecot() as server:
        yield server


def user_of(settings: ImapSettings) -> str:
    return settings.username


def sent_to(server: Dovecot, user: str) -> int:
    """Bytes Dovecot sent in ``user``'s (one, finished) session, from its logout log line."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for line in server.log_path.read_text().splitlines():
            if f"imap({user})" in line and "Disconnected" in line and " out=" in line:
                return int(line.split(" out=")[1].split()[0])
        time.sleep(0.05)
    raise AssertionError(f"no logout line for {user}")


async def append_later(server: Dovecot, user: str, raw: bytes, delay: float) -> float:
    await asyncio.sleep(delay)
    await asyncio.to_thread(server.append, user, "INBOX", raw)
    return time.monotonic()


# --- the pure helpers ---


def test_structure_of_a_message_with_attachments() -> None:
    text = (b"text", b"plain", None, None, None, b"7bit", 10, 1, None, None, None, None)
    html = (b"text", b"html", None, None, None, b"7bit", 10, 1, None, None, None, None)
    txt_file = (b"text", b"plain", None, None, None, b"7bit", 9, 1, None, (b"attachment", ()))
    pdf = (b"application", b"pdf", None, None, None, b"base64", 99, None, (b"attachment", ()))
    body = ([([text, html], b"alternative"), txt_file, pdf], b"mixed")
    found = leaves(body)
    assert [leaf.part for leaf in found] == ["1.1", "1.2", "2", "3"]
    assert not is_text_only(found)
    assert readable_parts(found) == ("1.1", "1.2")
    assert is_text_only(leaves(text))
    assert readable_parts(leaves(text)) == ("1",)


def test_reassemble_replaces_content_type() -> None:
    header = (
        b"Subject: hi\r\nContent-Type: multipart/mixed;\r\n boundary=old\r\n"
        b"Content-Transfer-Encoding: 7bit\r\nFrom: a@b\r\n\r\n"
    )
    raw = reassemble(header, [(b"Content-Type: text/plain\r\n\r\n", b"APPROVE\r\n")], "NEW")
    assert b"old" not in raw and b"7bit" not in raw
    parsed = email.message_from_bytes(raw)
    assert parsed["From"] == "a@b" and parsed.get_boundary() == "NEW"
    assert [p.get_payload() for p in parsed.get_payload()] == ["APPROVE\r\n"]


def test_server_folder_names() -> None:
    assert server_folder("Approvals/Done", "/") == "Approvals/Done"
    assert server_folder("Approvals/Done", ".") == "Approvals.Done"
    assert server_folder("Approvals/Done", ".", "INBOX.") == "INBOX.Approvals.Done"
    assert server_folder("INBOX", ".", "INBOX.") == "INBOX"


# --- against Dovecot ---


async def test_fetch_returns_messages_oldest_first_byte_for_byte(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    raws = [plain(f"message {i}") + b"8bit \xe9t\xe9 and a tab\t\r\n" for i in range(3)]
    raws.append(b"Subject: odd\r\nX-Trailing: spaces   \r\n\r\n8bit \xff\xfe\r\n.\r\n")
    for raw in raws:
        dovecot.append(user_of(imap_settings), "INBOX", raw)
    got = await box.fetch_new()
    assert [m.raw for m in got] == raws
    assert [int(m.ref) for m in got] == sorted(int(m.ref) for m in got)
    assert [m.size for m in got] == [len(r) for r in raws]
    assert not any(m.partial for m in got)
    assert [m.raw for m in await box.fetch_new(limit=2)] == raws[:2]


async def test_fetch_leaves_messages_unseen(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    user = user_of(imap_settings)
    dovecot.append(user, "INBOX", plain("one"))
    dovecot.append(user, "INBOX", with_attachments(1000))
    assert len(await box.fetch_new()) == 2
    client = dovecot.connect(user)
    client.select_folder("INBOX", readonly=True)
    assert client.search("SEEN") == []
    client.logout()


async def test_attachments_stay_on_the_server(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    raw = with_attachments()
    dovecot.append(user_of(imap_settings), "INBOX", raw)
    dovecot.append(user_of(imap_settings), "INBOX", plain("after it"))
    big, small = await box.fetch_new()
    await box.close()
    assert sent_to(dovecot, user_of(imap_settings)) < 20_000  # not the 2.7 MB attachment
    assert big.partial and big.size == len(raw) > 2_000_000
    assert len(big.raw) < 5_000
    parsed = email.message_from_bytes(big.raw, policy=SMTP)
    assert parsed["Subject"] == "Re: Approval needed [ID:42]"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert "Looks fine to me." in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert b"notes.txt" not in big.raw and b"big.bin" not in big.raw
    assert small.raw == plain("after it") and not small.partial


async def test_move_creates_the_folder_and_files_the_message(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    user = user_of(imap_settings)
    dovecot.append(user, "INBOX", plain("keep"))
    dovecot.append(user, "INBOX", plain("file me"))
    keep, file_me = await box.fetch_new()
    await box.move(file_me.ref, "Approvals/Done")
    assert dovecot.folder_messages(user, "INBOX") == [keep.raw]
    assert dovecot.folder_messages(user, "Approvals/Done") == [file_me.raw]
    await box.move(keep.ref, "Approvals/Done")  # the folder exists now
    assert dovecot.folder_messages(user, "Approvals/Done") == [file_me.raw, keep.raw]
    client = dovecot.connect(user)
    assert "Approvals/Done" in [name for _f, _s, name in client.list_sub_folders()]
    client.logout()


async def test_instances_starting_together_create_a_folder_without_tripping(
    dovecot: Dovecot, imap_settings: ImapSettings
) -> None:
    """Each CREATEs the folder it files into; the losers' CREATE of an existing one is fine."""
    user = user_of(imap_settings)
    for n in range(3):
        dovecot.append(user, "INBOX", plain(f"message {n}"))
    source = "INBOX"
    for round_ in range(8):  # three fresh instances filing into a new folder at once
        boxes = [ImapMailbox(imap_settings.model_copy(update={"folder": source}))
                 for _ in range(3)]
        await asyncio.gather(*(box.open() for box in boxes))
        try:
            found = await boxes[0].fetch_new()
            assert len(found) == 3, round_
            target = f"Approvals/Race{round_}"
            await asyncio.gather(*(box.move(message.ref, target)
                                   for box, message in zip(boxes, found, strict=True)))
        finally:
            await asyncio.gather(*(box.close() for box in boxes))
        assert len(dovecot.folder_messages(user, target)) == 3
        source = target



async def test_a_folder_deleted_while_running_is_made_again(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    """The server answers MOVE into a missing folder with [TRYCREATE]: we create it and file.

    The same answer comes when another instance's CREATE has not finished; here an admin
    removing the folder behind the responder's back makes it happen every time."""
    user = user_of(imap_settings)
    for n in range(2):
        dovecot.append(user, "INBOX", plain(f"message {n}"))
    first, second = await box.fetch_new()
    await box.move(first.ref, "Approvals/Done")
    admin = dovecot.connect(user)
    try:
        admin.delete_folder("Approvals/Done")
    finally:
        admin.logout()
    await box.move(second.ref, "Approvals/Done")
    assert [b"Subject: message 1" in raw for raw in dovecot.folder_messages(user, "Approvals/Done")
            ] == [True]

def test_dovecot_answers_create_of_an_existing_folder_with_alreadyexists(
    dovecot: Dovecot, imap_settings: ImapSettings
) -> None:
    """The server fact the folder code relies on (RFC 5530 response code)."""
    client = dovecot.connect(user_of(imap_settings))
    try:
        client.create_folder("Approvals/Twice")
        with pytest.raises(IMAPClientError, match="ALREADYEXISTS"):
            client.create_folder("Approvals/Twice")
    finally:
        client.logout()


@pytest.mark.parametrize(
    ("separator", "hide", "expected"),
    [(".", (), "Approvals.Done"), ("/", ("MOVE",), "Approvals/Done")],
    ids=["dot-separator", "copy-expunge"],
)
async def test_move_on_other_servers(separator: str, hide: tuple[str, ...], expected: str) -> None:
    with Dovecot(separator=separator, hide=hide) as server:
        user, password = new_mail_user(server)
        server.append(user, "INBOX", plain("one"))
        server.append(user, "INBOX", plain("two"))
        box = ImapMailbox(settings_for(server, user, password))
        await box.open()
        one, two = await box.fetch_new()
        await box.move(one.ref, "Approvals/Done")
        await box.close()
        assert expected in server.folders(user)
        assert server.folder_messages(user, expected) == [one.raw]
        assert server.folder_messages(user, "INBOX") == [two.raw]


async def test_wait_returns_soon_after_another_client_appends(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    assert await box.fetch_new() == []
    appended = asyncio.create_task(append_later(dovecot, user_of(imap_settings), plain("x"), 0.3))
    assert await box.wait_for_mail(10) is True
    assert time.monotonic() - await appended < 1.5
    assert len(await box.fetch_new()) == 1


async def test_wait_times_out_when_nothing_comes(box: ImapMailbox) -> None:
    started = time.monotonic()
    assert await box.wait_for_mail(0.8) is False
    assert 0.7 < time.monotonic() - started < 1.5
    assert "IDLE supported, 0 messages" in await box.describe()


async def test_wait_sees_mail_that_came_before_it_started(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    dovecot.append(user_of(imap_settings), "INBOX", plain("old"))
    await box.fetch_new()
    assert await box.wait_for_mail(0.3) is False  # handed out already: not new
    dovecot.append(user_of(imap_settings), "INBOX", plain("new"))
    started = time.monotonic()
    assert await box.wait_for_mail(10) is True
    assert time.monotonic() - started < 0.5


async def test_a_cancelled_wait_lets_go_within_a_second(box: ImapMailbox) -> None:
    waiting = asyncio.create_task(box.wait_for_mail(30))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - started < 1.0
    assert await box.fetch_new() == []  # the connection is usable, out of IDLE


async def test_polling_when_the_server_has_no_idle(dovecot_no_idle: Dovecot) -> None:
    user, password = new_mail_user(dovecot_no_idle)
    box = ImapMailbox(settings_for(dovecot_no_idle, user, password, poll_seconds=0.3))
    await box.open()
    try:
        assert "no IDLE, polling every 0.3s" in await box.describe()
        assert await box.wait_for_mail(0.5) is False
        appended = asyncio.create_task(append_later(dovecot_no_idle, user, plain("x"), 0.2))
        assert await box.wait_for_mail(10) is True
        assert time.monotonic() - await appended < 1.0
    finally:
        await box.close()


async def test_wrong_password_is_refused_without_showing_it(dovecot: Dovecot) -> None:
    user, _password = new_mail_user(dovecot)
    secret = "Wr0ng-S3cret-value"
    box = ImapMailbox(settings_for(dovecot, user, secret))
    with pytest.raises(MailboxError) as caught:
        await box.open()
    assert "login refused" in str(caught.value)
    assert secret not in str(caught.value) and secret not in repr(caught.value)


async def test_connection_refused_is_reported(imap_settings: ImapSettings) -> None:
    settings = imap_settings.model_copy(update={"port": free_port()})
    with pytest.raises(MailboxError, match="connection refused"):
        await ImapMailbox(settings).open()


async def test_missing_folder_is_reported(imap_settings: ImapSettings) -> None:
    settings = imap_settings.model_copy(update={"folder": "Nope"})
    with pytest.raises(MailboxError, match="folder Nope"):
        await ImapMailbox(settings).open()


async def test_reconnects_after_the_server_restarts(own_dovecot: Dovecot) -> None:
    user, password = new_mail_user(own_dovecot)
    own_dovecot.append(user, "INBOX", plain("before"))
    box = ImapMailbox(settings_for(own_dovecot, user, password))
    await box.open()
    assert len(await box.fetch_new()) == 1
    own_dovecot.restart()
    own_dovecot.append(user, "INBOX", plain("after"))
    assert [m.raw for m in await box.fetch_new()] == [plain("before"), plain("after")]
    own_dovecot.restart()
    assert await box.wait_for_mail(0.3) is False  # reconnected on the way in; nothing new
    own_dovecot.stop()
    with pytest.raises(MailboxError, match="connection refused"):
        await box.fetch_new()
    own_dovecot.start()
    try:
        assert len(await box.fetch_new()) == 2
    finally:
        await box.close()


async def test_a_connection_dropped_during_idle_is_noticed(own_dovecot: Dovecot) -> None:
    user, password = new_mail_user(own_dovecot)
    box = ImapMailbox(settings_for(own_dovecot, user, password))
    await box.open()
    waiting = asyncio.create_task(box.wait_for_mail(20))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    own_dovecot.restart()
    assert await waiting is True
    assert time.monotonic() - started < 2.0
    await box.close()


@pytest.fixture(scope="module")
def tls_dovecot() -> Iterator[Dovecot]:
    with Dovecot(tls=True) as server:
        yield server


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
async def test_tls_modes_with_a_self_signed_certificate(tls_dovecot: Dovecot, mode: str) -> None:
    user, password = new_mail_user(tls_dovecot)
    port = tls_dovecot.tls_port if mode == "implicit" else tls_dovecot.port
    settings = settings_for(tls_dovecot, user, password, tls=mode, port=port)
    with pytest.raises(MailboxError, match="certificate not trusted"):
        await ImapMailbox(settings).open()
    box = ImapMailbox(settings.model_copy(update={"verify_tls": False}))
    await box.open()
    described = await box.describe()
    await box.close()
    label = "implicit TLS" if mode == "implicit" else "STARTTLS"
    assert f"({label}, certificate not verified), folder INBOX" in described


async def test_tls_against_a_plain_port_fails_clearly(imap_settings: ImapSettings) -> None:
    settings = imap_settings.model_copy(update={"tls": "implicit", "verify_tls": False})
    with pytest.raises(MailboxError, match="TLS handshake failed"):
        await ImapMailbox(settings).open()


async def test_starttls_where_the_server_has_none(imap_settings: ImapSettings) -> None:
    settings = imap_settings.model_copy(update={"tls": "starttls"})
    with pytest.raises(MailboxError, match="does not offer STARTTLS"):
        await ImapMailbox(settings).open()


async def test_idle_is_renewed_without_missing_mail(dovecot: Dovecot) -> None:
    user, password = new_mail_user(dovecot)
    box = ImapMailbox(settings_for(dovecot, user, password, idle_renew_seconds=0.2))
    await box.open()
    try:
        assert await box.wait_for_mail(0.7) is False  # three renewals, no false alarm
        appended = asyncio.create_task(append_later(dovecot, user, plain("x"), 0.5))
        assert await box.wait_for_mail(10) is True
        assert time.monotonic() - await appended < 1.5
    finally:
        await box.close()


async def test_arrival_is_the_internaldate_fetched_with_the_batch(
    dovecot: Dovecot, imap_settings: ImapSettings, box: ImapMailbox
) -> None:
    dovecot.append(user_of(imap_settings), "INBOX", plain("just now"))
    [fetched] = await box.fetch_new()
    [claimed] = await box.claim_new("me", timeout=60)
    for got in (fetched, claimed):
        assert got.arrived is not None and got.arrived.tzinfo is not None
        assert abs((datetime.now(UTC) - got.arrived).total_seconds()) < 5
