"""OAuth2 sign-in (SASL XOAUTH2 / OAUTHBEARER) against a real Dovecot and a real aiosmtpd.

Dovecot's ``oauth2`` passdb asks the stand-in IdP (``tests/idp.py``) whether each token is
active and whose it is, so every sign-in here is checked by a real server over a real
introspection call. MSAL and google-auth run for real too; only MSAL's HTTP layer is
swapped for one that sends login.microsoftonline.com's requests to the stand-in.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from responder.config import ConfigError, ImapSettings, SmtpSettings, parse_settings
from responder.connections.oauth import ClientCredentials, GoogleTokens, MicrosoftTokens, TokenError
from responder.mailboxes import MailboxError
from responder.mailboxes.imap import ImapMailbox
from responder.senders.smtp import SmtpError, SmtpSender
from responder.service import check
from tests.fixtures_mail import new_mail_user
from tests.idp import BearerSmtpSink, StandinIdp
from tests.servers import Dovecot

# The SMTP stand-in takes AUTH without TLS (plain on 127.0.0.1); aiosmtpd warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

MAIL = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi [ID:7]\r\n\r\nAPPROVE\r\n"


@pytest.fixture(scope="module")
def idp() -> Iterator[StandinIdp]:
    with StandinIdp() as provider:
        yield provider


@pytest.fixture(scope="module")
def dovecot(idp: StandinIdp) -> Iterator[Dovecot]:
    with Dovecot(oauth2_introspection_url=idp.introspection_url) as server:
        yield server


@pytest.fixture
def smtp(idp: StandinIdp) -> Iterator[BearerSmtpSink]:
    with BearerSmtpSink(idp=idp) as sink:
        yield sink


def oauth_settings(
    server: Dovecot, user: str, client: tuple[str, str], token_url: str, **more: Any
) -> ImapSettings:
    values = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "username": user,
        "auth": "oauth2",
        "token_url": token_url,
        "client_id": client[0],
        "client_secret": client[1],
        "timeout": 10,
        **more,
    }
    return ImapSettings.model_validate(values)


def logins(server: Dovecot, user: str) -> list[str]:
    """The SASL mechanism of each of ``user``'s successful logins, from Dovecot's log."""
    lines = server.log_path.read_text().splitlines()
    return [
        line.split("method=")[1].split(",")[0]
        for line in lines
        if "imap-login: Info: Login:" in line and f"user=<{user}>" in line
    ]


def kick(server: Dovecot, user: str) -> None:
    """End ``user``'s IMAP sessions, as Exchange Online does when their token expires."""
    subprocess.run(
        ["doveadm", "-c", str(server.config_path), "kick", user], check=True, capture_output=True
    )


# --- IMAP against Dovecot ---


async def test_xoauth2_sign_in_to_dovecot(dovecot: Dovecot, idp: StandinIdp) -> None:
    user, _ = new_mail_user(dovecot)
    box = ImapMailbox(oauth_settings(dovecot, user, idp.add_client(user), idp.token_url))
    await box.open()
    try:
        dovecot.append(user, "INBOX", MAIL)
        assert [m.raw for m in await box.fetch_new()] == [MAIL]
        described = await box.describe()
        assert f"signed in as {user} with oauth2 (XOAUTH2)" in described
    finally:
        await box.close()
    assert logins(dovecot, user)[0] == "XOAUTH2"
    assert [t.grant for t in idp.tokens_for(user)] == ["client_credentials"]


async def test_oauthbearer_sign_in(dovecot: Dovecot, idp: StandinIdp) -> None:
    user, _ = new_mail_user(dovecot)
    settings = oauth_settings(
        dovecot, user, idp.add_client(user), idp.token_url, sasl="oauthbearer"
    )
    box = ImapMailbox(settings)
    await box.open()
    await box.close()
    assert logins(dovecot, user) == ["OAUTHBEARER"]


async def test_an_expired_token_is_renewed_when_the_session_ends(
    dovecot: Dovecot, idp: StandinIdp
) -> None:
    user, _ = new_mail_user(dovecot)
    box = ImapMailbox(
        oauth_settings(dovecot, user, idp.add_client(user, lifetime=2), idp.token_url)
    )
    await box.open()
    try:
        first = idp.tokens_for(user)[0]
        time.sleep(2.2)
        assert not first.active
        kick(dovecot, user)
        dovecot.append(user, "INBOX", MAIL)
        assert [m.raw for m in await box.fetch_new()] == [MAIL]  # reconnects with a new token
    finally:
        await box.close()
    assert len(idp.tokens_for(user)) == 2
    assert logins(dovecot, user).count("XOAUTH2") == 2


