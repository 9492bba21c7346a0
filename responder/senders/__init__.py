"""The ways answers leave (the shell): SMTP, or Microsoft Graph's sendMail.

Every sender takes (recipient, raw MIME) pairs and raises ``SmtpError`` (or a subclass)
when it could try none of them, so the orchestrator does not know which one it has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

# Called just before message ``i`` goes out (the outbox marks it "sending"); False leaves
# it unsent (another process took it). And just after, with None or the error: so each
# message's fate is recorded before the next one goes, whatever the connection carries.
Before = Callable[[int], Awaitable[bool]]
After = Callable[[int, str | None], Awaitable[None]]


class Sender(Protocol):
    async def send_many(self, messages: list[tuple[str, bytes]], *,
                        before: Before | None = None,
                        after: After | None = None) -> list[str | None]:
        """None or an error per message (None too for one ``before`` declined); shorter
        than ``messages`` if the rest were not tried; SmtpError when none could be tried
        (SMTP: before any hook; Graph's sendMail: after ``before`` of the first, without
        its ``after``, so the caller must release what ``before`` marked)."""

    async def check(self) -> str:
        """Sign in without sending; a one-line description for ``responder check``."""
