"""An Exchange Online mailbox through Microsoft Graph (app-only), with IMAP's guarantees.

New mail: a delta query on the watched folder (``mailFolders/{folder}/messages/delta``).
The delta link is kept in the ledger (``mailbox_state``), so a restart resumes where the
last pass left off; an expired link (HTTP 410, ``syncStateNotFound``) starts a full
re-scan, which is harmless: everything still in the watched folder is unclaimed work.
The link is stored only once every message it reported has been claimed, so a claim that
failed is reported again after a restart.

Claims: a message is claimed by moving it into this instance's own folder under the
processing folder (``Approvals/Processing/<owner>``). A move deletes the source item and
creates a new one with a new id, so of two instances moving one message only one gets
it (the other's move answers 404). What sits in our folder is ours, also after a crash or
kill -9: the next pass picks it up again. A holder renews a claim it keeps for long (a
message waiting for Halo) by toggling a category, which changes the message's
``lastModifiedDateTime``; a message in another instance's folder unchanged for the claim
timeout (its holder died) is taken over by moving it into ours (again one winner).

Text only: a message up to ``WHOLE_BYTES`` (its size from PidTagMessageSize) is read
whole as MIME (``$value``), byte for byte, so our own DKIM check can run. A larger one
is read as its transport headers (``internetMessageHeaders``) and its body as Exchange
gives it, reassembled into a multipart/mixed (``Incoming.partial``); its attachments are
never requested. What is lost then: the raw bytes (no DKIM check of our own; the
receiving server's Authentication-Results is still read), the text/plain alternative of
a multipart/alternative (Exchange gives one body), and any header Graph leaves out of
``internetMessageHeaders`` (it can be empty for some items; we then fall back to the
message's From, Subject, Message-ID and Date properties, which no authentication
result covers, so such a message is not trusted).

Errors: every Graph failure leaves as ``MailboxError`` (secrets and tokens never included).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from responder.config import GraphSettings
from responder.connections.graph import GraphClient, GraphError
from responder.ledger import Ledger
from responder.mailboxes import Incoming, MailboxAuthError, MailboxError
from responder.mailboxes.imap import reassemble

log = logging.getLogger("responder.graph")

WHOLE_BYTES = 1024 * 1024  # a message up to this size is read whole ($value)
SIZE_PROPERTY = "Integer 0x0E08"  # PidTagMessageSize, as a Graph extended property id
_SIZE_KEY = ("integer", 0x0E08)  # what SIZE_PROPERTY means, however Graph spells it back
LEASE_CATEGORY = "Responder lease"  # toggled by a holder to renew a claim it keeps long
PAGE_SIZE = 50
FRESH_SECONDS = 1.0  # a pass this soon after wait_for_mail found mail does not ask again
WELL_KNOWN = frozenset({"inbox", "archive", "deleteditems", "junkemail", "drafts",
                        "sentitems", "outbox", "msgfolderroot"})
_EXPIRED_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})
_SIZE_EXPAND = f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')"


@dataclass(frozen=True)
class Listed:
    """A message as a folder listing shows it."""

    id: str
    received: datetime | None
    size: int | None
    modified: str = ""


# --- pure helpers ----------------------------------------------------------------------


def odata_string(value: str) -> str:
    """A string literal for $filter: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def property_key(prop_id: Any) -> tuple[str, int] | None:
    """A MAPI tag property id as (type, tag): "Integer 0x0E08" and "Integer 0xe08" are one.

    Graph answers with its own canonical spelling of the id we asked for (lower-case hex
    without leading zeros), so ids are compared by what they name, not as strings.
    """
    parts = str(prop_id)[:64].split()
    if len(parts) != 2 or not parts[1].lower().startswith("0x"):
        return None
    digits = parts[1][2:]
    if not 0 < len(digits) <= 8 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    return parts[0].lower(), int(digits, 16)


def listed(item: dict[str, Any]) -> Listed:
    size = None
    for prop in item.get("singleValueExtendedProperties") or ():
        if isinstance(prop, dict) and property_key(prop.get("id")) == _SIZE_KEY:
            try:
                size = int(str(prop.get("value"))[:20])
            except (TypeError, ValueError):
                size = None
    return Listed(str(item["id"]), parse_time(item.get("receivedDateTime")), size,
                  str(item.get("lastModifiedDateTime") or ""))


def folder_exists(exc: GraphError) -> bool:
    """Graph's answer to creating a folder that exists: its documented code whatever the
    HTTP status that carries it (409 and 400 are both reported), or any 409. The caller
    looks the folder up again, so a wrong guess here costs one request, not a folder."""
    return exc.code.lower() == "errorfolderexists" or exc.status == 409