async def test_a_refused_token_is_replaced_once(
    dovecot: Dovecot, idp: StandinIdp, caplog: pytest.LogCaptureFixture
) -> None:
    user, _ = new_mail_user(dovecot)
    box = ImapMailbox(oauth_settings(dovecot, user, idp.add_client(user), idp.token_url))
    await box.open()
    try:
        idp.revoke_all(user)  # still fresh by our clock, but the server will refuse it
        kick(dovecot, user)
        with caplog.at_level(logging.INFO, logger="responder.imap"):
            assert await box.fetch_new() == []
    finally:
        await box.close()
    assert len(idp.tokens_for(user)) == 2
    assert "retrying once with a fresh token" in caplog.text
    assert not any(t.token in caplog.text for t in idp.tokens_for(user))


async def test_a_token_for_another_mailbox_is_a_clear_error(
    dovecot: Dovecot, idp: StandinIdp
) -> None:
    user, _ = new_mail_user(dovecot)
    client = idp.add_client("someone-else@example.org")  # the app was granted another mailbox
    box = ImapMailbox(oauth_settings(dovecot, user, client, idp.token_url))
    with pytest.raises(MailboxError) as caught:
        await box.open()
    text = str(caught.value)
    assert f"XOAUTH2 sign-in refused for {user} even with a fresh oauth2 token" in text
    tokens = idp.tokens_for("someone-else@example.org")
    assert len(tokens) == 2 and not any(t.token in text for t in tokens)


async def test_a_wrong_client_secret_names_the_client_not_the_secret(
    dovecot: Dovecot, idp: StandinIdp
) -> None:
    user, _ = new_mail_user(dovecot)
    client_id, secret = idp.add_client(user)
    box = ImapMailbox(oauth_settings(dovecot, user, (client_id, "wrong-" + secret), idp.token_url))
    with pytest.raises(MailboxError) as caught:
        await box.open()
    text = str(caught.value)
    assert f"refused client {client_id}: HTTP 401 (invalid_client)" in text
    assert secret not in text


async def test_an_unreachable_token_endpoint(dovecot: Dovecot) -> None:
    user, _ = new_mail_user(dovecot)
    box = ImapMailbox(oauth_settings(dovecot, user, ("app", "s3cret"), "http://127.0.0.1:9/t"))
    with pytest.raises(MailboxError, match=r"no token for .*ConnectError") as caught:
        await box.open()
    assert "s3cret" not in str(caught.value)


# --- the token cache ---


async def test_tokens_are_cached_until_shortly_before_expiry(idp: StandinIdp) -> None:
    now = [0.0]
    client_id, secret = idp.add_client("cache@example.org", lifetime=100)
    source = ClientCredentials(idp.token_url, client_id, secret, clock=lambda: now[0])
    first = await source.token()
    now[0] = 89.0
    assert await source.token() == first
    now[0] = 90.5  # within a tenth of the lifetime of expiry
    second = await source.token()
    assert second != first
    assert await source.token(force_refresh=True) not in (first, second)
    assert source.fetches == 3


# --- SMTP against aiosmtpd ---


def smtp_settings(sink: BearerSmtpSink, user: str, client: tuple[str, str], **more: Any) -> Any:
    return SmtpSettings.model_validate(
        {
            "host": sink.host,
            "port": sink.port,
            "tls": "none",
            "username": user,
            "from": user,
            "auth": "oauth2",
            "token_url": sink.idp.token_url if sink.idp else "",
            "client_id": client[0],
            "client_secret": client[1],
            **more,
        }
    )


async def test_smtp_xoauth2(smtp: BearerSmtpSink, idp: StandinIdp) -> None:
    user = "sender1@example.org"
    sender = SmtpSender(smtp_settings(smtp, user, idp.add_client(user)))
    assert await sender.send_many([("a@example.org", MAIL)]) == [None]
    assert smtp.received()[0].content == MAIL
    assert "signed in as sender1@example.org with oauth2 (XOAUTH2)" in await sender.check()
    assert smtp.handler is not None and smtp.handler.attempts == [("XOAUTH2", True)] * 2


async def test_smtp_oauthbearer(smtp: BearerSmtpSink, idp: StandinIdp) -> None:
    user = "sender2@example.org"
    sender = SmtpSender(smtp_settings(smtp, user, idp.add_client(user), sasl="oauthbearer"))
    assert await sender.send_many([("a@example.org", MAIL)]) == [None]
    assert smtp.handler is not None and smtp.handler.attempts == [("OAUTHBEARER", True)]


