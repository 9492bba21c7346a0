"""Real mail servers for tests and benchmarks: a private Dovecot and an in-process SMTP sink.

No pytest here, so that benchmark scripts can use the same launchers. The facts these
rest on (permissions, start-up time, how to stop Dovecot) are in
``shared/notes/real-servers-in-tests.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from imapclient import IMAPClient

DOVECOT_MISSING = (
    "dovecot is not installed (no {binary}); run the test command from README.md, "
    "which installs it (apt-get install -y dovecot-imapd)"
)

# Dovecot 2.3.19's post-login capabilities.
_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (aiosmtpd cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _scratch_dir(prefix: str) -> Path:
    """A 0755 temp dir (Dovecot's mail user must traverse it), on tmpfs when there is one."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    path.chmod(0o755)
    return path


def _wait_for_banner(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=1) as sock:
                if sock.recv(200).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"dovecot did not answer on {host}:{port} within 10 s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


@dataclass
class Dovecot:
    """A private Dovecot IMAP server on a free port, with a passwd-file of test users.

    ``tls=True`` adds a self-signed certificate (implicit TLS on ``tls_port``, STARTTLS on
    ``port``). ``idle=False`` hides IDLE from the capability list, for testing the polling path;
    ``hide`` hides others (e.g. ``("MOVE", "UIDPLUS")`` for the COPY fallback);
    mail lives in ``mail_dir(user)``, a Maildir in ``layout`` "fs" or "maildir++";
    ``separator`` sets the hierarchy separator clients see ("/" or ".").
    ``oauth2_introspection_url`` adds an OAuth2 passdb (SASL XOAUTH2 and OAUTHBEARER) that
    asks that RFC 7662 endpoint whether a bearer token is active and whose it is.
    """

    users: dict[str, str] = field(default_factory=dict)
    idle: bool = True
    hide: tuple[str, ...] = ()
    separator: str = "/"
    layout: str = "fs"  # or "maildir++", Dovecot's default (which refuses "." in names)
    tls: bool = False  # a self-signed certificate: implicit TLS on tls_port, STARTTLS on port
    tls_port: int = 0
    oauth2_introspection_url: str | None = None
    binary: str = "/usr/sbin/dovecot"
    host: str = "127.0.0.1"
    port: int = 0
    root: Path = field(default_factory=lambda: Path())
    _proc: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def start(self) -> None:
        """Write the config (first time only) and start Dovecot; return once it greets."""
        if not os.path.exists(self.binary):
            raise RuntimeError(DOVECOT_MISSING.format(binary=self.binary))
        if not self.port:
            self.port = free_port(self.host)
            self.tls_port = free_port(self.host) if self.tls else 0
            self.root = _scratch_dir("dovecot-")
            self._write_files()
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config_path)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_banner(self.host, self.port, self._proc, self.log_path)

    def stop(self) -> None:
        """Kill the whole process group: imap children outlive a stopped master by ~10 s."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        """Drop every connection and come back on the same port with the same mail."""
        self.stop()
        self.start()

    def add_user(self, user: str, password: str) -> None:
        """Add a login; Dovecot re-reads the passwd-file when it changes."""
        with self._lock:
            self.users[user] = password
            self._write_passwd()

    def mail_dir(self, user: str) -> Path:
        """The user's Maildir (created on first login)."""
        return self.root / "mail" / user

    def connect(self, user: str) -> IMAPClient:
        client = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        client.login(user, self.users[user])
        return client

    def append(self, user: str, folder: str, raw: bytes) -> None:
        """Deliver ``raw`` as another IMAP client would (creating the folder if needed)."""
        client = self.connect(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            client.append(folder, raw)
        finally:
            client.logout()

    def folder_messages(self, user: str, folder: str) -> list[bytes]:
        """Every message in ``folder``, in UID order, byte for byte; [] if it is missing."""
        client = self.connect(user)
        try:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search("ALL"))
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return [data[uid][b"BODY[]"] for uid in uids]
        finally:
            client.logout()

    def folders(self, user: str) -> list[str]:
        client = self.connect(user)
        try:
            return [str(name) for _flags, _sep, name in client.list_folders()]
        finally:
            client.logout()

    def _write_files(self) -> None:
        for sub in ("run", "state", "mail", "users"):
            (self.root / sub).mkdir(mode=0o755)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody").pw_uid
            nogroup = grp.getgrnam("nogroup").gr_gid
            os.chown(self.root / "mail", nobody, nogroup)
        self._write_passwd()
        if self.tls:
            self._make_certificate()
        if self.oauth2_introspection_url:
            (self.root / "dovecot-oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.oauth2_introspection_url}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
        self.config_path.write_text(self._config())

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-keyout",
                str(self.root / "key.pem"),
                "-out",
                str(self.root / "cert.pem"),
            ],
            check=True,
            capture_output=True,
        )

    def _write_passwd(self) -> None:
        # One passwd-file per user: Dovecot re-reads a changed file at most once a second,
        # but a new user's file is read at once.
        for user, password in self.users.items():
            path = self.root / "users" / user
            if not path.exists():
                tmp = path.with_suffix(".tmp")
                tmp.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
                tmp.chmod(0o644)
                tmp.replace(path)

    def _config(self) -> str:
        r = self.root
        if os.geteuid() == 0:
            mail_ids = "uid=nobody gid=nogroup"
            unprivileged = ""
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            mail_ids = f"uid={me} gid={group}"
            unprivileged = (
                f"default_internal_user = {me}\ndefault_login_user = {me}\n"
                f"default_internal_group = {group}\n"
            )
        # Dovecot 2.3 cannot subtract one capability: to hide some we list the rest.
        hidden = {c.upper() for c in self.hide} | (set() if self.idle else {"IDLE"})
        offered = " ".join(c for c in _CAPABILITIES.split() if c.upper() not in hidden)
        capability = f"imap_capability = {offered}\n" if hidden else ""
        login_chroot = "  chroot =\n" if unprivileged else ""
        mechanisms, oauth2 = "plain login", ""
        if self.oauth2_introspection_url:
            mechanisms = "plain login xoauth2 oauthbearer"
            oauth2 = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {r}/dovecot-oauth2.conf.ext\n}}\n"
            )
        tls = (
            f"ssl = yes\nssl_cert = <{r}/cert.pem\nssl_key = <{r}/key.pem\n"
            "ssl_dh = </usr/share/dovecot/dh.pem\n"
            if self.tls
            else "ssl = no\n"
        )
        return f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
