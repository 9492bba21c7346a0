"""The IMAP mailbox: imapclient (synchronous) driven from asyncio through a worker thread.

One connection carries every command; an ``asyncio.Lock`` keeps calls one at a time, and
a cancelled call waits for its thread to let go of the connection before the lock frees.
Waiting uses IDLE where the server offers it, in short ``idle_check`` slices so that a
stop is noticed within ``_SLICE`` seconds, else a poll every ``poll_seconds``.

Errors: every socket, TLS and IMAP failure leaves this module as ``MailboxError``, with the
password scrubbed from its text. A dropped connection is reconnected once per call.

Messages with attachments are never downloaded whole: the header and the text parts are
fetched and reassembled into a synthetic multipart/mixed (``Incoming.partial``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import (
    CapabilityError,
    IMAPClientAbortError,
    IMAPClientError,
    LoginError,
)

from responder.config import ImapSettings
from responder.connections.oauth import TokenError, TokenSource, token_source
from responder.mailboxes import PEEK_BYTES, Incoming, MailboxAuthError, MailboxError
from responder.reading.message import message_id as message_id_of

log = logging.getLogger("responder.imap")  # the name logs have always carried

T = TypeVar("T")

_SLICE = 0.5  # longest a blocked IDLE/poll wait goes without checking whether it was stopped
_WHOLE_BATCH_BYTES = 16 * 1024 * 1024  # one FETCH BODY.PEEK[] brings at most about this much
_DROPPED = (IMAPClientAbortError, OSError)  # the connection is gone: reconnect and retry once
_TRYCREATE_PAUSES = (0.05, 0.2, 0.5)  # waits before a MOVE refused [TRYCREATE] is retried
_TLS_TEXT = {"implicit": "implicit TLS", "starttls": "STARTTLS", "none": "no TLS"}


# --- pure helpers: BODYSTRUCTURE -> what to fetch; fetched pieces -> a message -------------


@dataclass(frozen=True)
class Leaf:
    """One non-multipart body part: its IMAP part number and what it is."""

    part: str  # "1", "2.1", ...
    maintype: str  # lower case: "text", "application", "message", ...
    subtype: str
    attachment: bool  # Content-Disposition: attachment


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")


def _at(seq: Sequence[Any], index: int) -> Any:
    return seq[index] if len(seq) > index else None


def _is_attachment(disposition: Any) -> bool:
    return (
        isinstance(disposition, tuple)
        and bool(disposition)
        and _text(disposition[0]).lower() == "attachment"
    )


def leaves(body: Sequence[Any], prefix: str = "") -> list[Leaf]:
    """Every leaf of a parsed BODYSTRUCTURE, with part numbers as IMAP counts them.

    A message/rfc822 part is one leaf: a forwarded message is an attachment to us.
    """
    if isinstance(body[0], list):  # multipart: (parts, subtype, params, disposition, ...)
        found: list[Leaf] = []
        for index, child in enumerate(body[0], start=1):
            found += leaves(child, f"{prefix}.{index}" if prefix else str(index))
        return found
    maintype, subtype = _text(body[0]).lower(), _text(body[1]).lower()
    # Extension data follows the basic fields: text has a line count, message/rfc822 an
    # envelope, a body and a line count, so MD5 and then the disposition move along.
    disposition_at = {"text": 9, "message": 11 if subtype == "rfc822" else 8}.get(maintype, 8)
    disposition = _at(body, disposition_at)
    return [Leaf(prefix or "1", maintype, subtype, _is_attachment(disposition))]


def is_text_only(found: Iterable[Leaf]) -> bool:
    """Nothing but inline text: such a message is fetched whole, byte for byte (DKIM)."""
    return all(leaf.maintype == "text" and not leaf.attachment for leaf in found)


def readable_parts(found: Iterable[Leaf]) -> tuple[str, ...]:
    """The inline text/plain and text/html parts: all we fetch of a message with attachments."""
    return tuple(
        leaf.part
        for leaf in found
        if leaf.maintype == "text" and leaf.subtype in ("plain", "html") and not leaf.attachment
    )


def _header_fields(header: bytes) -> list[bytes]:
    """Split a header block into fields, each with its folded continuation lines."""
    fields: list[bytes] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def reassemble(header: bytes, parts: Sequence[tuple[bytes, bytes]], boundary: str) -> bytes:
    """A multipart/mixed message: the original header, then each (MIME header, body) part.

    The original Content-Type and Content-Transfer-Encoding no longer describe the body,
    so they give way to a fresh multipart/mixed boundary.
    """
    dropped = (b"content-type:", b"content-transfer-encoding:")
    kept = [f for f in _header_fields(header) if not f.lower().startswith(dropped)]
    kept = [f if f.endswith(b"\n") else f + b"\r\n" for f in kept]
    out = [*kept, f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'.encode(), b"\r\n"]
    for mime, body in parts:
        # The CRLF before a boundary belongs to the boundary, so the body keeps its own.
        out += [f"--{boundary}\r\n".encode(), mime, body, b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def server_folder(folder: str, delimiter: str | None, prefix: str = "") -> str:
    """Our "Approvals/Done" in the server's own spelling ("INBOX.Approvals.Done" on Courier)."""
    names = [name for name in folder.split("/") if name]
    name = (delimiter or "/").join(names)
    if name.upper() == "INBOX" or not prefix or name.startswith(prefix):
        return name
    return prefix + name


