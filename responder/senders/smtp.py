"""Sending answers over SMTP (aiosmtplib); errors never carry the password."""

from __future__ import annotations

import contextlib
import ssl

import aiosmtplib

from responder.config import SmtpSettings
from responder.connections.oauth import TokenError, TokenSource, b64, oauthbearer, token_source
from responder.senders import After, Before


class SmtpError(Exception):
    """The answer could not be handed to the SMTP server; it stays in the outbox."""


class SmtpSender:
    def __init__(self, settings: SmtpSettings, tokens: TokenSource | None = None) -> None:
        self.settings = settings
        self._tokens = tokens if tokens is not None else token_source(settings)
        self._mechanism = ""  # the SASL mechanism of the last OAuth2 sign-in
        self._spent: list[str] = []  # recent tokens, scrubbed from error texts

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

    async def _oauth_login(self, client: aiosmtplib.SMTP) -> None:
        """AUTH XOAUTH2 (or OAUTHBEARER); a refused token is replaced once by a fresh one."""
        s = self.settings
        assert self._tokens is not None and s.username  # required with OAuth2
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        offered = client.server_auth_methods
        bearer = s.sasl == "oauthbearer" or (
            s.sasl == "auto" and "xoauth2" not in offered and "oauthbearer" in offered
        )
        self._mechanism = "OAUTHBEARER" if bearer else "XOAUTH2"
        for force_refresh in (False, True):
            try:
                token = await self._tokens.token(force_refresh)
            except TokenError as exc:
                raise aiosmtplib.SMTPException(f"no token for {s.username}: {exc}") from None
            self._spent = [token, *self._spent[:3]]
            try:
                if bearer:
                    initial = b64(oauthbearer(s.username, token, s.host, s.effective_port))
                    reply = await client.execute_command(b"AUTH", b"OAUTHBEARER", initial.encode())
                    if reply.code == 334:  # the error, as a challenge: answer with ^A (RFC 7628)
                        reply = await client.execute_command(b"AQ==")
                    if reply.code != 235:
                        raise aiosmtplib.SMTPAuthenticationError(reply.code, reply.message)
                else:
                    await client.auth_xoauth2(s.username, token)
                return
            except aiosmtplib.SMTPAuthenticationError:
                if force_refresh:
                    raise

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        s = self.settings
        if self._tokens is not None:
            await self._oauth_login(client)
        elif s.username and s.password:
            await client.login(s.username, s.password.get_secret_value())

    async def send_many(self, messages: list[tuple[str, bytes]], *,
                        before: Before | None = None,
                        after: After | None = None) -> list[str | None]:
        """Send (recipient, raw) pairs over one connection: None or an error per message.

        The list is shorter than ``messages`` when the connection broke: the rest were not
        tried. SmtpError when no connection or sign-in was possible at all. ``before`` and
        ``after`` run around each message (see ``senders.Before``): one session, but each
        answer recorded as it goes, so a crash leaves at most one unrecorded.
        """
        if not messages:
            return []
        client = self._client()
        try:
            await client.connect()
            await self._login(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()  # a refused sign-in leaves the connection open
            raise SmtpError(self._describe(exc)) from None
        results: list[str | None] = []
        try:
            for index, (recipient, raw) in enumerate(messages):
                if before is not None and not await before(index):
                    results.append(None)
                    continue
                error, gone = await self._send_one(client, recipient, raw)
                results.append(error)
                if after is not None:
                    await after(index, error)
                if gone:
                    break  # the connection is gone: the rest were not tried
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        return results

    async def _send_one(self, client: aiosmtplib.SMTP, recipient: str,
                        raw: bytes) -> tuple[str | None, bool]:
        """None or the error; and whether the connection is gone with it."""
        try:
            await client.sendmail(self.settings.from_, [recipient], raw)
            return None, False
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            return self._describe(exc), False  # this one refused; go on
        except (aiosmtplib.SMTPException, OSError) as exc:
            return self._describe(exc), True

    async def check(self) -> str:
        client = self._client()
        try:
            await client.connect()
            await self._login(client)
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            raise SmtpError(self._describe(exc)) from None
        who = f" as {self.settings.username}" if self.settings.username else ""
        s = self.settings
        if self._tokens is not None:
            who = f", signed in as {s.username} with {s.auth} ({self._mechanism})"
        return f"smtp {s.host}:{s.effective_port} ({s.tls}){who}"

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self.settings.password:
            text = text.replace(self.settings.password.get_secret_value(), "***")
        for token in self._spent:
            text = text.replace(token, "***")
        return f"smtp {self.settings.host}:{self.settings.effective_port}: {text}"[:300]