listen = {self.host}
protocols = imap
{tls}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{r}/mail/%u{":LAYOUT=fs" if self.layout == "fs" else ""}
mail_fsync = never
auth_failure_delay = 0
{capability}{unprivileged}
namespace inbox {{
  inbox = yes
  separator = {self.separator}
}}
# No growing delay after failed logins from 127.0.0.1 (tests log in wrongly on purpose).
service anvil {{
{login_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{oauth2}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users/%u
  default_fields = {mail_ids} home={r}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
  }}
{login_chroot}}}
"""


@dataclass(frozen=True)
class Received:
    """One message as the sink got it: envelope and exact DATA bytes."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.sink.take_refusal()
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
        with self.sink.lock:
            self.sink.messages.append(message)
            pause = self.sink.delay if len(self.sink.messages) >= self.sink.delay_from else 0.0
        if pause > 0:  # kept, but not confirmed yet: a client killed now never learns it went
            await asyncio.sleep(pause)
        return "250 Message accepted"


@dataclass
class SmtpSink:
    """An aiosmtpd server on a free port that keeps what it receives.

    With ``username``/``password`` set it offers AUTH (and requires it); ``tls_context``
    enables STARTTLS. ``refuse_next(n, code)`` makes the next ``n`` recipients fail.
    ``delay`` holds each "250" for that many seconds after the message is kept (from the
    ``delay_from``-th message on): the window in which a sender killed has sent an answer
    without knowing it.
    """

    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    delay: float = 0.0
    delay_from: int = 1
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _refusals: list[str] = field(default_factory=list)
    _controller: Controller | None = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.port = self.port or free_port(self.host)
        kwargs: dict[str, Any] = {"auth_require_tls": False}
        if self.username is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
        self._controller = Controller(
            _SinkHandler(self), hostname=self.host, port=self.port, **kwargs
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse_next(self, n: int = 1, code: int = 451, text: str = "Try again later") -> None:
        with self.lock:
            self._refusals.extend([f"{code} {text}"] * n)

    def take_refusal(self) -> str | None:
        with self.lock:
            return self._refusals.pop(0) if self._refusals else None

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        # handled=False: aiosmtpd then answers a failure itself (else the client hangs).
        return AuthResult(success=ok, handled=False)
