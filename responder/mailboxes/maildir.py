"""The local Maildir mailbox: the mail server (or the demo) delivers, we read and file.

Folders use the Maildir++ layout, the default of Dovecot and Courier and what the stdlib
``mailbox.Maildir`` writes: ``"Approvals/Done"`` is the directory ``.Approvals.Done`` in
the root, which Dovecot lists as ``Approvals/Done`` (or ``Approvals.Done`` where the
namespace separator is "."). A folder name part containing "." is refused: Maildir++
could not tell it from the hierarchy, and Dovecot with ``LAYOUT=fs`` stores the same
names as nested ``Approvals/Done`` directories, so a name valid here is valid there too.

Messages are read and moved as files (``os.rename``), so their bytes never change and
their flags (``:2,S``) go with them. Errors: ``OSError`` leaves as ``MailboxError``.
"""

from __future__ import annotations

import asyncio
import email
import errno
import logging
import mailbox
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from responder.config import MaildirSettings
from responder.mailboxes import PEEK_BYTES, Incoming, MailboxError
from responder.reading.message import message_id as message_id_of

log = logging.getLogger("responder.maildir")  # the name logs have always carried

_SUBDIRS = ("new", "cur")
_KEY_TIME = re.compile(r"^(\d+)\.([^.]*)")  # "1701170000.M123456P789Q1.host,S=12"
_RECENT = 2.0  # a directory changed this recently may change again within its mtime tick


@dataclass(frozen=True)
class Entry:
    """One message file: where it is and where it sorts."""

    key: str  # the file name up to the ":2,flags" info
    path: Path
    order: tuple[float, int, str]  # (delivery time, counter, key): oldest first


def deliver(path: Path | str, raw: bytes) -> str:
    """Put ``raw`` into the Maildir's new/ as an MTA would; return its key (for the demo)."""
    return str(mailbox.Maildir(str(path), factory=None, create=True).add(raw))


def delivery_order(key: str, mtime: float) -> tuple[float, int, str]:
    """Order by the time encoded in the key (seconds, Mmicroseconds, Qcounter), else mtime."""
    match = _KEY_TIME.match(key)
    if match is None:
        return (mtime, 0, key)
    micros = re.search(r"M(\d+)", match.group(2))
    counter = re.search(r"Q(\d+)", match.group(2))
    when = int(match.group(1)) + (int(micros.group(1)) / 1e6 if micros else 0.0)
    return (when, int(counter.group(1)) if counter else 0, key)


def delivered_at(key: str, mtime: float | None) -> datetime | None:
    """When the message was delivered: the time its key encodes, else its file's mtime."""
    if _KEY_TIME.match(key) is None and mtime is None:
        return None
    return datetime.fromtimestamp(delivery_order(key, mtime or 0.0)[0], UTC)


def read_header(path: Path, limit: int = 1 << 20) -> bytes:
    """The header block of a message file (up to the first empty line, at most ``limit``)."""
    header = b""
    with path.open("rb") as fp:
        for line in fp:
            if line in (b"\r\n", b"\n") or len(header) > limit:
                break
            header += line
    return header


def folder_dir(root: Path, folder: str) -> Path:
    """The Maildir++ directory for ``folder``: "Approvals/Done" -> root/.Approvals.Done."""
    names = [name for name in folder.split("/") if name]
    if not names or any(name.startswith(".") or "." in name for name in names):
        raise MailboxError(f"maildir: folder {folder!r}: names may not be empty or contain '.'")
    if [n.upper() for n in names] == ["INBOX"]:
        return root
    return root / ("." + ".".join(names))


def make_folder(root: Path, target: Path) -> bool:
    """Make the Maildir++ folder ``target`` whole, or leave it; True if this call made it.

    Several instances may start at once: a folder is built under a temporary name in the
    root's tmp/ (where nobody lists folders) and renamed into place, so nobody ever sees
    it half made. When the name is taken meanwhile, whatever is there is completed (a
    folder left half made by an older version, or by hand) instead of failing.
    """
    if target == root or all((target / sub).is_dir() for sub in (*_SUBDIRS, "tmp")):
        return False
    staging = Path(tempfile.mkdtemp(prefix=f".folder-{os.getpid()}-", dir=root / "tmp"))
    try:
        for sub in (*_SUBDIRS, "tmp"):
            (staging / sub).mkdir(mode=0o700)
        (staging / "maildirfolder").touch(mode=0o600)
        try:
            os.rename(staging, target)  # a non-empty target stays: ENOTEMPTY or EEXIST
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a rename
    for sub in (*_SUBDIRS, "tmp"):
        (target / sub).mkdir(mode=0o700, exist_ok=True)
    (target / "maildirfolder").touch(mode=0o600)
    return False