async def test_smtp_refused_token_is_replaced_once(smtp: BearerSmtpSink, idp: StandinIdp) -> None:
    user = "sender3@example.org"
    sender = SmtpSender(smtp_settings(smtp, user, idp.add_client(user)))
    assert await sender.send_many([("a@example.org", MAIL)]) == [None]
    idp.revoke_all(user)
    assert await sender.send_many([("a@example.org", MAIL)]) == [None]
    assert smtp.handler is not None
    assert [ok for _, ok in smtp.handler.attempts] == [True, False, True]


async def test_smtp_refusal_keeps_tokens_out_of_the_error(
    smtp: BearerSmtpSink, idp: StandinIdp
) -> None:
    user = "sender4@example.org"
    sender = SmtpSender(smtp_settings(smtp, user, idp.add_client("not-" + user)))
    with pytest.raises(SmtpError) as refused:
        await sender.send_many([("a@example.org", MAIL)])
    error = str(refused.value)
    assert "535" in error
    tokens = idp.tokens_for("not-" + user)
    assert len(tokens) == 2 and not any(t.token in error for t in tokens)
    assert smtp.received() == []


# --- Microsoft (MSAL) and Google (google-auth) against the stand-in ---


class RedirectedHttp:
    """MSAL's ``http_client``: requests, with login.microsoftonline.com sent to the stand-in."""

    def __init__(self, idp: StandinIdp) -> None:
        self.idp, self.session, self.urls = idp, requests.Session(), list[str]()

    def _local(self, url: str) -> str:
        self.urls.append(url)
        return url.replace("https://login.microsoftonline.com", self.idp.url)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self._local(url), **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self._local(url), **kwargs)

    def close(self) -> None:
        self.session.close()


async def test_microsoft_tokens_through_msal(dovecot: Dovecot, idp: StandinIdp) -> None:
    user, _ = new_mail_user(dovecot)
    client_id, secret = idp.add_client(user)
    http = RedirectedHttp(idp)
    tokens = MicrosoftTokens("contoso.onmicrosoft.com", client_id, secret, http_client=http)
    settings = ImapSettings.model_validate(
        {
            "host": dovecot.host,
            "port": dovecot.port,
            "tls": "none",
            "username": user,
            "auth": "oauth2-microsoft",
            "tenant_id": "contoso.onmicrosoft.com",
            "client_id": client_id,
            "client_secret": secret,
        }
    )
    box = ImapMailbox(settings, tokens)
    await box.open()
    try:
        assert f"signed in as {user} with oauth2-microsoft (XOAUTH2)" in await box.describe()
        first = await tokens.token()
        assert await tokens.token(force_refresh=True) != first  # past MSAL's own cache too
    finally:
        await box.close()
    assert http.urls[0].startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/")
    assert len(idp.tokens_for(user)) == 2

    wrong = MicrosoftTokens("contoso.onmicrosoft.com", client_id, "wrong", http_client=http)
    try:
        with pytest.raises(TokenError, match=r"refused client .* \(invalid_client") as caught:
            await wrong.token()
    finally:
        http.close()
    assert "wrong" not in str(caught.value)


async def test_google_refresh_token(dovecot: Dovecot, idp: StandinIdp) -> None:
    user, _ = new_mail_user(dovecot)
    refresh, client_id, secret = idp.add_refresh_token(user)
    tokens = GoogleTokens(
        user,
        refresh_token=refresh,
        client_id=client_id,
        client_secret=secret,
        token_url=idp.token_url,
    )
    settings = oauth_settings(dovecot, user, (client_id, secret), idp.token_url)
    box = ImapMailbox(settings, tokens)
    await box.open()
    await box.close()
    assert [t.grant for t in idp.tokens_for(user)] == ["refresh_token"]

    stale = GoogleTokens(
        user,
        refresh_token="revoked",
        client_id=client_id,
        client_secret=secret,
        token_url=idp.token_url,
    )
    with pytest.raises(TokenError, match=r"refused the refresh token .*invalid_grant") as caught:
        await stale.token()
    assert secret not in str(caught.value)