def _address(value: Any) -> str:
    address = (value or {}).get("emailAddress") or {} if isinstance(value, dict) else {}
    name, mail = str(address.get("name") or ""), str(address.get("address") or "")
    if name and mail and name != mail:  # quoted, so the name can never read as structure
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{mail}>'
    return mail


def headers_of(message: dict[str, Any]) -> bytes:
    """The header block: ``internetMessageHeaders``, else what the properties tell."""
    fields = [(str(h.get("name", "")), str(h.get("value", "")))
              for h in message.get("internetMessageHeaders") or () if h.get("name")]
    if not fields:  # Graph leaves them out for some items: no authentication evidence
        fields = [(name, value) for name, value in (
            ("From", _address(message.get("from"))),
            ("Subject", str(message.get("subject") or "")),
            ("Message-ID", str(message.get("internetMessageId") or "")),
            ("Date", _rfc2822(parse_time(message.get("sentDateTime")))),
        ) if value]
    lines = [f"{name}: {' '.join(value.splitlines())}\r\n" for name, value in fields]
    return "".join(lines).encode("utf-8", "replace")


def _rfc2822(when: datetime | None) -> str:
    from email.utils import format_datetime

    return format_datetime(when) if when else ""


def text_message(message: dict[str, Any]) -> bytes:
    """Headers plus the body Exchange gives, as a multipart/mixed like IMAP's partial reads."""
    body = message.get("body") or {}
    kind = "html" if str(body.get("contentType", "")).lower() == "html" else "plain"
    content = str(body.get("content") or "").encode("utf-8")
    encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
    mime = (f"Content-Type: text/{kind}; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    return reassemble(headers_of(message), [(mime, encoded)],
                      "=_responder_" + secrets.token_hex(12))


def owner_folder_name(owner: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in owner) or "_"


# --- the adapter -------------------------------------------------------------------------