def scan(root: Path) -> list[Entry]:
    """The messages in the root folder's new/ and cur/, oldest first."""
    entries = []
    for sub in _SUBDIRS:
        with os.scandir(root / sub) as found:
            for item in found:
                if item.name.startswith(".") or not item.is_file():
                    continue
                key = item.name.split(":", 1)[0]
                try:
                    order = delivery_order(key, item.stat().st_mtime)
                except FileNotFoundError:  # claimed or filed by another instance just now
                    continue
                entries.append(Entry(key, Path(item.path), order))
    return sorted(entries, key=lambda e: e.order)


class MaildirMailbox:
    """``Mailbox`` over a local Maildir; waiting polls the new/ and cur/ directory mtimes."""

    def __init__(self, settings: MaildirSettings, processing: str = "Approvals/Processing") -> None:
        self._settings = settings
        self._root = Path(settings.path)
        self._processing = processing
        self._held: dict[str, Path] = {}  # key -> its claimed file in the processing folder
        self._handed_out: set[str] = set()  # keys fetch_new returned (still in the folder)
        self._stamp: tuple[int, ...] | None = None  # new/ and cur/ mtimes at the last listing
        self._unseen = False  # what that listing found

    async def open(self) -> None:
        try:
            for sub in (*_SUBDIRS, "tmp"):  # tolerant of a root another instance is making
                (self._root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            if not os.access(self._root / "cur", os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(13, "cannot read and write", str(self._root / "cur"))
        except OSError as exc:
            raise MailboxError(f"maildir {self._root}: {exc.strerror or exc}") from None
        log.info("maildir opened at %s", self._root)

    async def close(self) -> None:
        return None

    async def fetch_new(self, limit: int | None = None) -> list[Incoming]:
        return await asyncio.to_thread(self._fetch, limit)

    async def claim_new(
        self, owner: str, timeout: float, limit: int | None = None
    ) -> list[Incoming]:
        return await asyncio.to_thread(self._claim, owner, timeout, limit)

    async def move(self, ref: str, folder: str) -> None:
        await asyncio.to_thread(self._move, ref, folder)

    async def restore(self, message_id: str, folder: str) -> bool:
        return await asyncio.to_thread(self._restore, message_id, folder)

    async def wait_for_mail(self, timeout: float) -> bool:
        """Poll every ``poll_seconds`` (at most 0.5 s, so stopping is quick) until new keys."""
        deadline = time.monotonic() + timeout
        step = min(self._settings.poll_seconds, 0.5)
        while True:
            if await asyncio.to_thread(self._has_unseen):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(step, remaining))

    async def peek_headers(self, limit: int) -> list[bytes]:
        return await asyncio.to_thread(self._peek, limit)

    async def describe(self) -> str:
        count = len(await asyncio.to_thread(self._entries))
        noun = "message" if count == 1 else "messages"
        poll = self._settings.poll_seconds
        return f"maildir {self._root}, polling every {poll:g}s, {count} {noun}"

    def _entries(self) -> list[Entry]:
        try:
            return scan(self._root)
        except OSError as exc:
            raise MailboxError(f"maildir {self._root}: {exc.strerror or exc}") from None

    def _peek(self, limit: int) -> list[bytes]:
        """The newest messages' header blocks, newest first; no file is renamed."""
        found = []
        for entry in reversed(self._entries()[-limit:] if limit > 0 else []):
            try:
                found.append(read_header(entry.path, limit=PEEK_BYTES))
            except FileNotFoundError:  # filed by a running instance meanwhile
                continue
            except OSError as exc:
                raise MailboxError(f"maildir {entry.path}: {exc.strerror}") from None
        return found

    def _fetch(self, limit: int | None) -> list[Incoming]:
        entries = self._entries()
        present = {e.key for e in entries}
        if limit is not None:
            entries = entries[: max(limit, 0)]
        found = []
        for entry in entries:
            try:
                raw = entry.path.read_bytes()
            except FileNotFoundError:  # moved or flagged by someone else meanwhile
                continue
            except OSError as exc:
                raise MailboxError(f"maildir {entry.path}: {exc.strerror}") from None
            found.append(Incoming(entry.key, raw, len(raw), arrived=delivered_at(
                entry.key, entry.order[0])))
        self._handed_out = (self._handed_out & present) | {i.ref for i in found}
        self._stamp = None
        return found

    def _claim(self, owner: str, timeout: float, limit: int | None) -> list[Incoming]:
        """Claim by renaming into the processing folder: ``rename`` has exactly one winner.

        A claimed file is named ``<key>,O=<owner>:2,<flags>``; its mtime is the lease,
        renewed every pass. A file whose lease is older than ``timeout`` is taken over by
        renaming it to our own name (again, one winner).
        """
        processing = folder_dir(self._root, self._processing)
        self._ensure_folder(processing)
        tag = ",O=" + "".join(c if c.isalnum() or c in "-_" else "_" for c in owner)
        now = time.time()
        held: dict[str, Path] = {}
        try:
            claimed = scan(processing)
        except OSError as exc:
            raise MailboxError(f"maildir {processing}: {exc.strerror or exc}") from None
        for entry in claimed:
            base, sep, holder = entry.key.rpartition(",O=")
            if not sep:  # put here by hand: anyone's after the timeout
                base, holder = entry.key, ""
            info = entry.path.name[len(entry.key):]
            mine = processing / "cur" / (base + tag + info)
            try:
                if "," + "O=" + holder != tag:
                    if now - entry.path.stat().st_mtime < timeout:
                        continue
                    os.rename(entry.path, mine)
                    log.warning("maildir %s: took over a claim not renewed for %.0f s",
                                base, timeout)
                os.utime(mine)
            except FileNotFoundError:  # filed or taken over by its holder meanwhile
                continue
            held[base] = mine
        for entry in self._entries():
            info = entry.path.name[len(entry.key):] or ":2,"
            mine = processing / "cur" / (entry.key + tag + info)
            try:
                os.rename(entry.path, mine)
                os.utime(mine)
            except FileNotFoundError:  # another instance claimed it first
                continue
            held[entry.key] = mine
        self._held = held
        found: list[Incoming] = []
        for key, path in sorted(held.items(), key=lambda kv: delivery_order(kv[0], 0.0)):
            if limit is not None and len(found) >= limit:
                break
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise MailboxError(f"maildir {path}: {exc.strerror}") from None
            # The claimed file's mtime is our lease: only the key tells the delivery time.
            found.append(Incoming(key, raw, len(raw), arrived=delivered_at(key, None)))
        self._stamp = None
        return found

    def _ensure_folder(self, target: Path) -> None:
        try:
            if make_folder(self._root, target):
                log.info("maildir created folder %s", target.name)
        except OSError as exc:
            why = f"maildir: cannot create {target.name}: {exc.strerror or exc}"
            raise MailboxError(why) from None

    def _move(self, ref: str, folder: str) -> None:
        target = folder_dir(self._root, folder)
        held = self._held.pop(ref, None)
        if held is not None and held.exists():  # claimed: leaves without its owner tag
            key, _, info = held.name.partition(":")
            source, name = held, key.rpartition(",O=")[0] + ":" + info
        else:
            entry = next((e for e in self._entries() if e.key == ref), None)
            if entry is None:
                raise MailboxError(f"maildir: no message {ref!r} in {self._root}")
            source, name = entry.path, entry.path.name
        self._ensure_folder(target)
        try:
            os.rename(source, target / source.parent.name / name)
        except OSError as exc:
            raise MailboxError(f"maildir: cannot move {ref} to {folder}: {exc.strerror}") from None
        self._handed_out.discard(ref)
        self._stamp = None
        log.info("maildir moved %s to %s", ref, folder)

    def _restore(self, message_id: str, folder: str) -> bool:
        """Scan ``folder`` for the Message-ID; rename the file back (filed files carry no
        owner tag, so it is free for any instance)."""
        source = folder_dir(self._root, folder)
        if source == self._root or not (source / "cur").is_dir():
            return False
        try:
            for entry in scan(source):
                try:
                    header = read_header(entry.path)
                except FileNotFoundError:
                    continue
                if message_id_of(email.message_from_bytes(header)) == message_id:
                    os.rename(entry.path, self._root / entry.path.parent.name / entry.path.name)
                    log.info("maildir moved %s from %s back to the inbox", entry.key, folder)
                    self._stamp = None
                    return True
        except OSError as exc:
            raise MailboxError(f"maildir: cannot restore from {folder}: {exc.strerror}") from None
        return False

    def _has_unseen(self) -> bool:
        """Keys that fetch_new has not handed out; the directories are listed only on change."""
        try:
            stats = [os.stat(self._root / sub) for sub in _SUBDIRS]
        except OSError as exc:
            raise MailboxError(f"maildir {self._root}: {exc.strerror}") from None
        stamp = tuple(s.st_mtime_ns for s in stats)
        recent = time.time() - max(s.st_mtime for s in stats) < _RECENT
        if stamp == self._stamp and not recent:
            return self._unseen
        self._stamp = stamp
        self._unseen = any(e.key not in self._handed_out for e in self._entries())
        return self._unseen
