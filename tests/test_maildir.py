"""MaildirMailbox on a real directory: order, exact bytes, Maildir++ folders, polling."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from responder.config import MaildirSettings
from responder.mailboxes import MailboxError
from responder.mailboxes.maildir import MaildirMailbox, deliver, delivery_order, folder_dir
from tests.fixtures_mail import new_mail_user
from tests.servers import Dovecot


def plain(subject: str) -> bytes:
    return f"From: a@example.org\nSubject: {subject}\n\nAPPROVE \t\n".encode() + b"\xe9\r\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "Maildir"


@pytest.fixture
async def box(root: Path) -> AsyncIterator[MaildirMailbox]:
    mailbox = MaildirMailbox(MaildirSettings(path=root, poll_seconds=0.1))
    await mailbox.open()
    yield mailbox
    await mailbox.close()


def test_keys_sort_by_their_delivery_time() -> None:
    keys = ["1700000001.M5P1Q2.h", "1700000000.M999999P1Q1.h", "1700000001.M40P1Q3.h"]
    assert sorted(keys, key=lambda k: delivery_order(k, 0.0)) == [keys[1], keys[0], keys[2]]
    assert delivery_order("odd-name", 12.5) == (12.5, 0, "odd-name")


def test_folders_map_to_maildir_plus_plus(root: Path) -> None:
    assert folder_dir(root, "Approvals/Done") == root / ".Approvals.Done"
    assert folder_dir(root, "INBOX") == root
    for bad in ("v1.2/Done", "", "Approvals/.hidden"):
        with pytest.raises(MailboxError):
            folder_dir(root, bad)


async def test_fetch_returns_messages_oldest_first_byte_for_byte(
    root: Path, box: MaildirMailbox
) -> None:
    raws = [plain(f"message {i}") for i in range(5)]
    keys = [deliver(root, raw) for raw in raws]
    # A message the mail client has already seen lives in cur/ with flags.
    os.rename(root / "new" / keys[2], root / "cur" / f"{keys[2]}:2,S")
    got = await box.fetch_new()
    assert [m.ref for m in got] == keys
    assert [m.raw for m in got] == raws
    assert [m.size for m in got] == [len(r) for r in raws]
    assert not any(m.partial for m in got)
    assert [m.ref for m in await box.fetch_new(limit=2)] == keys[:2]
    assert await box.describe() == f"maildir {root}, polling every 0.1s, 5 messages"


async def test_move_files_into_a_new_subfolder(root: Path, box: MaildirMailbox) -> None:
    keep = deliver(root, plain("keep"))
    file_me = deliver(root, plain("file me"))
    os.rename(root / "new" / file_me, root / "cur" / f"{file_me}:2,S")
    await box.move(file_me, "Approvals/Done")
    target = root / ".Approvals.Done"
    assert (target / "maildirfolder").exists()
    assert (target / "cur" / f"{file_me}:2,S").read_bytes() == plain("file me")
    assert [m.ref for m in await box.fetch_new()] == [keep]
    await box.move(keep, "Approvals/Done")
    assert (target / "new" / keep).read_bytes() == plain("keep")
    assert await box.fetch_new() == []
    with pytest.raises(MailboxError, match="no message"):
        await box.move(keep, "Approvals/Done")


async def test_wait_returns_when_mail_is_delivered(root: Path, box: MaildirMailbox) -> None:
    deliver(root, plain("old"))
    await box.fetch_new()
    started = time.monotonic()
    assert await box.wait_for_mail(0.4) is False  # handed out already: not new
    assert 0.35 < time.monotonic() - started < 1.0

    async def later() -> float:
        await asyncio.sleep(0.2)
        await asyncio.to_thread(deliver, root, plain("new"))
        return time.monotonic()

    delivered = asyncio.create_task(later())
    assert await box.wait_for_mail(10) is True
    assert time.monotonic() - await delivered < 0.5
    assert len(await box.fetch_new()) == 2


async def test_wait_sees_mail_that_came_before_it_started(root: Path, box: MaildirMailbox) -> None:
    deliver(root, plain("waiting already"))
    assert await box.wait_for_mail(5) is True
    assert await box.wait_for_mail(0.1) is True  # still not fetched
    await box.fetch_new()
    assert await box.wait_for_mail(0.1) is False


async def test_a_cancelled_wait_stops_at_once(box: MaildirMailbox) -> None:
    waiting = asyncio.create_task(box.wait_for_mail(30))
    await asyncio.sleep(0.2)
    waiting.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert time.monotonic() - started < 0.5


async def test_open_reports_an_unusable_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(MailboxError, match="maildir"):
        await MaildirMailbox(MaildirSettings(path=blocker / "Maildir")).open()


async def test_dovecot_sees_the_folders_we_file_into() -> None:
    """The Maildir++ mapping is the one Dovecot itself uses for the same Maildir."""
    with Dovecot(layout="maildir++") as server:
        user, _password = new_mail_user(server)
        sent = b"From: a@example.org\r\nSubject: via IMAP\r\n\r\nAPPROVE\r\n"
        server.append(user, "INBOX", sent)
        root = server.mail_dir(user)
        stat = root.stat()
        box = MaildirMailbox(MaildirSettings(path=root))
        await box.open()
        (message,) = await box.fetch_new()
        assert message.raw == sent.replace(b"\r\n", b"\n")  # Dovecot stores LF line ends
        await box.move(message.ref, "Approvals/Done")
        for path in [root, *root.rglob("*")]:  # Dovecot runs as its mail user, we as root
            os.chown(path, stat.st_uid, stat.st_gid)
        assert "Approvals/Done" in server.folders(user)
        assert server.folder_messages(user, "Approvals/Done") == [sent]
        assert server.folder_messages(user, "INBOX") == []


async def test_arrival_is_the_delivery_time(root: Path, box: MaildirMailbox) -> None:
    """The time in the key (as MTAs write it), else the file's mtime; a claimed file's
    mtime is its lease, so there only the key tells."""
    deliver(root, plain("just now"))
    (root / "new" / "odd-name").write_bytes(plain("a key without a time"))
    for got in await box.fetch_new():
        assert got.arrived is not None
        assert abs((datetime.now(UTC) - got.arrived).total_seconds()) < 5, got.ref
    arrived = {m.ref: m.arrived for m in await box.claim_new("me", timeout=60)}
    assert arrived.pop("odd-name") is None
    [when] = arrived.values()
    assert when is not None and abs((datetime.now(UTC) - when).total_seconds()) < 5
