"""A stand-in Microsoft Graph (and its Entra ID token endpoint) over real HTTPS, for tests.

No Exchange Online tenant is reachable from where this project is built, so this follows
Microsoft's documented request and response shapes closely enough that MSAL, httpx and
the Graph mailbox and sender run over real sockets, real TLS and real error answers:

    GET  /{tenant}/v2.0/.well-known/openid-configuration    MSAL's tenant discovery
    POST /{tenant}/oauth2/v2.0/token        client credentials: a secret, or a certificate's
                                            signed client_assertion; scope .../.default
    /v1.0/users/{mailbox}/...
      GET  mailFolders[?$filter=displayName eq '..']        top-level folders
      POST mailFolders, mailFolders/{id}/childFolders       create (ErrorFolderExists, 409
                                            or ``folder_exists_status``)
      GET  mailFolders/{id}, mailFolders/{id}/childFolders
      GET  mailFolders/{id}/messages        $select, $expand of the size property (its id
                                            in Graph's canonical form), $top,
                                            $filter=internetMessageId eq '..', nextLink
      GET  mailFolders/{id}/messages/delta  nextLink/deltaLink paging (Prefer:
                                            odata.maxpagesize), @removed, 410 when expired
      GET  messages/{id}                    $select: internetMessageHeaders, body, ...
      GET  messages/{id}/$value             the MIME message
      PATCH messages/{id}                   categories
      POST messages/{id}/move               201 with the moved copy's new id; 404 after
      POST sendMail                         base64 MIME, Content-Type text/plain; 202

An app holds application permissions (Mail.ReadWrite, Mail.Send) on the mailboxes it is
scoped to (RBAC for Applications); anything else is 403 ErrorAccessDenied. At most
``max_concurrent`` requests per mailbox run at once (more: 429 MailboxConcurrency with
Retry-After), as Outlook does. ``throttle_next`` answers 429 with a Retry-After.

Switches for what is unconfirmed: ``drop_headers`` (Graph gives empty
internetMessageHeaders for some items, microsoft-graph-docs#4436), ``regenerate_mime``
(whether ``$value`` is the byte-exact original or MIME Exchange writes anew from its
store), ``hide_organization_headers`` (whether X-MS-Exchange-Organization-* headers such
as AuthAs reach ``$value`` and internetMessageHeaders), ``expire_delta_links`` (delta
tokens expire after an unknown time), ``size_property_id`` (the spelling of the extended
property id in answers: Graph's canonical "Integer 0xe08" by default, or the spelling asked
for), ``folder_exists_status`` (the HTTP status of ErrorFolderExists: 409 or 400) and
``sendmail_checks_body_first`` (an empty sendMail refused as invalid, 400, even without
Mail.Send: the validation order Graph does not document).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import email
import email.policy
import email.utils
import ipaddress
import json
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SIZE_PROPERTY = "Integer 0x0E08"  # as the responder asks for it
CANONICAL_SIZE_PROPERTY = "Integer 0xe08"  # as Graph answers: lower-case hex, no leading 0
WELL_KNOWN = ("inbox", "archive", "deleteditems", "junkemail", "drafts", "sentitems",
              "outbox")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id() -> str:
    return "AAMkAG" + secrets.token_urlsafe(24) + "AAA="


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None  # None: a child of the root (msgfolderroot)


@dataclass
class Stored:
    id: str
    folder: str
    raw: bytes
    received: str
    modified: str
    categories: list[str] = field(default_factory=list)


@dataclass
class App:
    secret: str | None
    public_key: Any  # a certificate's public key (cryptography), or None
    thumbprint: str | None
    mailboxes: set[str]
    permissions: set[str]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # below /v1.0/users/{mailbox}, or the token path
    query: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)
    body: bytes = b""
    mailbox: str = ""


class Mailbox:
    """One Exchange mailbox: folders, messages, and each folder's change log for delta."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.folders: dict[str, Folder] = {}
        for name in WELL_KNOWN:
            self.folders[name] = Folder(name, name.capitalize() if name == "inbox" else name,
                                        None)
        self.folders["inbox"].name = "Inbox"
        self.messages: dict[str, Stored] = {}
        self.changes: list[tuple[int, str, str]] = []  # (seq, folder, message id)
        self.seq = 0
        self.sent: list[bytes] = []

    def change(self, folder: str, message_id: str) -> None:
        self.seq += 1
        self.changes.append((self.seq, folder, message_id))

    def in_folder(self, folder: str) -> list[Stored]:
        return sorted((m for m in self.messages.values() if m.folder == folder),
                      key=lambda m: (m.received, m.id))