async def test_google_service_account(dovecot: Dovecot, idp: StandinIdp, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "responder@project.iam.gserviceaccount.com"
    idp.add_service_account(email, key.public_key())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    keyfile = tmp_path / "service-account.json"
    keyfile.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": email,
                "client_id": "1",
                "token_uri": idp.token_url,
            }
        )
    )
    user, _ = new_mail_user(dovecot)
    settings = ImapSettings.model_validate(
        {
            "host": dovecot.host,
            "port": dovecot.port,
            "tls": "none",
            "username": user,
            "auth": "oauth2-google",
            "service_account_file": str(keyfile),
        }
    )
    box = ImapMailbox(settings)  # GoogleTokens built from the settings
    await box.open()
    try:
        assert f"signed in as {user} with oauth2-google (XOAUTH2)" in await box.describe()
    finally:
        await box.close()
    assert [t.grant for t in idp.tokens_for(user)] == [
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ]


# --- config and `responder check` ---

BASE = {
    "halo": {
        "base_url": "http://127.0.0.1:9",
        "client_id": "h",
        "client_secret": "hs",
        "max_retries": 0,
        "timeout": 2,
    },
    "smtp": {"host": "smtp.example.org", "from": "approvals@contoso.com"},
}


def errors_of(imap: dict[str, Any], smtp: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(
            {
                **BASE,
                "imap": {"host": "h", "username": "u", **imap},
                "smtp": {**BASE["smtp"], **(smtp or {})},
            }
        )
    return str(caught.value)


def test_each_mode_requires_its_keys() -> None:
    text = errors_of({"auth": "oauth2-microsoft", "client_id": "c"})
    assert text.splitlines() == [
        'imap.tenant_id: required with auth = "oauth2-microsoft"',
        'imap.client_secret: required with auth = "oauth2-microsoft"',
    ]
    assert errors_of({}) == 'imap.password: required with auth = "password"'
    assert "imap.service_account_file: required" in errors_of({"auth": "oauth2-google"})
    assert errors_of({"auth": "oauth2-google", "refresh_token": "r"}).splitlines() == [
        'imap.client_id: required with auth = "oauth2-google"',
        'imap.client_secret: required with auth = "oauth2-google"',
    ]
    text = errors_of(
        {
            "auth": "oauth2",
            "token_url": "https://t.example",
            "client_id": "c",
            "client_secret": "s",
            "password": "p",
            "tenant_id": "x",
        }
    )
    assert text.splitlines() == [
        'imap.tenant_id: not used with auth = "oauth2"',
        'imap.password: not used with auth = "oauth2"',
    ]
    text = errors_of(
        {"password": "p"},
        {"auth": "oauth2-microsoft", "tenant_id": "t", "client_id": "c", "client_secret": "s"},
    )
    assert text == 'smtp.username: required with auth = "oauth2-microsoft"'


def test_same_as_imap_takes_the_imap_sign_in() -> None:
    settings = parse_settings(
        {
            **BASE,
            "imap": {
                "host": "h",
                "username": "approvals@contoso.com",
                "auth": "oauth2-microsoft",
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": "very-secret",
            },
            "smtp": {**BASE["smtp"], "auth": "same-as-imap"},
        }
    )
    smtp = settings.smtp_sign_in()
    assert (smtp.auth, smtp.username, smtp.tenant_id) == (
        "oauth2-microsoft",
        "approvals@contoso.com",
        "t",
    )
    assert "very-secret" in settings.secrets()
    with pytest.raises(ConfigError, match="needs an \\[imap\\] section"):
        parse_settings(
            {
                **BASE,
                "maildir": {"path": "/tmp/x"},
                "smtp": {**BASE["smtp"], "auth": "same-as-imap"},
            }
        )


async def test_check_shows_the_oauth_identity(
    dovecot: Dovecot, idp: StandinIdp, smtp: BearerSmtpSink, tmp_path: Path
) -> None:
    user, _ = new_mail_user(dovecot)
    client_id, secret = idp.add_client(user)
    settings = parse_settings(
        {
            **BASE,
            "imap": {
                "host": dovecot.host,
                "port": dovecot.port,
                "tls": "none",
                "username": user,
                "auth": "oauth2",
                "token_url": idp.token_url,
                "client_id": client_id,
                "client_secret": secret,
            },
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "tls": "none",
                "from": user,
                "auth": "same-as-imap",
            },
            "state": {"path": str(tmp_path / "ledger.sqlite3")},
        }
    )
    lines = {line.component: line for line in await check(settings)}
    assert lines["mailbox"].ok and f"signed in as {user} with oauth2 (XOAUTH2)" in (
        lines["mailbox"].detail
    )
    assert lines["smtp"].ok, lines["smtp"].detail
    assert f"signed in as {user} with oauth2 (XOAUTH2)" in lines["smtp"].detail
    assert len(idp.tokens_for(user)) == 1  # one token, shared by IMAP and SMTP
