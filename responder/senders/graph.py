"""Answers through Microsoft Graph: ``POST /users/{mailbox}/sendMail`` with our MIME.

The MIME message the answer templates build goes out as it is (base64, ``Content-Type:
text/plain``, as Graph takes MIME), so In-Reply-To/References threading and both the text
and the HTML part are kept; Exchange saves a copy in Sent Items. Needs the application
permission Mail.Send (scoped to the mailbox with RBAC for Applications: see docs/microsoft-365.md).
Used when the mailbox is [graph] and no [smtp] section is given.
"""

from __future__ import annotations

import base64
import logging

from responder.connections.graph import GraphClient, GraphError, error_code
from responder.senders import After, Before
from responder.senders.smtp import SmtpError

log = logging.getLogger("responder.graph")

# Answers that fail so are not worth retrying with others in the same batch: Graph is
# unreachable, or refuses the app as a whole.
_WHOLE_BATCH = (0, 401, 403, 429, 503, 504)


class GraphSendError(SmtpError):
    """No answer could be handed to Graph; they stay in the outbox."""


class GraphSender:
    def __init__(self, client: GraphClient) -> None:
        self.client = client

    async def send_many(self, messages: list[tuple[str, bytes]], *,
                        before: Before | None = None,
                        after: After | None = None) -> list[str | None]:
        """One sendMail per answer; a refusal of one answer does not stop the others.

        ``before``/``after`` run around each one (see ``senders.Before``); when Graph
        refuses the first one tried as a whole (unreachable, throttled, no permission),
        GraphSendError is raised without ``after``: that one was not sent."""
        if not messages:
            return []
        results: list[str | None] = []
        tried = False
        await self.client.open()
        try:
            for index, (_recipient, raw) in enumerate(messages):
                if before is not None and not await before(index):
                    results.append(None)
                    continue
                error: str | None = None
                whole = False
                try:
                    await self.send(raw)
                except GraphError as exc:
                    whole = exc.status in _WHOLE_BATCH
                    if whole and not tried:
                        raise GraphSendError(str(exc)) from None
                    error = str(exc)[:300]
                tried = True
                results.append(error)
                if after is not None:
                    await after(index, error)
                if whole:
                    break  # the rest were not tried
        finally:
            await self.client.close()
        return results

    async def send(self, raw: bytes) -> None:
        await self.client.request(
            "send", "POST", "/sendMail", ok=(202,),
            content=base64.b64encode(raw), headers={"Content-Type": "text/plain"},
        )

    async def check(self) -> str:
        """Probe Mail.Send without sending: an empty sendMail.

        Graph documents no request that tells whether an app may send as a mailbox without
        sending mail. A 403 is the permission check's own answer: Mail.Send is missing. A
        400 says the empty message was refused as invalid; that Graph checks the permission
        before it looks at the message is not documented, so a 400 reads "probably
        allowed", and the line says how to be sure.
        """
        mailbox = self.client.settings.mailbox
        await self.client.open()
        try:
            response = await self.client.request(
                "check", "POST", "/sendMail", ok=(400, 202), content=b"",
                headers={"Content-Type": "text/plain"})
        except GraphError as exc:
            if exc.status == 403:
                raise GraphSendError(
                    f"graph sendMail as {mailbox}: missing permission "
                    "Mail.Send (docs/microsoft-365.md: New-ManagementRoleAssignment "
                    '-Role "Application Mail.Send")') from None
            raise GraphSendError(f"graph sendMail: {exc}") from None
        finally:
            await self.client.close()
        if response.status_code == 202:
            return f"graph sendMail as {mailbox} (Mail.Send granted: the probe was accepted)"
        code = error_code(response)[0] or "no error code"
        return (f"graph sendMail as {mailbox} (Mail.Send probably allowed: an empty test "
                f"message was refused as invalid, HTTP 400 {code}, not as forbidden; Graph "
                "does not document that it checks the permission first. To be sure: "
                f"Test-ServicePrincipalAuthorization -Identity <app> -Resource {mailbox} "
                "in Exchange Online PowerShell, or one real answer)")
