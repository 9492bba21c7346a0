"""The ways answers leave (the shell): SMTP, or Microsoft Graph's sendMail.

Every sender takes (recipient, raw MIME) pairs and raises ``SmtpError`` (or a subclass)
when it could try none of them, so the orchestrator does not know which one it has.
"""

from __future__ import annotations

from typing import Protocol


class Sender(Protocol):
    async def send_many(self, messages: list[tuple[str, bytes]]) -> list[str | None]:
        """None or an error per message; shorter than ``messages`` if the rest were not
        tried; SmtpError when none could be tried."""

    async def check(self) -> str:
        """Sign in without sending; a one-line description for ``responder check``."""
