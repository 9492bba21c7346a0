"""A stand-in OAuth2 identity provider over real HTTP, for the mail sign-in tests.

Stdlib (plus ``cryptography`` for service-account JWTs): a ``ThreadingHTTPServer`` on
127.0.0.1 in a daemon thread. It issues short-lived bearer tokens and answers Dovecot's
token introspection, so that a real Dovecot and a real aiosmtpd check real tokens.

    POST /token                       client_credentials, refresh_token, or jwt-bearer
                                      (a Google service account's signed assertion)
    POST /{tenant}/oauth2/v2.0/token  the same, where MSAL sends it
    GET  /{tenant}/v2.0/.well-known/openid-configuration   MSAL's tenant discovery
    GET  /common/discovery/instance   MSAL's instance discovery
    POST /introspect                  RFC 7662: ``token=...`` -> active, username

A token is active until it expires (``lifetime`` seconds) or is revoked. Each client,
refresh token or service account is granted one mailbox: the token's ``username``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

from tests.servers import SmtpSink, _SinkHandler, free_port

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class Issued:
    token: str
    username: str
    expires_at: float  # time.monotonic()
    grant: str
    revoked: bool = False

    @property
    def active(self) -> bool:
        return not self.revoked and time.monotonic() < self.expires_at


@dataclass
class StandinIdp:
    """Register grants with ``add_client`` / ``add_refresh_token`` / ``add_service_account``."""

    lifetime: float = 3600.0
    host: str = "127.0.0.1"
    port: int = 0
    issued: list[Issued] = field(default_factory=list)
    introspections: int = 0
    _clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> secret, mailbox
    _lifetimes: dict[str, float] = field(default_factory=dict)  # mailbox -> its own lifetime
    _refresh: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    _accounts: dict[str, Any] = field(default_factory=dict)  # client_email -> public key
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- lifecycle --

    def __enter__(self) -> StandinIdp:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        idp = self

        class Handler(_Handler):
            provider = idp

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def introspection_url(self) -> str:
        return self.url + "/introspect"

    # -- grants --

    def add_client(self, mailbox: str, lifetime: float | None = None) -> tuple[str, str]:
        """A client-credentials app granted ``mailbox``; returns (client_id, secret).

        ``lifetime`` gives tokens for that mailbox their own lifetime in seconds.
        """
        client_id, secret = "app-" + secrets.token_hex(4), "cs-" + secrets.token_urlsafe(16)
        with self._lock:
            self._clients[client_id] = (secret, mailbox)
            if lifetime is not None:
                self._lifetimes[mailbox] = lifetime
        return client_id, secret

    def add_refresh_token(self, mailbox: str) -> tuple[str, str, str]:
        """A stored refresh token for ``mailbox``; returns (refresh_token, client_id, secret)."""
        client_id, secret = "app-" + secrets.token_hex(4), "cs-" + secrets.token_urlsafe(16)
        refresh = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[refresh] = (client_id, secret, mailbox)
        return refresh, client_id, secret

    def add_service_account(self, client_email: str, public_key: Any) -> None:
        """A service account with domain-wide delegation: its JWT's ``sub`` is the mailbox."""
        with self._lock:
            self._accounts[client_email] = public_key

    # -- tokens --

    def tokens_for(self, username: str) -> list[Issued]:
        with self._lock:
            return [t for t in self.issued if t.username == username]

    def revoke_all(self, username: str) -> None:
        with self._lock:
            for issued in self.issued:
                if issued.username == username:
                    issued.revoked = True

    def _issue(self, username: str, grant: str) -> dict[str, Any]:
        token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            lifetime = self._lifetimes.get(username, self.lifetime)
            self.issued.append(Issued(token, username, time.monotonic() + lifetime, grant))
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": max(round(lifetime), 1),
        }

    def grant(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, Any]:
        kind = form.get("grant_type", "")
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        with self._lock:
            client = self._clients.get(client_id)
            refresh = self._refresh.get(form.get("refresh_token", ""))
        if kind == "client_credentials":
            if client is None or not secrets.compare_digest(client[0], secret):
                return 401, {"error": "invalid_client"}
            return 200, self._issue(client[1], kind)
        if kind == "refresh_token":
            if refresh is None or (refresh[0], refresh[1]) != (client_id, secret):
                return 400, {"error": "invalid_grant"}
            return 200, self._issue(refresh[2], kind)
        if kind == JWT_BEARER:
            subject = self._check_assertion(form.get("assertion", ""))
            if subject is None:
                return 400, {"error": "invalid_grant"}
            return 200, self._issue(subject, kind)
        return 400, {"error": "unsupported_grant_type"}

    def _check_assertion(self, assertion: str) -> str | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, body, sig = assertion.split(".")
            claims = json.loads(_unb64(body))
            key = self._accounts[claims["iss"]]
            key.verify(_unb64(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return None
        if claims.get("exp", 0) < time.time() or claims.get("scope") != "https://mail.google.com/":
            return None
        subject = claims.get("sub")
        return subject if isinstance(subject, str) else None

    def introspect(self, token: str) -> dict[str, Any]:
        with self._lock:
            self.introspections += 1
            found = next((t for t in self.issued if t.token == token), None)
        if found is None or not found.active:
            return {"active": False}
        return {"active": True, "username": found.username, "token_type": "Bearer"}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Handler(BaseHTTPRequestHandler):
    provider: StandinIdp
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = path.split("/")[1]
            base = f"https://login.microsoftonline.com/{tenant}"  # as Entra ID answers
            self._reply(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                },
            )
            return
        if path == "/common/discovery/instance":  # MSAL's instance discovery (aliases)
            hosts = ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com"]
            self._reply(
                200,
                {
                    "api-version": "1.1",
                    "tenant_discovery_endpoint": "https://login.microsoftonline.com/common/v2.0/"
                    ".well-known/openid-configuration",
                    "metadata": [
                        {
                            "preferred_network": hosts[0],
                            "preferred_cache": hosts[1],
                            "aliases": hosts,
                        }
                    ],
                },
            )
            return
        self._reply(404, {"error": "not_found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(self.rfile.read(length).decode()))
        path = urlsplit(self.path).path
        if path == "/introspect":
            self._reply(200, self.provider.introspect(form.get("token", "")))
        elif path == "/token" or path.endswith("/oauth2/v2.0/token"):
            self._reply(*self.provider.grant(form, self._basic()))
        else:
            self._reply(404, {"error": "not_found"})

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        with contextlib.suppress(ValueError):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(user), unquote(password)
        return None


class BearerSmtpHandler(_SinkHandler):
    """An SMTP sink handler that takes AUTH XOAUTH2 and OAUTHBEARER, checking each token
    with the stand-in IdP's introspection, and requires the token's user to be the login."""

    def __init__(self, sink: SmtpSink, idp: StandinIdp) -> None:
        super().__init__(sink)
        self.idp = idp
        self.attempts: list[tuple[str, bool]] = []  # (mechanism, accepted)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._check(server, "XOAUTH2", args)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._check(server, "OAUTHBEARER", args)

    async def _check(self, server: SMTP, mechanism: str, args: list[str]) -> AuthResult:
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        fields = base64.b64decode(args[1]).decode().split("\x01")
        user = ""
        if mechanism == "XOAUTH2":
            user = fields[0].removeprefix("user=")
        else:  # gs2 header "n,a=user,"
            user = (
                fields[0].split(",")[1].removeprefix("a=").replace("=2C", ",").replace("=3D", "=")
            )
        auth = next((f for f in fields if f.startswith("auth=Bearer ")), "")
        answer = self.idp.introspect(auth.removeprefix("auth=Bearer "))
        ok = bool(answer.get("active")) and answer.get("username") == user
        self.attempts.append((mechanism, ok))
        if ok:
            return AuthResult(success=True, handled=False, auth_data=user)
        # As Gmail and Exchange do: the error as a 334 challenge, then 535 after the reply.
        error = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
        await server.challenge_auth(error, encode_to_b64=False)
        return AuthResult(success=False, handled=False)


@dataclass
class BearerSmtpSink(SmtpSink):
    """``SmtpSink`` that requires AUTH XOAUTH2 or OAUTHBEARER with a token from ``idp``."""

    idp: StandinIdp | None = None
    handler: BearerSmtpHandler | None = None

    def start(self) -> None:
        assert self.idp is not None
        self.port = self.port or free_port(self.host)
        self.handler = BearerSmtpHandler(self, self.idp)
        self._controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            auth_require_tls=False,
            auth_required=True,
            auth_exclude_mechanism=["PLAIN", "LOGIN"],
        )
        self._controller.start()