class StandinGraph:
    """Start with ``with StandinGraph() as graph``; add mailboxes, apps and mail."""

    def __init__(self, *, max_concurrent: int = 4, token_lifetime: int = 3600) -> None:
        self.max_concurrent = max_concurrent
        self.token_lifetime = token_lifetime
        self.latency = 0.0  # seconds added to each Graph request
        self.drop_headers = False  # internetMessageHeaders empty, as for some real items
        self.regenerate_mime = False  # $value re-serialised, not the bytes that arrived
        self.hide_organization_headers = False  # X-MS-Exchange-Organization-* left out
        self.refuse_recipients: set[str] = set()  # sendMail to these: 400 ErrorInvalidRecipients
        self.size_property_id = CANONICAL_SIZE_PROPERTY  # or SIZE_PROPERTY: echo the asked form
        self.folder_exists_status = 409  # or 400: both are reported for ErrorFolderExists
        self.sendmail_checks_body_first = False  # an empty sendMail: 400 before the 403
        self.requests: list[Recorded] = []
        self.peak_in_flight = 0
        self.mailboxes: dict[str, Mailbox] = {}
        self._apps: dict[str, App] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expiry)
        self._throttle: list[tuple[int, float]] = []  # status, Retry-After of the next refusals
        self._in_flight: dict[str, int] = {}
        self._min_seq: dict[str, int] = {}  # delta tokens older than this: 410
        self._rounds: dict[str, tuple[list[str], int, str]] = {}  # skiptoken -> the round
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="standin-graph-"))
        self.ca_file = self._dir / "ca.pem"
        self.port = 0

    # -- lifecycle --

    def __enter__(self) -> StandinGraph:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        graph = self
        context = self._tls_context()

        class Handler(_Handler):
            standin = graph

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def graph_url(self) -> str:
        return self.url + "/v1.0"

    def env(self) -> dict[str, str]:
        """What a process needs to trust the stand-in's certificate (requests and httpx)."""
        return {"REQUESTS_CA_BUNDLE": str(self.ca_file), "SSL_CERT_FILE": str(self.ca_file)}

    @classmethod
    @contextlib.contextmanager
    def trusted(cls) -> Iterator[StandinGraph]:
        """A running stand-in whose CA this process trusts (MSAL and httpx) meanwhile."""
        with cls() as server:
            saved = {k: os.environ.get(k) for k in server.env()}
            os.environ.update(server.env())
            try:
                yield server
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value

    def _tls_context(self) -> ssl.SSLContext:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = dt.datetime.now(dt.UTC)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
            ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stand-in Graph CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                           False, False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                     x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca_file.write_bytes(ca.public_bytes(pem))
        (self._dir / "cert.pem").write_bytes(leaf.public_bytes(pem))
        (self._dir / "key.pem").write_bytes(key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._dir / "cert.pem", self._dir / "key.pem")
        return context

    # -- setting up --

    def add_mailbox(self, address: str) -> Mailbox:
        with self._lock:
            return self.mailboxes.setdefault(address.lower(), Mailbox(address))

    def add_app(
        self,
        mailboxes: list[str],
        permissions: tuple[str, ...] = ("Mail.ReadWrite", "Mail.Send"),
        *,
        certificate: tuple[Any, str] | None = None,  # (public key, thumbprint hex)
    ) -> tuple[str, str]:
        """An app registration scoped to ``mailboxes``; returns (client id, secret)."""
        client_id = str(secrets.token_hex(4)) + "-app"
        secret = None if certificate else "gs~" + secrets.token_urlsafe(24)
        with self._lock:
            self._apps[client_id] = App(
                secret, certificate[0] if certificate else None,
                certificate[1].upper() if certificate else None,
                {m.lower() for m in mailboxes}, set(permissions))
        return client_id, secret or ""

    def deliver(self, address: str, raw: bytes, folder: str = "inbox") -> str:
        """A message arriving by transport into ``folder``; returns its id."""
        with self._lock:
            box = self.mailboxes[address.lower()]
            stamp = _now()
            stored = Stored(_new_id(), box.folders[folder].id if folder in box.folders else
                            self.folder_id(address, folder), raw, stamp, stamp)
            box.messages[stored.id] = stored
            box.change(stored.folder, stored.id)
            return stored.id

    def folder_id(self, address: str, path: str) -> str:
        return self._walk(address, path, make=False)

    def add_folder(self, address: str, path: str) -> str:
        """A folder made by someone else (another instance, a user): each missing level."""
        with self._lock:
            return self._walk(address, path, make=True)

    def _walk(self, address: str, path: str, *, make: bool) -> str:
        """The id of the folder at ``path`` ("Approvals/Done"); KeyError when a level is
        missing, unless ``make``: then the missing levels are made."""
        box = self.mailboxes[address.lower()]
        parent: str | None = None
        for depth, name in enumerate(n for n in path.split("/") if n):
            if depth == 0 and name.lower() in box.folders:
                parent = name.lower()
                continue
            found = [f for f in box.folders.values()
                     if f.parent == parent and f.name.lower() == name.lower()]
            if not found and not make:
                raise KeyError(path)
            if not found:
                found = [Folder(_new_id(), name, parent)]
                box.folders[found[0].id] = found[0]
            parent = found[0].id
        assert parent is not None
        return parent

    def delete_folder(self, address: str, path: str) -> None:
        """A user deleting a folder (and what is in it) in Outlook."""
        with self._lock:
            box = self.mailboxes[address.lower()]
            gone = self.folder_id(address, path)
            for message in [m for m in box.messages.values() if m.folder == gone]:
                del box.messages[message.id]
            del box.folders[gone]

    def folder_messages(self, address: str, path: str) -> list[bytes]:
        with self._lock:
            try:
                folder = self.folder_id(address, path)
            except KeyError:
                return []
            return [m.raw for m in self.mailboxes[address.lower()].in_folder(folder)]

    def tree(self, address: str) -> dict[str, int]:
        """Every folder path that holds messages, with how many."""
        with self._lock:
            box = self.mailboxes[address.lower()]

            def path(folder: Folder) -> str:
                parent = box.folders.get(folder.parent or "")
                return (path(parent) + "/" if parent else "") + folder.name

            counts: dict[str, int] = {}
            for message in box.messages.values():
                name = path(box.folders[message.folder])
                counts[name] = counts.get(name, 0) + 1
            return counts

    def sent(self, address: str) -> list[bytes]:
        with self._lock:
            return list(self.mailboxes[address.lower()].sent)

    # -- faults --

    def throttle_next(self, times: int = 1, retry_after: float = 1.0, status: int = 429) -> None:
        """Answer the next ``times`` Graph requests 429 (or 503) with this Retry-After."""
        with self._lock:
            self._throttle += [(status, retry_after)] * times

    def expire_delta_links(self, address: str) -> None:
        """Every delta link issued so far for this mailbox answers 410 from now on."""
        with self._lock:
            self._min_seq[address.lower()] = self.mailboxes[address.lower()].seq + 1

    def graph_requests(self, mailbox: str, method: str = "", contains: str = ""
                       ) -> list[Recorded]:
        """The Graph requests about ``mailbox`` (token requests not included)."""
        with self._lock:
            return [r for r in self.requests if r.mailbox == mailbox.lower()
                    and (not method or r.method == method) and contains in r.path]

    # -- tokens --

    def issue(self, form: dict[str, str], tenant: str) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id", "")
        app = self._apps.get(client_id)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if app is None:
            return 400, {"error": "unauthorized_client", "error_description":
                         f"AADSTS700016: Application with identifier '{client_id}' was not "
                         f"found in the directory '{tenant}'."}
        if not self._authenticated(app, form):
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS7000215: Invalid client secret provided."}
        if form.get("scope", "").split() != [GRAPH_SCOPE]:
            return 400, {"error": "invalid_scope", "error_description":
                         "AADSTS1002012: The provided value for scope is not valid."}
        token = "eyJ0eXAi." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (client_id, time.monotonic() + self.token_lifetime)
        return 200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                     "ext_expires_in": self.token_lifetime, "access_token": token}

    def _authenticated(self, app: App, form: dict[str, str]) -> bool:
        if app.secret is not None:
            return secrets.compare_digest(form.get("client_secret", ""), app.secret)
        assertion = form.get("client_assertion", "")
        if form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" or not assertion:
            return False
        return _assertion_valid(assertion, app)

    def app_of(self, authorization: str) -> App | None:
        token = authorization.removeprefix("Bearer ").strip()
        with self._lock:
            found = self._tokens.get(token)
            if found is None or time.monotonic() > found[1]:
                return None
            return self._apps.get(found[0])

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # -- admission (throttling) --

    def admit(self, address: str) -> tuple[int, float] | None:
        """None to go ahead, else the status (429, 503) and Retry-After of a refusal."""
        with self._lock:
            if self._throttle:
                return self._throttle.pop(0)
            running = self._in_flight.get(address, 0) + 1
            if running > self.max_concurrent:
                return 429, 1.0
            self._in_flight[address] = running
            self.peak_in_flight = max(self.peak_in_flight, running)
            return None

    def release(self, address: str) -> None:
        with self._lock:
            self._in_flight[address] -= 1

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _assertion_valid(assertion: str, app: App) -> bool:
    """A client assertion JWT signed with the certificate's key, naming its thumbprint."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    try:
        head_b64, body_b64, sig_b64 = assertion.split(".")
        head = json.loads(_b64url(head_b64))
        claims = json.loads(_b64url(body_b64))
        signed = f"{head_b64}.{body_b64}".encode()
        alg = head.get("alg")
        pad: Any = padding.PKCS1v15() if alg == "RS256" else padding.PSS(
            mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        app.public_key.verify(_b64url(sig_b64), signed, pad, hashes.SHA256())
    except (ValueError, KeyError, InvalidSignature, binascii.Error, AttributeError):
        return False
    thumb = head.get("x5t") or ""
    thumb256 = head.get("x5t#S256") or ""
    known = app.thumbprint or ""
    matches = (thumb and _b64url(thumb).hex().upper() == known) or (
        thumb256 and len(known) == 64 and _b64url(thumb256).hex().upper() == known)
    return bool(matches) and claims.get("exp", 0) > time.time()


# --- the HTTP side ---------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a cancelled poll, a killed process) is no error here."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
                 raw: bytes | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers, self.raw = status, body, headers or {}, raw


def _error(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, {"error": {"code": code, "message": message,
                                     "innerError": {"date": _now(),
                                                    "request-id": secrets.token_hex(8)}}})


class _Handler(BaseHTTPRequestHandler):
    standin: StandinGraph
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = unquote(split.path), dict(parse_qsl(split.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if path.endswith("/v2.0/.well-known/openid-configuration"):
                tenant = path.split("/")[1]
                base = f"{self.standin.url}/{tenant}"
                raise _Reply(200, {"token_endpoint": f"{base}/oauth2/v2.0/token",
                                   "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                                   "issuer": f"{base}/v2.0"})
            if path.endswith("/oauth2/v2.0/token") and method == "POST":
                status, answer = self.standin.issue(dict(parse_qsl(body.decode())),
                                                    path.split("/")[1])
                self.standin.record(Recorded(method, "/token", {}, status))
                raise _Reply(status, answer)
            self._graph(method, path, query, body)
        except _Reply as reply:
            self._send(reply)
        except Exception as exc:  # a bug in the stand-in: say so instead of hanging up
            self._send(_error(500, "StandinBug", f"{type(exc).__name__}: {exc}"))

    def _graph(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        prefix = "/v1.0/users/"
        if not path.startswith(prefix):
            raise _error(400, "BadRequest", "Resource not found for the segment.")
        address, _, rest = path[len(prefix):].partition("/")
        status = 0
        graph = self.standin
        app = graph.app_of(self.headers.get("Authorization", ""))
        try:
            if app is None:
                raise _error(401, "InvalidAuthenticationToken", "Access token is empty.")
            box = graph.mailboxes.get(address.lower())
            if box is None:
                raise _error(404, "ErrorInvalidUser",
                             f"The requested user '{address}' is invalid.")
            refused = graph.admit(address.lower())
            if refused is not None:
                status, retry = refused
                error = ({"code": "ApplicationThrottled", "message": "Application is over its "
                          "MailboxConcurrency limit."} if status == 429 else
                         {"code": "ServiceUnavailable", "message": "Service Unavailable"})
                raise _Reply(status, {"error": error}, headers={"Retry-After": f"{retry:g}"})
            try:
                if graph.latency:
                    time.sleep(graph.latency)
                with graph._lock:
                    _Api(graph, box, app, self.headers).route(method, "/" + rest, query, body)
            finally:
                graph.release(address.lower())
        except _Reply as reply:
            status = reply.status
            raise
        finally:
            graph.record(Recorded(method, "/" + rest, query, status, body=body[:200],
                                  mailbox=address.lower()))

    def _send(self, reply: _Reply) -> None:
        data = reply.raw if reply.raw is not None else (
            json.dumps(reply.body).encode() if reply.body is not None else b"")
        self.send_response(reply.status)
        kind = "message/rfc822" if reply.raw is not None else "application/json"
        if data:
            self.send_header("Content-Type", kind)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Api:
    """One Graph request against one mailbox, under the stand-in's lock."""

    def __init__(self, graph: StandinGraph, box: Mailbox, app: App, headers: Any) -> None:
        self.graph, self.box, self.app, self.headers = graph, box, app, headers
        self.base = f"{graph.graph_url}/users/{quote(box.address)}"

    def need(self, permission: str) -> None:
        if self.box.address.lower() not in self.app.mailboxes or (
                permission not in self.app.permissions
                and not (permission == "Mail.Read" and "Mail.ReadWrite" in self.app.permissions)):
            raise _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and "
                         "try again.")

    def route(self, method: str, rest: str, query: dict[str, str], body: bytes) -> None:
        parts = [p for p in rest.split("/") if p]
        if parts == ["sendMail"] and method == "POST":
            self.send_mail(body)
        if parts[:1] == ["mailFolders"]:
            self.folders(method, parts[1:], query, body)
        if parts[:1] == ["messages"] and len(parts) >= 2:
            self.message(method, parts[1], parts[2:], query, body)
        raise _error(400, "BadRequest", f"Unsupported request {method} {rest}")

    # -- folders --

    def folder(self, ref: str) -> Folder:
        folder = self.box.folders.get(ref) or self.box.folders.get(ref.lower())
        if folder is None:
            raise _error(404, "ErrorItemNotFound", "The specified object was not found in "
                         "the store.")
        return folder

    def folder_json(self, folder: Folder) -> dict[str, Any]:
        count = sum(m.folder == folder.id for m in self.box.messages.values())
        children = sum(f.parent == folder.id for f in self.box.folders.values())
        return {"id": folder.id, "displayName": folder.name,
                "parentFolderId": folder.parent or "msgfolderroot",
                "childFolderCount": children, "totalItemCount": count, "unreadItemCount": 0}

    def folders(self, method: str, parts: list[str], query: dict[str, str], body: bytes) -> None:
        self.need("Mail.Read")
        if not parts or parts[1:] == ["childFolders"]:
            parent = self.folder(parts[0]).id if parts else None
            if method == "POST":
                self.need("Mail.ReadWrite")
                name = str(json.loads(body or b"{}").get("displayName") or "")
                if not name:
                    raise _error(400, "ErrorInvalidRequest", "displayName is required")
                if any(f.parent == parent and f.name.lower() == name.lower()
                       for f in self.box.folders.values()):
                    raise _error(self.graph.folder_exists_status, "ErrorFolderExists",
                                 "A folder with the specified name already exists.")
                made = Folder(_new_id(), name, parent)
                self.box.folders[made.id] = made
                raise _Reply(201, self.folder_json(made))
            found = [f for f in self.box.folders.values() if f.parent == parent]
            wanted = query.get("$filter", "")
            if wanted.startswith("displayName eq "):
                name = wanted.removeprefix("displayName eq ").strip("'").replace("''", "'")
                found = [f for f in found if f.name.lower() == name.lower()]
            raise _Reply(200, {"value": [self.folder_json(f) for f in found]})
        folder = self.folder(parts[0])
        if len(parts) == 1:
            raise _Reply(200, self.folder_json(folder))
        if parts[1:] == ["messages", "delta"]:
            self.delta(folder, query)
        if parts[1:] == ["messages"]:
            self.listing(folder, query)
        raise _error(400, "BadRequest", "Unsupported folder request")

    # -- messages --

    def stored(self, ref: str) -> Stored:
        found = self.box.messages.get(ref)
        if found is None:
            raise _error(404, "ErrorItemNotFound",
                         "The specified object was not found in the store.")
        return found

    def message_json(self, message: Stored, select: str, expand: str = "") -> dict[str, Any]:
        fields = {f.strip() for f in select.split(",") if f.strip()} or {
            "receivedDateTime", "subject", "hasAttachments", "internetMessageId",
            "parentFolderId", "categories", "lastModifiedDateTime"}
        data: dict[str, Any] = {"id": message.id}
        plain: dict[str, Any] = {
            "receivedDateTime": message.received,
            "lastModifiedDateTime": message.modified,
            "sentDateTime": message.received,
            "parentFolderId": message.folder,
            "categories": list(message.categories),
        }
        parsed: email.message.Message | None = None
        for name in sorted(fields):
            if name in plain:
                data[name] = plain[name]
                continue
            if parsed is None:  # parsing a 20 MB message only when a field needs it
                parsed = email.message_from_bytes(message.raw, policy=email.policy.compat32)
            sender = email.utils.parseaddr(parsed.get("From", ""))
            if name == "subject":
                data[name] = parsed.get("Subject", "")
            elif name == "internetMessageId":
                data[name] = parsed.get("Message-ID", "")
            elif name == "hasAttachments":
                data[name] = any(p.get_content_disposition() == "attachment"
                                 for p in parsed.walk())
            elif name == "from":
                data[name] = {"emailAddress": {"address": sender[1], "name": sender[0]}}
            elif name == "internetMessageHeaders":
                data[name] = [] if self.graph.drop_headers else [
                    {"name": k, "value": str(v)} for k, v in parsed.items()
                    if not self.hidden(k)]
            elif name == "body":
                data[name] = _body(parsed)
        if _expands_size(expand):
            data["singleValueExtendedProperties"] = [
                {"id": self.graph.size_property_id, "value": str(len(message.raw))}]
        return data

    def hidden(self, name: str) -> bool:
        return self.graph.hide_organization_headers and name.lower().startswith(
            "x-ms-exchange-organization-")

    def mime(self, raw: bytes) -> bytes:
        """The message as ``$value`` gives it, under the switches."""
        if not (self.graph.regenerate_mime or self.graph.hide_organization_headers):
            return raw
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        for name in {k for k in parsed if self.hidden(k)}:
            del parsed[name]
        if not self.graph.regenerate_mime:
            return parsed.as_bytes()
        anew = email.message_from_bytes(parsed.as_bytes(), policy=email.policy.default)
        return anew.as_bytes(policy=email.policy.SMTP.clone(max_line_length=72))

    def listing(self, folder: Folder, query: dict[str, str]) -> None:
        messages = self.box.in_folder(folder.id)
        wanted = query.get("$filter", "")
        if wanted.startswith("internetMessageId eq "):
            mid = wanted.removeprefix("internetMessageId eq ").strip("'").replace("''", "'")
            messages = [m for m in messages if email.message_from_bytes(m.raw).get(
                "Message-ID", "") == mid]
        if query.get("$orderby", "").lower().endswith(" desc"):  # newest first
            messages = messages[::-1]
        top = int(query.get("$top", "10"))
        skip = int(query.get("$skip", "0"))
        page = messages[skip: skip + top]
        answer: dict[str, Any] = {"value": [
            self.message_json(m, query.get("$select", ""), query.get("$expand", ""))
            for m in page]}
        if skip + top < len(messages):
            rest = {k: v for k, v in query.items() if k != "$skip"}
            rest["$skip"] = str(skip + top)
            answer["@odata.nextLink"] = (f"{self.base}/mailFolders/{folder.id}/messages?"
                                         + "&".join(f"{k}={quote(v)}" for k, v in rest.items()))
        raise _Reply(200, answer)

    def delta(self, folder: Folder, query: dict[str, str]) -> None:
        """Initial round: every message now in the folder, then a deltaLink; later rounds:
        what changed since the link's state (created/updated, or @removed). A round's
        rows are fixed when it starts, so its pages stay consistent while mail moves."""
        graph = self.graph
        skip = query.get("$skiptoken")
        if skip:
            round_ = graph._rounds.get(skip.split(".")[0])
            if round_ is None:
                raise _error(400, "BadRequest", "The skip token is invalid.")
            ids, upto, select = round_
            offset = int(skip.split(".")[1])
        else:
            select = query.get("$select", "")
            since = -1
            token = query.get("$deltatoken")
            if token:
                try:
                    state = json.loads(_b64url(token))
                    since, select = int(state["s"]), str(state["f"])
                    if state["d"] != folder.id:
                        raise ValueError
                except (ValueError, KeyError, binascii.Error):
                    raise _error(400, "BadRequest", "The delta token is invalid.") from None
                if since < graph._min_seq.get(self.box.address.lower(), 0):
                    raise _error(410, "SyncStateNotFound",
                                 "The sync state generation is not found.")
            upto = self.box.seq
            if since < 0:
                ids = [m.id for m in self.box.in_folder(folder.id)]
            else:
                ids = list(dict.fromkeys(mid for seq, fid, mid in self.box.changes
                                         if seq > since and fid == folder.id))
            offset = 0
            skip = secrets.token_hex(8)
            graph._rounds[skip] = (ids, upto, select)
        size = 10
        prefer = self.headers.get("Prefer", "")
        if "odata.maxpagesize=" in prefer:
            size = int(prefer.split("odata.maxpagesize=")[1].split(",")[0])
        rows = []
        for mid in ids[offset: offset + size]:
            here = self.box.messages.get(mid)
            if here is not None and here.folder == folder.id:
                rows.append(self.message_json(here, select))
            else:
                rows.append({"id": mid, "@removed": {"reason": "deleted"}})
        link = f"{self.base}/mailFolders/{folder.id}/messages/delta?"
        answer: dict[str, Any] = {"value": rows}
        if offset + size < len(ids):
            answer["@odata.nextLink"] = (link + "$skiptoken="
                                         + f"{skip.split('.')[0]}.{offset + size}")
        else:
            answer["@odata.deltaLink"] = link + "$deltatoken=" + _token(folder.id, upto, select)
        raise _Reply(200, answer)

    def message(self, method: str, ref: str, rest: list[str], query: dict[str, str],
                body: bytes) -> None:
        if rest == ["$value"] and method == "GET":
            self.need("Mail.Read")
            raise _Reply(200, raw=self.mime(self.stored(ref).raw))
        if rest == ["move"] and method == "POST":
            self.need("Mail.ReadWrite")
            self.move(ref, str(json.loads(body or b"{}").get("destinationId") or ""))
        if rest == ["attachments"]:
            self.need("Mail.Read")
            raise _Reply(200, {"value": []})
        if not rest and method == "GET":
            self.need("Mail.Read")
            raise _Reply(200, self.message_json(self.stored(ref), query.get("$select", ""),
                                                query.get("$expand", "")))
        if not rest and method == "PATCH":
            self.need("Mail.ReadWrite")
            message = self.stored(ref)
            changes = json.loads(body or b"{}")
            if "categories" in changes:
                message.categories = [str(c) for c in changes["categories"]]
            message.modified = _now() + f".{time.monotonic_ns()}"
            self.box.change(message.folder, message.id)
            raise _Reply(200, self.message_json(message, ""))
        raise _error(400, "BadRequest", "Unsupported message request")

    def move(self, ref: str, destination: str) -> None:
        """The source item goes, a copy with a new id appears: one mover wins."""
        source = self.stored(ref)
        target = self.folder(destination)
        del self.box.messages[ref]
        self.box.change(source.folder, ref)
        moved = Stored(_new_id(), target.id, source.raw, source.received, _now(),
                       list(source.categories))
        self.box.messages[moved.id] = moved
        self.box.change(target.id, moved.id)
        raise _Reply(201, self.message_json(moved, ""))

    def send_mail(self, body: bytes) -> None:
        if not (self.graph.sendmail_checks_body_first and not body):
            self.need("Mail.Send")
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "text/plain":
            raise _error(400, "ErrorInvalidRequest", "JSON body expected")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        parsed = email.message_from_bytes(raw) if raw else None
        if parsed is None or not parsed.get("To"):
            raise _error(400, "ErrorMimeContentInvalidBase64String",
                         "Invalid base64 string for MIME content.")
        recipient = email.utils.parseaddr(str(parsed.get("To")))[1].lower()
        if recipient in self.graph.refuse_recipients:
            raise _error(400, "ErrorInvalidRecipients",
                         "At least one recipient isn't valid., Recipient is not valid.")
        self.box.sent.append(raw)
        raise _Reply(202)