class GraphMailbox:
    """``Mailbox`` over Microsoft Graph: delta polling, claims by move, text only."""

    def __init__(
        self,
        settings: GraphSettings,
        client: GraphClient,
        *,
        processing: str = "Approvals/Processing",
        state_path: Path | None = None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._processing = processing
        self._state_path = state_path
        self._ledger: Ledger | None = None
        self._state_key = f"graph-delta:{settings.mailbox.lower()}:{settings.folder.lower()}"
        self._folders: dict[str, str] = {}  # "approvals/done" -> folder id
        self._delta: str | None = None  # the link for the next delta request
        self._saved: str | None = None  # the link the ledger holds
        self._woken_at: float | None = None  # when wait_for_mail's delta found new mail
        self._candidates: dict[str, datetime | None] = {}  # in the watched folder, unclaimed
        self._since: dict[str, float] = {}  # held id -> when last renewed (monotonic)
        self._lease_on: set[str] = set()
        self._claimed: set[str] = set()  # ids this process moved into its folder
        self._foreign: dict[str, tuple[str, float]] = {}  # others' id -> (modified, seen at)
        self._next_takeover = 0.0
        self._opened = False
        self._sizeless = False  # warned that a listing gave no size (read as headers + body)

    # -- the Mailbox interface --

    async def open(self) -> None:
        await self._client.open()
        self._opened = True
        try:
            if self._state_path is not None and self._ledger is None:
                self._ledger = await asyncio.to_thread(Ledger, self._state_path)
                self._delta = await asyncio.to_thread(self._ledger.mailbox_state,
                                                      self._state_key)
                self._saved = self._delta
            folder = await self._watched_folder()  # signs in and reads: fails fast if not
            await self._json("open", "GET", f"/mailFolders/{_id(folder)}?$select=id")
        except BaseException:
            await self.close()  # the caller closes only what opened
            raise
        log.info("graph mailbox %s opened, folder %s", self._settings.mailbox,
                 self._settings.folder)

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self._client.close()
        if self._ledger is not None:
            ledger, self._ledger = self._ledger, None
            ledger.close()

    async def fetch_new(self, limit: int | None = None) -> list[Incoming]:
        """What is in the watched folder now, oldest first (no claim: one instance only)."""
        folder = await self._folder_id(self._settings.folder, create=False)
        found = await self._list(folder, limit)
        return await self._read_all(found)

    async def claim_new(
        self, owner: str, timeout: float, limit: int | None = None
    ) -> list[Incoming]:
        mine = await self._folder_id(f"{self._processing}/{owner_folder_name(owner)}",
                                     create=True)
        fresh = self._woken_at is not None and time.monotonic() - self._woken_at < FRESH_SECONDS
        self._woken_at = None
        if not fresh:  # else wait_for_mail has just asked, and woke us for what it found
            await self._delta_round()
        await self._claim(mine)
        await self._take_over(mine, timeout)
        held = await self._list(mine, None)
        await self._renew(held, timeout)
        if limit is not None:
            held = held[: max(limit, 0)]
        return await self._read_all(held)

    async def move(self, ref: str, folder: str) -> None:
        for attempt in range(2):
            target = await self._folder_id(folder, create=True)
            try:
                await self._client.request("file", "POST", f"/messages/{_id(ref)}/move",
                                           json={"destinationId": target})
                break
            except GraphError as exc:
                if exc.status != 404 or attempt:
                    raise MailboxError(f"graph: cannot move a message to {folder}: "
                                       f"{exc}") from None
                # The folder may have been deleted by hand since we looked it up.
                self._folders = {k: v for k, v in self._folders.items() if v != target}
        self._since.pop(ref, None)
        self._lease_on.discard(ref)
        log.info("graph moved a message to %s", folder)

    async def restore(self, message_id: str, folder: str) -> bool:
        try:
            source = await self._folder_id(folder, create=False)
        except MailboxError:
            return False
        query = (f"/mailFolders/{_id(source)}/messages?$select=id,internetMessageId,"
                 f"receivedDateTime&$filter=internetMessageId eq {odata_string(message_id)}")
        page = await self._json("restore", "GET", query)
        found = sorted((m for m in page.get("value") or ()
                        if m.get("internetMessageId") == message_id),
                       key=lambda m: str(m.get("receivedDateTime") or ""))
        if not found:
            return False
        watched = await self._watched_folder()
        await self._json("restore", "POST", f"/messages/{_id(found[0]['id'])}/move",
                         json={"destinationId": watched})
        log.info("graph moved %s from %s back to %s", message_id, folder, self._settings.folder)
        return True

    async def wait_for_mail(self, timeout: float) -> bool:
        """Poll the delta query every ``poll_seconds`` until it reports new mail."""
        deadline = time.monotonic() + timeout
        while True:
            if self._candidates:
                return True
            await self._delta_round()
            if self._candidates:
                self._woken_at = time.monotonic()
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(self._settings.poll_seconds, remaining))

    async def peek_headers(self, limit: int) -> list[bytes]:
        """The newest messages' transport headers: a GET only (reading sets no isRead)."""
        if limit <= 0:
            return []
        folder = await self._watched_folder()
        fields = "internetMessageHeaders,from,subject,internetMessageId,sentDateTime"
        page = await self._json("peek", "GET", f"/mailFolders/{_id(folder)}/messages?$select="
                                f"{fields}&$orderby=receivedDateTime desc&$top={min(limit, 100)}")
        return [headers_of(item) for item in (page.get("value") or ())[:limit]]

    async def describe(self) -> str:
        folder = await self._watched_folder()
        info = await self._json("describe", "GET",
                                f"/mailFolders/{_id(folder)}?$select=displayName,totalItemCount")
        count = int(info.get("totalItemCount") or 0)
        s = self._settings
        how = "client secret" if s.client_secret is not None else "certificate"
        noun = "message" if count == 1 else "messages"
        return (f"graph {s.mailbox} at {s.graph_url}, signed in as app {s.client_id} "
                f"({how}), folder {info.get('displayName') or s.folder}, polling every "
                f"{s.poll_seconds:g}s, {count} {noun}")

    # -- requests --

    async def _json(self, label: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await self._client.json(label, method, path, **kwargs)
        except GraphError as exc:
            raise self._error(exc) from None

    def _error(self, exc: GraphError) -> MailboxError:
        """A refused sign-in (401) or permission (403) is MailboxAuthError, not an outage."""
        if exc.status == 401:
            return MailboxAuthError(str(exc))
        if exc.status == 403:
            return MailboxAuthError(
                f"graph {self._settings.mailbox}: missing permission Mail.ReadWrite ({exc}; "
                'docs/microsoft-365.md: New-ManagementRoleAssignment -Role '
                '"Application Mail.ReadWrite")')
        return MailboxError(str(exc))

    # -- folders --

    async def _watched_folder(self) -> str:
        return await self._folder_id(self._settings.folder, create=False)

    async def _folder_id(self, path: str, *, create: bool) -> str:
        """The id of "Approvals/Done" (well-known names like Inbox stand for themselves)."""
        names = [name for name in path.split("/") if name]
        if not names:
            raise MailboxError(f"graph: folder {path!r}: empty name")
        parent: str | None = None
        for depth, name in enumerate(names, 1):
            key = "/".join(names[:depth]).lower()
            if key not in self._folders:
                if depth == 1 and name.lower() in WELL_KNOWN:
                    self._folders[key] = name.lower()
                else:
                    where = "/".join(names[:depth])
                    self._folders[key] = await self._child(parent, name, where, create)
            parent = self._folders[key]
        assert parent is not None
        return parent

    async def _child(self, parent: str | None, name: str, path: str, create: bool) -> str:
        base = "/mailFolders" if parent is None else f"/mailFolders/{_id(parent)}/childFolders"
        query = f"{base}?$select=id,displayName&$filter=displayName eq {odata_string(name)}"
        for attempt in range(2):
            page = await self._json("folders", "GET", query)
            for folder in page.get("value") or ():
                if str(folder.get("displayName", "")).lower() == name.lower():
                    return str(folder["id"])
            if not create:
                raise MailboxError(f"graph: no folder {path} in {self._settings.mailbox}")
            try:
                made = await self._client.json("folders", "POST", base,
                                               json={"displayName": name})
                log.info("graph created folder %s", path)
                return str(made["id"])
            except GraphError as exc:
                if not folder_exists(exc) or attempt:  # just created by another instance
                    raise MailboxError(f"graph: cannot create folder {path}: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _list(self, folder: str, limit: int | None) -> list[Listed]:
        """A folder's messages, oldest first, with their sizes (no bodies)."""
        link = (f"/mailFolders/{_id(folder)}/messages?$select=id,receivedDateTime,"
                f"lastModifiedDateTime&$expand={_SIZE_EXPAND}&$orderby=receivedDateTime"
                f"&$top={PAGE_SIZE}")
        found: list[Listed] = []
        while link and (limit is None or len(found) < limit):
            page = await self._json("list", "GET", link)
            found += [listed(item) for item in page.get("value") or ()]
            link = page.get("@odata.nextLink")
        return found if limit is None else found[: max(limit, 0)]

    # -- new mail --

    def _initial_delta(self) -> str:
        folder = self._folders.get(self._settings.folder.lower(), self._settings.folder)
        return f"/mailFolders/{_id(folder)}/messages/delta?$select=receivedDateTime"

    async def _delta_round(self) -> None:
        """Follow nextLinks to the deltaLink; new messages become claim candidates."""
        await self._watched_folder()
        link = self._delta or self._initial_delta()
        rescanned = self._delta is None
        headers = {"Prefer": f"odata.maxpagesize={PAGE_SIZE}"}
        while True:
            try:
                page = await self._client.json("delta", "GET", link, headers=headers)
            except GraphError as exc:
                expired = exc.status == 410 or exc.code.lower() in _EXPIRED_CODES
                if not expired or rescanned:
                    raise self._error(exc) from None
                log.warning("graph: the delta link expired (%s); scanning %s in full",
                            exc.code or exc.status, self._settings.folder)
                link, rescanned = self._initial_delta(), True
                continue
            for item in page.get("value") or ():
                if "@removed" in item:
                    self._candidates.pop(str(item.get("id")), None)
                elif item.get("id"):
                    self._candidates[str(item["id"])] = parse_time(item.get("receivedDateTime"))
            if page.get("@odata.nextLink"):
                link = str(page["@odata.nextLink"])
                continue
            self._delta = str(page.get("@odata.deltaLink") or "") or None
            return

    async def _save_delta(self) -> None:
        """Keep the delta link once nothing it reported is left unclaimed."""
        if self._ledger is not None and not self._candidates and self._delta != self._saved:
            await asyncio.to_thread(self._ledger.set_mailbox_state, self._state_key, self._delta)
            self._saved = self._delta

    # -- claims --

    async def _claim(self, mine: str) -> None:
        """Move each candidate into our folder; a 404 means another instance won it."""
        order = sorted(self._candidates, key=lambda i: (_stamp(self._candidates[i]), i))
        results = await asyncio.gather(*(self._move_into(i, mine) for i in order),
                                       return_exceptions=True)
        failure: BaseException | None = None
        lost = 0
        for ref, result in zip(order, results, strict=True):
            if isinstance(result, GraphError) and result.status != 404:
                failure = failure or result  # stays a candidate for the next pass
                continue
            if isinstance(result, BaseException) and not isinstance(result, GraphError):
                raise result
            lost += isinstance(result, GraphError)
            self._candidates.pop(ref, None)
        if lost:
            log.info("graph: %d messages claimed by another instance first", lost)
        if failure is not None:
            raise MailboxError(f"graph: cannot claim new mail: {failure}")
        await self._save_delta()

    async def _move_into(self, ref: str, folder: str) -> str:
        moved = await self._client.json("claim", "POST", f"/messages/{_id(ref)}/move",
                                        json={"destinationId": folder})
        new_id = str(moved.get("id", ""))
        self._claimed.add(new_id)  # just moved: its lastModifiedDateTime is fresh
        return new_id

    async def _renew(self, held: list[Listed], timeout: float) -> None:
        """Toggle the lease category on claims kept for a third of the timeout."""
        now = time.monotonic()
        ids = {m.id for m in held}
        self._since = {i: t for i, t in self._since.items() if i in ids}
        self._lease_on &= ids
        due = []
        for message in held:
            if message.id not in self._since and message.id not in self._claimed:
                due.append(message.id)  # ours from before a restart: others may be counting
                continue
            since = self._since.setdefault(message.id, now)
            if now - since >= timeout / 3:
                due.append(message.id)
        self._claimed &= ids
        for ref in due:
            on = ref not in self._lease_on
            await self._json("renew", "PATCH", f"/messages/{_id(ref)}",
                             json={"categories": [LEASE_CATEGORY] if on else []})
            self._lease_on.symmetric_difference_update({ref})
            self._since[ref] = now

    async def _take_over(self, mine: str, timeout: float) -> None:
        """Every quarter timeout: claims in others' folders unchanged that long become ours."""
        now = time.monotonic()
        if now < self._next_takeover:
            return
        self._next_takeover = now + max(timeout / 4, self._settings.poll_seconds)
        root = await self._folder_id(self._processing, create=True)
        page = await self._json("takeover", "GET", f"/mailFolders/{_id(root)}/childFolders"
                                "?$select=id,displayName,totalItemCount&$top=100")
        folders = [root] + [str(f["id"]) for f in page.get("value") or ()
                            if str(f["id"]) != mine and f.get("totalItemCount", 1)]
        seen: set[str] = set()
        for folder in folders:
            for message in await self._list(folder, None):
                seen.add(message.id)
                before = self._foreign.get(message.id)
                if before is None or before[0] != message.modified:
                    self._foreign[message.id] = (message.modified, now)
                elif now - before[1] >= timeout:
                    await self._take(message.id, mine, timeout)
        self._foreign = {i: v for i, v in self._foreign.items() if i in seen}

    async def _take(self, ref: str, mine: str, timeout: float) -> None:
        try:
            await self._move_into(ref, mine)
        except GraphError as exc:
            if exc.status != 404:  # 404: its holder filed it, or another instance took it
                raise MailboxError(f"graph: cannot take over a claim: {exc}") from None
            return
        self._foreign.pop(ref, None)
        log.warning("graph: took over a claim not renewed for %.0f s", timeout)

    # -- reading --

    async def _read_all(self, found: list[Listed]) -> list[Incoming]:
        read = await asyncio.gather(*(self._read(m) for m in found), return_exceptions=True)
        incoming: list[Incoming] = []
        for result in read:
            if isinstance(result, GraphError) and result.status == 404:
                continue  # gone meanwhile (filed or taken over)
            if isinstance(result, GraphError):
                raise MailboxError(f"graph: cannot read a message: {result}")
            if isinstance(result, BaseException):
                raise result
            incoming.append(result)
        return incoming

    async def _read(self, message: Listed) -> Incoming:
        ref = _id(message.id)
        if message.size is not None and message.size <= WHOLE_BYTES:
            response = await self._client.request("read", "GET", f"/messages/{ref}/$value")
            raw = response.content
            return Incoming(message.id, raw, max(message.size, len(raw)),
                            arrived=message.received)
        if message.size is None and not self._sizeless:
            self._sizeless = True
            log.warning("graph: the listing gave no message size (PidTagMessageSize); "
                        "messages are read as headers and body, without our own DKIM check")
        fields = "internetMessageHeaders,body,from,subject,internetMessageId,sentDateTime"
        data = await self._client.json("read", "GET", f"/messages/{ref}?$select={fields}")
        return Incoming(message.id, text_message(data), message.size or 0, partial=True,
                        arrived=message.received)


def _stamp(when: datetime | None) -> float:
    return when.timestamp() if when is not None else float("inf")


def _id(ref: str) -> str:
    """A Graph id in a URL path (ids are base64 and may hold "/" and "+")."""
    return quote(ref, safe="=-_")
