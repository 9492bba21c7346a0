"""The mailbox seam (the shell's way in): one interface, three implementations in this
package: IMAP (``imap.py``), a local Maildir (``maildir.py``) and Exchange Online through
Microsoft Graph (``graph.py``).

The orchestrator only ever talks to a ``Mailbox``; it does not know which one it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

PEEK_BYTES = 65536  # discovery reads at most this much of each header block


@dataclass(frozen=True)
class Incoming:
    """One message waiting in the watched folder."""

    ref: str  # the mailbox's own handle: an IMAP UID, a Maildir key, a Graph message id
    raw: bytes  # the message; only its text parts when it carries attachments
    size: int  # its full size on the server, attachments included
    partial: bool = False  # True when attachments were left out of ``raw``
    arrived: datetime | None = None  # when the mailbox received it (IMAP INTERNALDATE)


class MailboxError(Exception):
    """The mailbox cannot be reached or refused an operation (secrets never included)."""


class MailboxAuthError(MailboxError):
    """The mailbox refused our sign-in: a wrong password or token, not an outage."""


class Mailbox(Protocol):
    async def open(self) -> None:
        """Connect and sign in; raise MailboxError with a clear reason."""

    async def close(self) -> None: ...

    async def fetch_new(self, limit: int | None = None) -> list[Incoming]:
        """The messages now in the watched folder, oldest first, text parts only."""

    async def claim_new(
        self, owner: str, timeout: float, limit: int | None = None
    ) -> list[Incoming]:
        """Like ``fetch_new``, but only the messages this instance (``owner``) holds.

        Free messages are claimed atomically first, so two instances watching one mailbox
        never both get a message; a claim its holder has not renewed for ``timeout``
        seconds (the holder crashed) is taken over. Each call renews this owner's claims.
        """

    async def move(self, ref: str, folder: str) -> None:
        """File a message into ``folder``, creating the folder if it is missing."""

    async def restore(self, message_id: str, folder: str) -> bool:
        """Move the message with this Message-ID from ``folder`` back to the watched folder.

        For ``responder replay``. Claim marks are dropped, so any instance may take it up.
        False when ``folder`` holds no such message (the oldest is taken if several do).
        """

    async def wait_for_mail(self, timeout: float) -> bool:
        """Block until new mail may be there (IDLE push or a poll tick) or ``timeout``.

        Returns True when the server signalled new mail.
        """

    async def peek_headers(self, limit: int) -> list[bytes]:
        """The header blocks of the newest ``limit`` messages in the watched folder, newest
        first, read without a trace (no flag, no claim, nothing moved): for discovery."""

    async def describe(self) -> str:
        """A one-line description of the signed-in mailbox, for ``responder check``."""
