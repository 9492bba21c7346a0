"""OAuth2 access tokens for signing in to the mailbox (IMAP) and the SMTP server.

A ``TokenSource`` hands out a bearer token for SASL XOAUTH2 / OAUTHBEARER, cached until
shortly before it expires; ``token(force_refresh=True)`` fetches a new one, which the IMAP
and SMTP adapters do once when the server refuses a token.

    TokenSource (protocol)
      ClientCredentials   a plain OAuth2 client-credentials endpoint (httpx): auth = "oauth2"
      MicrosoftTokens     Microsoft Entra ID app-only tokens (MSAL): auth = "oauth2-microsoft"
      GoogleTokens        a service account with domain-wide delegation, or a stored refresh
                          token (google-auth): auth = "oauth2-google"

Errors: every failure to get a token leaves as ``TokenError``, whose text names the
provider and its OAuth ``error`` code but never a secret, an assertion or a token.
msal and google-auth are optional (``pip install halo-approval-responder[oauth]``) and
imported only when their mode is configured.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

if TYPE_CHECKING:
    from responder.config import ImapSettings, SmtpSettings

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"  # covers IMAP and SMTP AUTH
GRAPH_SCOPE = "https://graph.microsoft.com/.default"  # the app's Graph application permissions
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GOOGLE_SCOPE = "https://mail.google.com/"
_LONGEST_MARGIN = 300.0  # renew at most this long before expiry (a tenth of the lifetime if less)


class TokenError(Exception):
    """No access token: the identity provider refused, or could not be reached."""


class TokenSource(Protocol):
    mode: str  # the configured auth mode, e.g. "oauth2-microsoft"

    async def token(self, force_refresh: bool = False) -> str: ...


def xoauth2(user: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response (before base64)."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def oauthbearer(user: str, token: str, host: str = "", port: int = 0) -> bytes:
    """The SASL OAUTHBEARER (RFC 7628) initial response (before base64)."""
    identity = user.replace("=", "=3D").replace(",", "=2C")
    where = (f"host={host}\x01" if host else "") + (f"port={port}\x01" if port else "")
    return f"n,a={identity},\x01{where}auth=Bearer {token}\x01\x01".encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Cached:
    """The caching shared by every source: one fetch at a time, renewed before expiry."""

    mode = "oauth2"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.fetches = 0  # how many tokens were fetched (for tests and logs)

    async def token(self, force_refresh: bool = False) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is None or force_refresh or self._clock() >= self._renew_at:
                token, lifetime = await self._fetch(force_refresh)
                if not token:
                    raise TokenError(f"{self.mode}: the identity provider sent no access token")
                margin = min(_LONGEST_MARGIN, lifetime / 10)
                self._token, self._renew_at = token, self._clock() + lifetime - margin
                self.fetches += 1
            return self._token

    async def _fetch(self, force_refresh: bool) -> tuple[str, float]:
        raise NotImplementedError


def _oauth_error(body: Any) -> str:
    """The OAuth error code (and the first line of its description) from a token reply."""
    if not isinstance(body, dict):
        return "no error code"
    code = str(body.get("error") or "no error code")
    described = str(body.get("error_description") or "").strip().splitlines()
    return f"{code}: {described[0][:160]}" if described else code


class ClientCredentials(_Cached):
    """A client-credentials grant at ``token_url`` (RFC 6749 4.4), over httpx."""

    mode = "oauth2"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self._url, self._id, self._secret, self._scope = token_url, client_id, client_secret, scope
        self._timeout, self._transport = timeout, transport

    async def _fetch(self, force_refresh: bool) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._id,
            "client_secret": self._secret,
        }
        if self._scope:
            form["scope"] = self._scope
        try:
            async with httpx.AsyncClient(timeout=self._timeout, transport=self._transport) as http:
                response = await http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise TokenError(f"oauth2 token endpoint {self._url}: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            raise TokenError(
                f"oauth2 token endpoint {self._url} refused client {self._id}: "
                f"HTTP {response.status_code} ({_oauth_error(body)})"
            )
        return str(body.get("access_token") or ""), float(body.get("expires_in") or 3600)


class MicrosoftTokens(_Cached):
    """App-only tokens from Microsoft Entra ID (client credentials) through MSAL."""

    mode = "oauth2-microsoft"

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str | dict[str, str],  # or {"private_key": PEM, "thumbprint": hex}
        scope: str = MICROSOFT_SCOPE,
        http_client: Any = None,  # MSAL's HTTP layer (tests point it at a local stand-in)
        clock: Callable[[], float] = time.monotonic,
        authority: str = MICROSOFT_AUTHORITY,  # national clouds have their own
    ) -> None:
        super().__init__(clock)
        self._tenant, self._id, self._secret = tenant_id, client_id, client_secret
        self._scope = scope
        self._http_client = http_client
        self._authority = authority.rstrip("/")
        self._app: Any = None

    def _acquire(self, force_refresh: bool) -> dict[str, Any]:
        import msal

        if self._app is None or force_refresh:  # a new app: MSAL's own cache starts empty
            options: dict[str, Any] = {}
            if self._http_client is not None:
                options["http_client"] = self._http_client
            self._app = msal.ConfidentialClientApplication(
                self._id,
                authority=f"{self._authority}/{self._tenant}",
                client_credential=self._secret,
                # MSAL asks login.microsoftonline.com about hosts it does not know; an
                # authority configured by hand (a sovereign cloud, a stand-in) is trusted.
                instance_discovery=False,
                **options,
            )
        result: dict[str, Any] = self._app.acquire_token_for_client(scopes=[self._scope])
        return result

    async def _fetch(self, force_refresh: bool) -> tuple[str, float]:
        try:
            result = await asyncio.to_thread(self._acquire, force_refresh)
        except ImportError:
            raise TokenError(
                "oauth2-microsoft needs msal: pip install 'halo-approval-responder[oauth]'"
            ) from None
        except Exception as exc:  # MSAL raises ValueError, requests' errors, ...
            raise TokenError(
                f"oauth2-microsoft: cannot reach Entra ID for tenant {self._tenant}: "
                f"{type(exc).__name__}"
            ) from None
        if "access_token" not in result:
            raise TokenError(
                f"oauth2-microsoft: Entra ID refused client {self._id} in tenant {self._tenant} "
                f"({_oauth_error(result)})"
            )
        return str(result["access_token"]), float(result.get("expires_in") or 3600)


class GoogleTokens(_Cached):
    """Google Workspace: a service account acting as ``mailbox`` (domain-wide delegation),
    or a refresh token stored for a single mailbox, through google-auth."""

    mode = "oauth2-google"

    def __init__(
        self,
        mailbox: str,
        service_account_file: Path | None = None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self._mailbox, self._file = mailbox, service_account_file
        self._refresh, self._id, self._secret = refresh_token, client_id, client_secret
        self._token_url = token_url
        self._credentials: Any = None

    def _build(self) -> Any:
        if self._file is not None:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(self._file), scopes=[GOOGLE_SCOPE], subject=self._mailbox
            )
            if self._token_url:
                credentials._token_uri = self._token_url  # the JSON file's token_uri, overridden
            return credentials
        from google.oauth2.credentials import Credentials

        return Credentials(  # type: ignore[no-untyped-call]
            None,
            refresh_token=self._refresh,
            client_id=self._id,
            client_secret=self._secret,
            token_uri=self._token_url or "https://oauth2.googleapis.com/token",
            scopes=[GOOGLE_SCOPE],
        )

    def _acquire(self) -> tuple[str, float]:
        from google.auth.transport.requests import Request

        if self._credentials is None:
            self._credentials = self._build()
        self._credentials.refresh(Request())
        expiry = self._credentials.expiry  # naive UTC
        lifetime = 3600.0
        if expiry is not None:
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            lifetime = max((expiry - now).total_seconds(), 1.0)
        return str(self._credentials.token or ""), lifetime

    async def _fetch(self, force_refresh: bool) -> tuple[str, float]:
        import google.auth.exceptions

        try:
            return await asyncio.to_thread(self._acquire)
        except ImportError:
            raise TokenError(
                "oauth2-google needs google-auth and requests: "
                "pip install 'halo-approval-responder[oauth]'"
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            raise TokenError(
                f"oauth2-google: Google refused the {self._kind()} "
                f"for {self._mailbox} ({_google_error(exc)})"
            ) from None
        except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise TokenError(
                f"oauth2-google: {self._kind()} for {self._mailbox}: {type(exc).__name__}"
            ) from None

    def _kind(self) -> str:
        return "service account" if self._file is not None else "refresh token"


def _google_error(exc: BaseException) -> str:
    """google-auth's RefreshError carries (message, response body): keep the error code."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    body = args[1] if len(args) > 1 else None
    return _oauth_error(body) if isinstance(body, dict) else "invalid_grant"


def token_source(settings: ImapSettings | SmtpSettings, **options: Any) -> TokenSource | None:
    """The token source an [imap] or [smtp] section asks for; None for password sign-in."""
    s = settings
    secret = s.client_secret.get_secret_value() if s.client_secret else ""
    if s.auth == "oauth2":
        assert s.token_url and s.client_id
        return ClientCredentials(s.token_url, s.client_id, secret, s.scope, **options)
    if s.auth == "oauth2-microsoft":
        assert s.tenant_id and s.client_id
        return MicrosoftTokens(
            s.tenant_id, s.client_id, secret, s.scope or MICROSOFT_SCOPE, **options
        )
    if s.auth == "oauth2-google":
        assert s.username
        refresh = s.refresh_token.get_secret_value() if s.refresh_token else None
        return GoogleTokens(
            s.username,
            s.service_account_file,
            refresh,
            s.client_id,
            secret or None,
            s.token_url,
            **options,
        )
    return None