CLAIM_PREFIX = "$Responder_"  # + the owner: the keyword that says who works on a message
LEASE_KEYWORD = "$ResponderLease"  # toggled by the holder every pass: its claim is alive


def claim_keyword(owner: str) -> str:
    """The claim keyword of one instance (an IMAP atom: letters, digits, "-", "_")."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in owner)
    return CLAIM_PREFIX + (safe or "_")


def parse_uid_set(text: str) -> set[int]:
    """ "1:3,7" -> {1, 2, 3, 7} (as in a MODIFIED response code)."""
    found: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (not high or high.isdigit()):
            found.update(range(int(low), int(high or low) + 1))
    return found


def signals_mail(responses: Iterable[Any]) -> bool:
    """An untagged EXISTS (or a non-zero RECENT) among IDLE responses: mail has arrived."""
    for response in responses:
        if len(response) >= 2 and isinstance(response[0], int):
            kind = response[1]
            if kind == b"EXISTS" or (kind == b"RECENT" and response[0] > 0):
                return True
    return False


def arrival(internaldate: Any) -> datetime | None:
    """INTERNALDATE as an aware UTC time (imapclient gives naive local time by default)."""
    if not isinstance(internaldate, datetime):
        return None
    when: datetime = internaldate
    if when.tzinfo is None:
        when = when.astimezone()  # naive: the local time of this machine
    return when.astimezone(UTC)


def _batches(uids: list[int], sizes: dict[int, int]) -> list[list[int]]:
    batches: list[list[int]] = []
    total = _WHOLE_BATCH_BYTES
    for uid in uids:
        if total + sizes.get(uid, 0) > _WHOLE_BATCH_BYTES:
            batches.append([])
            total = 0
        batches[-1].append(uid)
        total += sizes.get(uid, 0)
    return batches


# --- the adapter -------------------------------------------------------------------------


class ImapMailbox:
    """``Mailbox`` over IMAP: one connection, IDLE or polling, attachments left on the server."""

    def __init__(self, settings: ImapSettings, tokens: TokenSource | None = None,
                 *, read_only: bool = False) -> None:
        self._settings = settings
        self._read_only = read_only  # EXAMINE, not SELECT: for discovery, nothing changes
        self._tokens = tokens if tokens is not None else token_source(settings)
        self._loop: asyncio.AbstractEventLoop | None = None  # where the token source runs
        self._mechanism = ""  # the SASL mechanism of the last OAuth2 sign-in
        self._spent: list[str] = []  # recent tokens, scrubbed from error texts
        self._client: Any = None  # IMAPClient (untyped)
        self._caps: frozenset[bytes] = frozenset()
        self._delimiter: str | None = "/"
        self._prefix = ""
        self._folder = settings.folder
        self._known_folders: set[str] = set()
        self._uidvalidity: int | None = None
        self._high_uid = 0  # the highest UID handed out by fetch_new
        self._lock = asyncio.Lock()
        self._waiting: threading.Event | None = None  # the stop flag of a wait in progress
        self._foreign: dict[int, tuple[int, float]] = {}  # others' claims: uid -> (modseq, seen)

    # -- the Mailbox interface --

    async def open(self) -> None:
        await self._call(self._reopen)

    async def close(self) -> None:
        if self._waiting is not None:
            self._waiting.set()  # a wait in progress returns within _SLICE seconds
        await self._call(self._disconnect)

    async def fetch_new(self, limit: int | None = None) -> list[Incoming]:
        return await self._call(lambda: self._retrying(lambda c: self._fetch(c, limit)))

    async def claim_new(
        self, owner: str, timeout: float, limit: int | None = None
    ) -> list[Incoming]:
        """Claim with a keyword per owner, set by a conditional STORE (see ``_claim``)."""
        work = lambda c: self._fetch_uids(c, self._claim(c, owner, timeout, limit))  # noqa: E731
        return await self._call(lambda: self._retrying(work))

    async def move(self, ref: str, folder: str) -> None:
        try:
            uid = int(ref)
        except ValueError:
            raise MailboxError(f"not an IMAP UID: {ref!r}") from None
        await self._call(lambda: self._retrying(lambda c: self._move(c, uid, folder)))

    async def restore(self, message_id: str, folder: str) -> bool:
        work = lambda c: self._restore(c, message_id, folder)  # noqa: E731
        return await self._call(lambda: self._retrying(work))

    async def wait_for_mail(self, timeout: float) -> bool:
        stop = threading.Event()
        self._waiting = stop
        try:
            return await self._call(lambda: self._wait(timeout, stop), stop)
        finally:
            if self._waiting is stop:
                self._waiting = None

    async def peek_headers(self, limit: int) -> list[bytes]:
        return await self._call(lambda: self._retrying(lambda c: self._peek(c, limit)))

    async def describe(self) -> str:
        count = await self._call(lambda: self._retrying(self._count))
        s = self._settings
        tls = _TLS_TEXT[s.tls]
        if s.tls != "none" and not s.verify_tls:
            tls += ", certificate not verified"
        if self._uses_idle():
            waiting = "IDLE supported"
        else:
            why = "IDLE off" if not s.idle else "no IDLE"
            waiting = f"{why}, polling every {s.poll_seconds:g}s"
        noun = "message" if count == 1 else "messages"
        if self._tokens is not None:
            return (
                f"imap {s.host}:{s.effective_port} ({tls}), signed in as {s.username} with "
                f"{s.auth} ({self._mechanism}), folder {self._folder}, {waiting}, {count} {noun}"
            )
        return (
            f"imap {s.username}@{s.host}:{s.effective_port} ({tls}), folder {self._folder}, "
            f"{waiting}, {count} {noun}"
        )

    # -- running blocking work --

    async def _call(self, work: Callable[[], T], stop: threading.Event | None = None) -> T:
        """Run ``work`` in a thread, one at a time; a cancelled caller waits for it to end."""
        async with self._lock:
            self._loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(asyncio.to_thread(work))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if stop is not None:
                    stop.set()
                await asyncio.wait([task])
                if not task.cancelled():
                    task.exception()  # seen, so asyncio does not log it as never retrieved
                raise

    def _retrying(self, op: Callable[[Any], T]) -> T:
        """Run ``op`` on the connection; if it had dropped, reconnect once and run it again."""
        try:
            return op(self._connection())
        except _DROPPED as exc:
            log.warning("imap connection lost (%s); reconnecting", self._scrub(exc))
            self._forget_connection()
        except IMAPClientError as exc:
            raise MailboxError(f"imap: {self._scrub(exc)}") from None
        try:
            return op(self._connection())
        except (IMAPClientError, OSError) as exc:
            self._forget_connection()
            raise MailboxError(f"imap: failed after reconnecting: {self._scrub(exc)}") from None

    def _connection(self) -> Any:
        if self._client is None:
            self._connect()
        return self._client

    # -- connecting --

    def _reopen(self) -> None:
        self._disconnect()
        self._connect()

    def _connect(self) -> None:
        s = self._settings
        where = f"{s.host}:{s.effective_port}"
        client = self._dial(where)
        try:
            self._sign_in(client, where)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        self._client = client
        log.info(
            "imap signed in as %s at %s (%s), folder %s", s.username, where, s.tls, self._folder
        )

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self._settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _dial(self, where: str) -> Any:
        s = self._settings
        context = self._tls_context() if s.tls != "none" else None
        try:
            client = IMAPClient(
                s.host,
                s.effective_port,
                ssl=s.tls == "implicit",
                ssl_context=context,
                timeout=s.timeout,
            )
            if s.tls == "starttls":
                try:
                    client.starttls(context)
                except BaseException:
                    with contextlib.suppress(Exception):
                        client.shutdown()
                    raise
        except CapabilityError:
            raise MailboxError(f"imap {where}: the server does not offer STARTTLS") from None
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"imap {where}: TLS certificate not trusted ({exc.verify_message}); "
                "set verify_tls = false only for a self-signed test server"
            ) from None
        except ssl.SSLError as exc:
            raise MailboxError(f"imap {where}: TLS handshake failed ({exc.reason})") from None
        except ConnectionRefusedError:
            raise MailboxError(f"imap {where}: connection refused") from None
        except socket.gaierror as exc:
            raise MailboxError(f"imap {where}: cannot resolve host ({exc.strerror})") from None
        except TimeoutError:
            raise MailboxError(f"imap {where}: timed out connecting") from None
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"imap {where}: cannot connect ({self._scrub(exc)})") from None
        return client

    def _token(self, force_refresh: bool) -> str:
        """A token from the (async) source, asked for from this worker thread."""
        assert self._tokens is not None and self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._tokens.token(force_refresh), self._loop)
        token = future.result(timeout=self._settings.timeout * 2)
        self._spent = [token, *self._spent[:3]]
        return token

    def _oauth_login(self, client: Any, where: str) -> None:
        """SASL XOAUTH2 (or OAUTHBEARER); a refused token is replaced once by a fresh one."""
        s = self._settings
        offered = {c.upper() for c in client.capabilities()}
        bearer = s.sasl == "oauthbearer" or (
            s.sasl == "auto" and b"AUTH=XOAUTH2" not in offered and b"AUTH=OAUTHBEARER" in offered
        )
        self._mechanism = "OAUTHBEARER" if bearer else "XOAUTH2"
        for force_refresh in (False, True):
            try:
                token = self._token(force_refresh)
            except TokenError as exc:
                raise MailboxError(f"imap {where}: no token for {s.username}: {exc}") from None
            except TimeoutError:
                raise MailboxError(f"imap {where}: timed out getting an OAuth2 token") from None
            try:
                if bearer:
                    client.oauthbearer_login(s.username, token)
                else:
                    client.oauth2_login(s.username, token)
                return
            except LoginError as exc:
                if force_refresh:
                    raise MailboxAuthError(
                        f"imap {where}: {self._mechanism} sign-in refused for {s.username} "
                        f"even with a fresh {s.auth} token ({self._scrub(exc)})"
                    ) from None
                log.info("imap %s sign-in refused; retrying once with a fresh token",
                         self._mechanism)

    def _sign_in(self, client: Any, where: str) -> None:
        s = self._settings
        try:
            if self._tokens is not None:
                self._oauth_login(client, where)
            else:
                assert s.password is not None  # required with auth = "password"
                client.login(s.username, s.password.get_secret_value())
        except LoginError as exc:
            raise MailboxAuthError(
                f"imap {where}: login refused for {s.username} ({self._scrub(exc)})"
            ) from None
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"imap {where}: login failed ({self._scrub(exc)})") from None
        try:
            self._caps = frozenset(c.upper() for c in client.capabilities())
            self._learn_hierarchy(client)
            self._folder = server_folder(s.folder, self._delimiter, self._prefix)
            selected = client.select_folder(self._folder, readonly=self._read_only)
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"imap {where}: folder {s.folder}: {self._scrub(exc)}") from None
        uidvalidity = selected.get(b"UIDVALIDITY")
        if uidvalidity != self._uidvalidity:
            self._uidvalidity, self._high_uid = uidvalidity, 0
        self._known_folders = set()

    def _learn_hierarchy(self, client: Any) -> None:
        """The personal namespace's prefix and separator, for translating folder names."""
        if b"NAMESPACE" in self._caps:
            personal = client.namespace().personal
            if personal:
                prefix, delimiter = personal[0]
                self._prefix, self._delimiter = _text(prefix), delimiter or None
                return
        listed = client.list_folders("", "")
        self._prefix = ""
        self._delimiter = (_text(listed[0][1]) or None) if listed else "/"

    def _forget_connection(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc)
        if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
            text = text[2:-1]
        password = self._settings.password.get_secret_value() if self._settings.password else ""
        for secret in (password, *self._spent):
            text = text.replace(secret, "***") if secret else text
        return text

    # -- fetching --

    def _count(self, client: Any) -> int:
        client.noop()
        return len(client.search("ALL"))

    def _peek(self, client: Any, limit: int) -> list[bytes]:
        """The newest messages' header blocks, newest first: BODY.PEEK sets no flag."""
        client.noop()
        uids = sorted(client.search("ALL"))[-limit:] if limit > 0 else []
        data = client.fetch(uids, [f"BODY.PEEK[HEADER]<0.{PEEK_BYTES}>"]) if uids else {}
        return [bytes(data[uid].get(b"BODY[HEADER]<0>") or data[uid].get(b"BODY[HEADER]") or b"")
                for uid in reversed(uids) if uid in data]

    def _fetch(self, client: Any, limit: int | None) -> list[Incoming]:
        client.noop()  # Dovecot shows another client's APPENDs to SEARCH only after a sync
        uids = sorted(client.search("ALL"))
        if limit is not None:
            uids = uids[: max(limit, 0)]
        return self._fetch_uids(client, uids)

    def _fetch_uids(self, client: Any, uids: list[int]) -> list[Incoming]:
        if not uids:
            return []
        meta = client.fetch(uids, ["RFC822.SIZE", "BODYSTRUCTURE", "INTERNALDATE"])
        sizes = {uid: int(meta[uid][b"RFC822.SIZE"]) for uid in uids if uid in meta}
        whole: list[int] = []
        partial: dict[tuple[str, ...], list[int]] = {}
        for uid in sizes:
            found = leaves(meta[uid][b"BODYSTRUCTURE"])
            if is_text_only(found):
                whole.append(uid)
            else:
                partial.setdefault(readable_parts(found), []).append(uid)
        raws = self._fetch_whole(client, whole, sizes)
        for parts, group in partial.items():
            raws.update(self._fetch_text_parts(client, group, parts))
        self._high_uid = max(self._high_uid, *uids)
        log.debug("imap fetched %d messages (%d whole)", len(raws), len(whole))
        return [
            Incoming(str(uid), raws[uid], sizes[uid], partial=uid not in whole,
                     arrived=arrival(meta[uid].get(b"INTERNALDATE")))
            for uid in uids
            if uid in raws
        ]

    def _fetch_whole(self, client: Any, uids: list[int], sizes: dict[int, int]) -> dict[int, bytes]:
        raws: dict[int, bytes] = {}
        for batch in _batches(uids, sizes):
            data = client.fetch(batch, ["BODY.PEEK[]"])
            raws.update({uid: data[uid][b"BODY[]"] for uid in batch if uid in data})
        return raws

    def _fetch_text_parts(
        self, client: Any, uids: list[int], parts: tuple[str, ...]
    ) -> dict[int, bytes]:
        """One FETCH for messages whose text parts sit at the same part numbers."""
        items = ["BODY.PEEK[HEADER]"]
        for part in parts:
            items += [f"BODY.PEEK[{part}.MIME]", f"BODY.PEEK[{part}]"]
        data = client.fetch(uids, items)
        raws: dict[int, bytes] = {}
        for uid in uids:
            if uid not in data:
                continue
            got = data[uid]
            pieces = [
                (got.get(f"BODY[{p}.MIME]".encode()) or b"", got.get(f"BODY[{p}]".encode()) or b"")
                for p in parts
            ]
            boundary = "=_responder_" + secrets.token_hex(12)
            raws[uid] = reassemble(got.get(b"BODY[HEADER]") or b"", pieces, boundary)
        return raws

    # -- claiming (several instances on one mailbox) --

    def _claim(self, client: Any, owner: str, timeout: float, limit: int | None) -> list[int]:
        """The UIDs this owner holds after claiming the free ones and taking over stale ones.

        A claim is the keyword ``$Responder_<owner>``, set with ``UID STORE (UNCHANGEDSINCE
        m)`` (CONDSTORE): a message another instance changed since we looked is refused
        (``[MODIFIED ...]``), so exactly one claimant wins. (MOVE into a folder is no lock:
        two sessions moving the same message at once can both get a copy in Dovecot.) A
        holder renews its claims every pass by toggling ``$ResponderLease``, which changes
        the message's MODSEQ; a claim whose MODSEQ has not changed for ``timeout`` seconds
        of our watching is taken over, again by a conditional STORE.

        The conditional STORE alone is not a lock in Dovecot 2.3: two sessions storing
        ``UNCHANGEDSINCE m`` at the same moment can both succeed (13 of 200 tries with
        the two STOREs released together), and both instances then acted on every
        message. So every claim is read back after it is stored (``_confirmed``).
        """
        mine_kw = claim_keyword(owner)
        client.noop()
        uids = sorted(client.search("ALL"))
        if limit is not None:
            uids = uids[: max(limit, 0)]
        if not uids:
            return []
        self._high_uid = max(self._high_uid, *uids)
        meta = client.fetch(uids, ["FLAGS", "MODSEQ"])
        now = time.monotonic()
        mine: list[int] = []
        free: list[int] = []
        stale: list[int] = []
        modseq: dict[int, int] = {}
        for uid in uids:
            if uid not in meta:
                continue
            flags = {_text(f) for f in meta[uid].get(b"FLAGS", ())}
            modseq[uid] = int((meta[uid].get(b"MODSEQ") or (0,))[0])
            holders = {f for f in flags if f.startswith(CLAIM_PREFIX)}
            if not holders:
                free.append(uid)
            elif holders == {mine_kw}:
                mine.append(uid)
            else:
                seen = self._foreign.get(uid)
                if seen is None or seen[0] != modseq[uid]:
                    self._foreign[uid] = (modseq[uid], now)
                elif now - seen[1] >= timeout:
                    stale.append(uid)
        self._foreign = {u: v for u, v in self._foreign.items() if u in modseq}
        lease = {u for u in mine if LEASE_KEYWORD in {_text(f) for f in meta[u][b"FLAGS"]}}
        kept = self._store_if_unchanged(client, [u for u in mine if u in lease], modseq,
                                        "-FLAGS.SILENT", LEASE_KEYWORD)
        kept += self._store_if_unchanged(client, [u for u in mine if u not in lease], modseq,
                                         "+FLAGS.SILENT", LEASE_KEYWORD)
        won = self._store_if_unchanged(client, free, modseq, "+FLAGS.SILENT", mine_kw)
        taking: dict[int, tuple[frozenset[str], bool]] = {}
        for uid in stale:  # rare: one at a time; the old holder's keyword goes once confirmed
            flags = {_text(f) for f in meta[uid][b"FLAGS"]}
            if self._store_if_unchanged(client, [uid], modseq, "+FLAGS.SILENT", mine_kw):
                old = frozenset(f for f in flags if f.startswith(CLAIM_PREFIX)) - {mine_kw}
                taking[uid] = (old, LEASE_KEYWORD in flags)
        if len(won) < len(free):
            log.info("imap: %d of %d messages claimed by another instance first",
                     len(free) - len(won), len(free))
        return self._confirmed(client, mine_kw, sorted(kept + won), taking, timeout)

    def _confirmed(
        self, client: Any, mine_kw: str, held: list[int],
        taking: dict[int, tuple[frozenset[str], bool]], timeout: float,
    ) -> list[int]:
        """The claims that are ours alone, read back after storing them.

        A message carrying another instance's keyword beside ours was claimed by both at
        once: we take our keyword off and leave it (to them, or to a later pass). Of two
        such claimants at least one sees the other, since each reads back after its own
        STORE is done; so at most one goes on. A takeover is ours only if no new claimant
        came and the old holder did not renew its lease meanwhile (it may be slow, not
        dead); then the old holder's keyword is removed.
        """
        uids = held + list(taking)
        if not uids:
            return []
        client.noop()  # see every STORE finished before ours was
        now = client.fetch(uids, ["FLAGS"])
        ours: list[int] = []
        lost: list[int] = []
        for uid in uids:
            if uid not in now:
                continue  # gone: filed by someone else meanwhile
            flags = {_text(f) for f in now[uid].get(b"FLAGS", ())}
            holders = {f for f in flags if f.startswith(CLAIM_PREFIX)}
            if uid in taking:
                old, lease = taking[uid]
                alone = holders - old == {mine_kw} and (LEASE_KEYWORD in flags) == lease
            else:
                alone = holders == {mine_kw}
            if not alone:
                lost.append(uid)
                if mine_kw in holders:
                    client._imap.uid("STORE", str(uid), "-FLAGS.SILENT", f"({mine_kw})")
                continue
            if uid in taking and taking[uid][0]:
                old_kws = " ".join(sorted(taking[uid][0]))
                client._imap.uid("STORE", str(uid), "-FLAGS.SILENT", f"({old_kws})")
            if uid in taking:
                log.warning("imap UID %d: took over a claim not renewed for %.0f s",
                            uid, timeout)
                self._foreign.pop(uid, None)
            ours.append(uid)
        if lost:
            log.info("imap: %d messages claimed by another instance at the same moment "
                     "(UIDs %s); left to it or to a later pass",
                     len(lost), ",".join(map(str, sorted(lost))))
        return sorted(ours)

    def _store_if_unchanged(
        self, client: Any, uids: list[int], modseq: dict[int, int], op: str, flags: str
    ) -> list[int]:
        """STORE ``op (flags)`` on ``uids`` unless changed since we read them: those stored."""
        if not uids:
            return []
        uid_set = ",".join(map(str, uids))
        if b"CONDSTORE" not in self._caps:  # no lock to be had: fine for a single instance
            client._imap.uid("STORE", uid_set, op, f"({flags})")
            return uids
        since = max(modseq[u] for u in uids)
        client._imap.untagged_responses.pop("MODIFIED", None)
        typ, data = client._imap.uid("STORE", uid_set, f"(UNCHANGEDSINCE {since})", op,
                                     f"({flags})")
        if typ != "OK":
            raise IMAPClientError(f"UID STORE failed: {data!r}")
        refused: set[int] = set()
        for text in client._imap.untagged_responses.pop("MODIFIED", []):
            refused |= parse_uid_set(_text(text).split()[0] if text else "")
        return [u for u in uids if u not in refused]

    # -- filing --

    def _move(self, client: Any, uid: int, folder: str) -> None:
        """File ``uid`` in ``folder``, creating it when needed.

        A folder another instance is creating at this very moment can be reported as existing
        (ALREADYEXISTS) before it accepts messages; the server then answers our MOVE with
        [TRYCREATE] (RFC 3501 6.4.7), which asks us to create it and try again: we do, briefly.
        """
        target = server_folder(folder, self._delimiter, self._prefix)
        for pause in (*_TRYCREATE_PAUSES, None):
            self._ensure_folder(client, target)
            try:
                self._transfer(client, uid, target)
                return
            except IMAPClientError as exc:
                if pause is None or "TRYCREATE" not in str(exc).upper():
                    raise
                log.info("imap folder %s not ready yet; trying again", target)
                self._known_folders.discard(target)
                time.sleep(pause)  # a worker thread: the event loop is not held

    def _transfer(self, client: Any, uid: int, target: str) -> None:
        if b"MOVE" in self._caps:
            client.move([uid], target)
        else:
            client.copy([uid], target)
            client.add_flags([uid], [DELETED], silent=True)
            if b"UIDPLUS" in self._caps:
                client.uid_expunge([uid])
            else:  # plain EXPUNGE also removes whatever else was marked \Deleted
                client.expunge()
        log.info("imap moved UID %d to %s", uid, target)

    def _restore(self, client: Any, message_id: str, folder: str) -> bool:
        """SEARCH HEADER Message-ID in ``folder`` (a substring match: checked exactly), then
        drop our claim keywords and move it back; the watched folder is selected again."""
        source = server_folder(folder, self._delimiter, self._prefix)
        if source == self._folder or not client.folder_exists(source):
            return False
        client.select_folder(source)
        try:
            uids = sorted(client.search(["HEADER", "Message-ID", message_id]))
            found = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
            same = [uid for uid in uids if uid in found and any(
                message_id_of(email.message_from_bytes(value)) == message_id
                for name, value in found[uid].items() if name.startswith(b"BODY[HEADER"))]
            if not same:
                return False
            uid = same[0]
            marks = [f for f in (_text(x) for x in client.get_flags([uid]).get(uid, ()))
                     if f.startswith(CLAIM_PREFIX) or f == LEASE_KEYWORD]
            if marks:
                client.remove_flags([uid], marks, silent=True)
            self._move(client, uid, self._settings.folder)
            return True
        finally:
            client.select_folder(self._folder)

    def _ensure_folder(self, client: Any, name: str) -> None:
        if name in self._known_folders:
            return
        if not client.folder_exists(name):
            try:
                client.create_folder(name)
                log.info("imap created folder %s", name)
            except IMAPClientError as exc:
                # Another instance made it between our look and our CREATE: fine. Dovecot
                # says NO [ALREADYEXISTS] (RFC 5530); a server without the code is asked.
                if "ALREADYEXISTS" not in str(exc).upper() and not client.folder_exists(name):
                    raise
                log.info("imap folder %s was just created by another instance", name)
            with contextlib.suppress(IMAPClientError):
                client.subscribe_folder(name)
        self._known_folders.add(name)

    # -- waiting --

    def _uses_idle(self) -> bool:
        return self._settings.idle and b"IDLE" in self._caps

    def _wait(self, timeout: float, stop: threading.Event) -> bool:
        """True on new mail; a dropped connection also counts as "maybe mail"."""
        if self._retrying(self._has_unseen):  # a connection that died idle is re-made here
            return True
        try:
            client = self._connection()
            deadline = time.monotonic() + timeout
            if self._uses_idle():
                return self._idle_until(client, deadline, stop)
            return self._poll_until(client, deadline, stop)
        except _DROPPED as exc:
            # The next call reconnects: a server that is restarting needs a moment first.
            log.warning("imap connection lost while waiting (%s)", self._scrub(exc))
            self._forget_connection()
            return True
        except IMAPClientError as exc:
            self._forget_connection()  # it may be stuck in IDLE: start afresh next time
            raise MailboxError(f"imap: {self._scrub(exc)}") from None

    def _has_unseen(self, client: Any) -> bool:
        """Mail newer than anything fetch_new handed out (it may have come while we worked)."""
        client.noop()
        uids = client.search(["UID", f"{self._high_uid + 1}:*"])
        return any(uid > self._high_uid for uid in uids)

    def _idle_until(self, client: Any, deadline: float, stop: threading.Event) -> bool:
        renew_every = self._settings.idle_renew_seconds
        renew_at = time.monotonic() + renew_every
        client.idle()
        mail = False
        while not mail and not stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= renew_at:  # servers end IDLE after ~29 minutes
                mail = signals_mail(client.idle_done()[1])
                client.idle()
                renew_at = now + renew_every
                continue
            span = min(_SLICE, deadline - now)
            responses = client.idle_check(timeout=span)
            mail = signals_mail(responses)
            if not responses and time.monotonic() - now < span / 2:
                # Woken with nothing to read: EOF. idle_done() raises if the line is dead.
                mail = signals_mail(client.idle_done()[1])
                client.idle()
        return signals_mail(client.idle_done()[1]) or mail

    def _poll_until(self, client: Any, deadline: float, stop: threading.Event) -> bool:
        while (remaining := deadline - time.monotonic()) > 0:
            if stop.wait(min(self._settings.poll_seconds, remaining)):
                return False
            if self._has_unseen(client):
                return True
        return False