def _tag(prop_id: str) -> tuple[str, int] | None:
    """("integer", 0xe08) for "Integer 0x0E08" or "Integer 0xe08": what the id names."""
    parts = prop_id.split()
    if len(parts) != 2 or not parts[1].lower().startswith("0x"):
        return None
    try:
        return parts[0].lower(), int(parts[1][2:], 16)
    except ValueError:
        return None


def _expands_size(expand: str) -> bool:
    """``singleValueExtendedProperties($filter=id eq '<the size property, any spelling>')``."""
    if "id eq '" not in expand:
        return False
    asked = expand.split("id eq '", 1)[1].split("'", 1)[0]
    return _tag(asked) is not None and _tag(asked) == _tag(SIZE_PROPERTY)


def _token(folder: str, seq: int, select: str) -> str:
    state = json.dumps({"d": folder, "s": seq, "f": select}).encode()
    return base64.urlsafe_b64encode(state).decode().rstrip("=")


def _body(parsed: email.message.Message) -> dict[str, str]:
    """The body as Exchange gives it: the HTML part when there is one, else the text."""
    html = text = None
    for part in parsed.walk():
        if part.get_content_disposition() == "attachment":
            continue
        kind = part.get_content_type()
        if kind in ("text/html", "text/plain"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                decoded = payload.decode(part.get_content_charset() or "utf-8", "replace")
                if kind == "text/html" and html is None:
                    html = decoded
                elif kind == "text/plain" and text is None:
                    text = decoded
    if html is not None:
        return {"contentType": "html", "content": html}
    return {"contentType": "text", "content": text or ""}

