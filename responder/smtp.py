"""Sending answers over SMTP (aiosmtplib); errors never carry the password."""

from __future__ import annotations

import contextlib
import ssl

import aiosmtplib

from responder.config import SmtpSettings


class SmtpError(Exception):
    """The answer could not be handed to the SMTP server; it stays in the outbox."""


class SmtpSender:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if not s.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            use_tls=s.tls == "implicit",
            start_tls=s.tls == "starttls",
            tls_context=context if s.tls != "none" else None,
            timeout=s.timeout,
        )

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        s = self.settings
        if s.username and s.password:
            await client.login(s.username, s.password.get_secret_value())

    async def send_many(self, messages: list[tuple[str, bytes]]) -> list[str | None]:
        """Send (recipient, raw) pairs over one connection; an error text per failure."""
        if not messages:
            return []
        client = self._client()
        try:
            await client.connect()
            await self._login(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return [self._describe(exc)] * len(messages)
        results: list[str | None] = []
        try:
            for recipient, raw in messages:
                try:
                    await client.sendmail(self.settings.from_, [recipient], raw)
                    results.append(None)
                except aiosmtplib.SMTPResponseException as exc:
                    results.append(self._describe(exc))
                except (aiosmtplib.SMTPException, OSError) as exc:
                    results.append(self._describe(exc))
                    break
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        results.extend(["connection lost"] * (len(messages) - len(results)))
        return results

    async def check(self) -> str:
        client = self._client()
        try:
            await client.connect()
            await self._login(client)
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SmtpError(self._describe(exc)) from None
        who = f" as {self.settings.username}" if self.settings.username else ""
        s = self.settings
        return f"smtp {s.host}:{s.effective_port} ({s.tls}){who}"

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self.settings.password:
            text = text.replace(self.settings.password.get_secret_value(), "***")
        return f"smtp {self.settings.host}:{self.settings.effective_port}: {text}"[:300]
