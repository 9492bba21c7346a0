"""The settings tree: one TOML file, validated once at start, passed around as objects.

Every error names the key it is about (``imap.port: expected an integer``), and a
secret value may be written inline, as ``env:NAME`` or as ``file:/path``. Secrets are
held as ``SecretStr`` so that no repr, log line or error message shows them. A secret
written as a reference is read only when a command needs it (``require_secrets``), so
that ``audit``, ``backup`` and ``explain`` work from a shell that lacks the service's
environment.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from responder.reading.banners import check_patterns

TlsMode = Literal["implicit", "starttls", "none"]
AuthPolicy = Literal["require", "dkim-only", "off"]
MailAuth = Literal["password", "oauth2-microsoft", "oauth2-google", "oauth2"]
SmtpAuth = Literal["password", "oauth2-microsoft", "oauth2-google", "oauth2", "same-as-imap"]


class ConfigError(Exception):
    """The config file cannot be used; the message names each offending key."""


class SecretUnavailable(ConfigError):
    """A secret reference cannot be read here, e.g. an ``env:`` variable that only the
    service's environment sets; the message names the key."""


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("env:", "file:"))


def resolve_secret(value: Any) -> Any:
    """Turn ``env:NAME`` and ``file:/path`` into the secret they point at."""
    if not is_reference(value):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    path = Path(value[5:])
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None


class SecretRef(SecretStr):
    """A secret written as ``env:NAME`` or ``file:/path``, read the first time it is used.

    Its truth and length are those of the secret (so ``if secret:`` reads it); its repr
    shows only the reference's kind. Reading it where it is unavailable raises
    SecretUnavailable naming the key.
    """

    def __init__(self, reference: str) -> None:
        super().__init__("")
        self.reference = reference
        self.key = "secret"  # the config key, set once the settings are validated
        self._read = False

    def get_secret_value(self) -> str:
        if not self._read:
            try:
                self._secret_value = resolve_secret(self.reference)
            except ValueError as exc:
                raise SecretUnavailable(f"{self.key}: {exc}") from None
            self._read = True
        return self._secret_value

    def problem(self) -> str | None:
        """Why this secret cannot be read here, or None once it is read."""
        try:
            self.get_secret_value()
        except SecretUnavailable as exc:
            return str(exc)
        return None

    def __len__(self) -> int:
        return len(self.get_secret_value())

    def _display(self) -> str:
        return "**********"


def _lazy_secret(value: Any) -> Any:
    """References become SecretRef (read when used); inline values stay as they are."""
    return SecretRef(value) if is_reference(value) else value


def _web_address(value: str) -> str:
    """An https address with a host; plain http only to this machine (a test or a tunnel).

    Without a scheme every request would fail later; over plain http the client secret
    and the bearer tokens would cross the network in clear text.
    """
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ValueError(f"expected an address starting with https:// (got {value!r}), "
                         f"e.g. https://{rest or value or 'yourcompany.halopsa.com'}")
    if scheme.lower() == "http" and not _loopback(value):
        raise ValueError("plain http:// would send secrets and tokens in clear text: use "
                         "https:// (http:// is allowed only to 127.0.0.1, ::1 or localhost)")
    return value


def _loopback(url: str) -> bool:
    """Whether the URL's host is this machine: 127.0.0.0/8, ::1 or localhost."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _existing_folder(value: Path) -> Path:
    """A folder that is there: a typo must not silently fall back to other templates."""
    if not value.is_dir():
        raise ValueError(f"no such folder: {value}"
                         + (f" (relative to {Path.cwd()})" if not value.is_absolute() else ""))
    return value


WebAddress = Annotated[str, AfterValidator(_web_address)]
Folder = Annotated[Path, AfterValidator(_existing_folder)]
Secret = Annotated[SecretStr, BeforeValidator(_lazy_secret)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_lazy_secret)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HaloSettings(Section):
    """Where Halo is and how we sign in (OAuth2 client credentials)."""

    base_url: WebAddress
    auth_url: WebAddress | None = None  # default {base_url}/auth; the token is at {auth_url}/token
    tenant: str | None = None  # sent as ?tenant= on the token request
    client_id: str
    client_secret: Secret
    scope: str = "all"
    timeout: float = Field(default=20.0, gt=0)
    # Halo allows ~300 requests per rolling 5 minutes per tenant, shared with every
    # other integration: we keep to our own budget so that we never cause a 429.
    requests_per_window: int = Field(default=300, ge=1)
    window_seconds: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    # Which approver field takes the approver's comment is unconfirmed (shared/halo).
    note_field: str = "note"
    # All decisions of a pass in one POST (Halo takes an array), confirmed from the POST's
    # answer when it shows the result ("response"), else by re-reading the ticket.
    batch_decisions: bool = True
    # Halo work of one pass that takes longer is left for the next pass, so that one
    # slow Halo call never holds up the mail behind it (a late POST is re-read first).
    pass_deadline_seconds: float = Field(default=10.0, gt=0)
    # Decisions are posted as their tickets are read, up to batch_size in one POST, and
    # at the latest batch_seconds after the first of a batch was ready.
    batch_size: int = Field(default=50, ge=1, le=500)
    batch_seconds: float = Field(default=2.0, gt=0)
    confirm: Literal["response", "reread"] = "response"

    @property
    def api_url(self) -> str:
        return self.base_url.rstrip("/") + "/api"

    @property
    def token_url(self) -> str:
        auth = (self.auth_url or self.base_url.rstrip("/") + "/auth").rstrip("/")
        return auth + "/token"


_OAUTH_KEYS = ("tenant_id", "client_id", "client_secret", "service_account_file",
               "refresh_token", "token_url", "scope")
# auth mode -> (keys it requires, keys it also takes); oauth2-google is checked on its own.
_AUTH_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "password": ((), ("password",)),
    "oauth2": (("token_url", "client_id", "client_secret"), ("scope",)),
    "oauth2-microsoft": (("tenant_id", "client_id", "client_secret"), ("scope",)),
    "oauth2-google": ((), ("service_account_file", "refresh_token", "client_id",
                           "client_secret", "token_url")),
    "same-as-imap": ((), ()),
}


class MailSignIn(Section):
    """How [imap] and [smtp] sign in: a password, or OAuth2 (SASL XOAUTH2 / OAUTHBEARER).

    See responder/connections/oauth.py; every key a mode needs is required and keys of
    other modes are refused, each error naming its key.
    """

    auth: str = "password"
    password: OptionalSecret = None
    tenant_id: str | None = None  # oauth2-microsoft: the Entra ID tenant (id or domain)
    client_id: str | None = None
    client_secret: OptionalSecret = None
    service_account_file: Path | None = None  # oauth2-google: the service account's JSON key
    refresh_token: OptionalSecret = None  # oauth2-google: a refresh token for this mailbox
    token_url: WebAddress | None = None  # oauth2: the token endpoint; oauth2-google: token_uri
    scope: str | None = None  # default: the provider's mail scope
    sasl: Literal["auto", "xoauth2", "oauthbearer"] = "auto"  # auto: XOAUTH2 unless not offered

    @model_validator(mode="after")
    def _keys_of_auth_mode(self) -> MailSignIn:
        required, optional = _AUTH_KEYS[self.auth]
        if self.auth == "password" and isinstance(self, ImapSettings):
            required = ("password",)
        if self.auth == "oauth2-google" and self.refresh_token is not None:
            required = ("client_id", "client_secret")
        elif self.auth == "oauth2-google" and self.service_account_file is None:
            required = ("service_account_file",)
        errors = [
            _key_error(key, "required_for_auth", "required with auth = {auth} "
                       + ("(or refresh_token with client_id and client_secret)"
                          if key == "service_account_file" else ""), self.auth)
            for key in required
            if getattr(self, key) is None
        ]
        errors += [
            _key_error(key, "unused_for_auth", "not used with auth = {auth}", self.auth)
            for key in (*_OAUTH_KEYS, "password")
            if key not in required and key not in optional and getattr(self, key) is not None
        ]
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self


def _key_error(key: str, kind: str, text: str, auth: str) -> InitErrorDetails:
    error = PydanticCustomError(kind, text.strip(), {"auth": f'"{auth}"'})
    return InitErrorDetails(type=error, loc=(key,), input=None)


class ImapSettings(MailSignIn):
    host: str
    port: int | None = None  # default 993 for implicit TLS, else 143
    tls: TlsMode = "implicit"
    username: str
    auth: MailAuth = "password"
    folder: str = "INBOX"
    idle: bool = True  # wait with IMAP IDLE where the server offers it
    idle_renew_seconds: float = Field(default=24 * 60, gt=0)  # servers drop IDLE at ~29 min
    poll_seconds: float = Field(default=60.0, gt=0)  # where the server lacks IDLE
    timeout: float = Field(default=30.0, gt=0)
    verify_tls: bool = True

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)


class MaildirSettings(Section):
    """A local Maildir that the mail server delivers into (also used by the demo)."""

    path: Path
    poll_seconds: float = Field(default=2.0, gt=0)


class GraphSettings(Section):
    """An Exchange Online mailbox through Microsoft Graph, app-only (see mailboxes/graph.py).

    Sign in with ``client_secret`` or with a certificate (``certificate_path``, a PEM file
    holding the private key, and its ``certificate_thumbprint``), never both.
    """

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: OptionalSecret = None
    certificate_path: Path | None = None
    certificate_thumbprint: str | None = None
    mailbox: str = Field(min_length=3)  # the approvals mailbox's address (or object id)
    folder: str = "Inbox"
    poll_seconds: float = Field(default=10.0, gt=0)
    authority: WebAddress = "https://login.microsoftonline.com"
    graph_url: WebAddress = "https://graph.microsoft.com/v1.0"
    timeout: float = Field(default=30.0, gt=0)
    # Requests in flight on this mailbox from this process (Outlook allows 4 per app and
    # mailbox): processes sharing one mailbox split the 4 between them.
    concurrency: int = Field(default=4, ge=1, le=4)

    @model_validator(mode="after")
    def _one_credential(self) -> GraphSettings:
        certificate = (self.certificate_path, self.certificate_thumbprint)
        if self.client_secret is not None and any(v is not None for v in certificate):
            raise ValueError("graph: give client_secret or certificate_path with "
                             "certificate_thumbprint, not both")
        if self.client_secret is None and None in certificate:
            missing = "certificate_path" if self.certificate_path is None else \
                "certificate_thumbprint"
            if all(v is None for v in certificate):
                raise ValueError("graph: client_secret, or certificate_path with "
                                 "certificate_thumbprint, is required")
            raise ValueError(f"graph.{missing}: required with a certificate")
        return self


class SmtpSettings(MailSignIn):
    host: str
    port: int | None = None  # default 465 for implicit TLS, 587 for STARTTLS, else 25
    tls: TlsMode = "starttls"
    username: str | None = None  # with OAuth2: the mailbox to sign in as (required)
    auth: SmtpAuth = "password"  # "same-as-imap": the [imap] account, method and token
    from_: str = Field(alias="from")
    timeout: float = Field(default=30.0, gt=0)
    verify_tls: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def effective_port(self) -> int:
        return self.port or {"implicit": 465, "starttls": 587, "none": 25}[self.tls]


STATE_FOLDER = "halo-approval-responder"  # under $XDG_STATE_HOME (~/.local/state)
LEDGER_NAME = "ledger.sqlite3"


def default_state_path() -> Path:
    """The ledger without ``[state]``: never in the working directory, so that ``once``
    from cron in another folder finds the same one. systemd's ``StateDirectory=`` (as
    ``$STATE_DIRECTORY``), else the user's state folder (XDG Base Directory)."""
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd and Path(systemd).is_absolute():
        return Path(systemd) / LEDGER_NAME
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / STATE_FOLDER / LEDGER_NAME


class StateSettings(Section):
    path: Path = Field(default_factory=default_state_path)


class FolderSettings(Section):
    """Where each message is filed after its work is recorded (created if missing)."""

    done: str = "Approvals/Done"
    unmatched: str = "Approvals/Unmatched"
    failed: str = "Approvals/Failed"
    ignored: str = "Approvals/Ignored"
    quarantine: str = "Approvals/Quarantine"
    # Maildir: a message being worked on is renamed in here (the claim); Graph: moved into
    # the instance's own subfolder of it; IMAP marks it with a keyword in place instead.
    processing: str = "Approvals/Processing"


class ParsingSettings(Section):
    start_tag: str = Field(default="[ID:", min_length=1)
    end_tag: str = Field(default="]", min_length=1)
    # Extra decision words, off by default: e.g. languages = ["de", "fr"] turns on the
    # built-in German and French words; approve_words / reject_words add your own.
    languages: tuple[str, ...] = ()
    approve_words: tuple[str, ...] = ()
    reject_words: tuple[str, ...] = ()
    # A message (its text parts: attachments are never fetched) larger than this is not
    # read but filed as failed with the reason: bounded time and memory per message.
    max_message_bytes: int = Field(default=2_000_000, ge=10_000)
    # A message is read in a worker process; one not read within this many seconds (a
    # message shaped to be slow) is filed as failed, too complex to read, never answered.
    analysis_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Your own gateway's banner starts (regular expressions, case-insensitive, matched at
    # the start of a line or of the subject), beside the built-in ones: skipped, never read.
    banner_patterns: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _patterns_compile(self) -> ParsingSettings:
        errors = check_patterns(self.banner_patterns)
        if errors:
            raise ValueError("banner_patterns: not a regular expression: " + "; ".join(errors))
        return self


class AnswerSettings(Section):
    templates: Folder | None = None  # a folder of your own templates; missing ones fall back
    enabled: bool = True


class SecuritySettings(Section):
    policy: AuthPolicy = "require"
    trusted_authserv_id: tuple[str, ...] = ()
    max_age_days: float = Field(default=30.0, gt=0)
    answers_per_sender_per_hour: int = Field(default=10, ge=0)
    # An authenticated person over that limit still hears back: the rest of their answers
    # go out together as a digest, one per pass and at most one per this many minutes.
    digest_minutes: float = Field(default=10.0, ge=0)
    # Act only on a reply that quotes or forwards the approval email: the approver's
    # Halo token must appear in it (entries without a token are not checked).
    require_token: bool = False
    # Microsoft 365: the tenant's accepted domains, and whether mail Exchange Online
    # stamps "X-MS-Exchange-Organization-AuthAs: Internal" from them counts as
    # authenticated (docs/security.md says what this trusts).
    internal_domains: tuple[str, ...] = ()
    exchange_internal: bool = False

    @model_validator(mode="before")
    @classmethod
    def _one_or_many(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("trusted_authserv_id", "internal_domains"):
                if isinstance(data.get(key), str):
                    data = {**data, key: (data[key],)}
        return data

    @model_validator(mode="after")
    def _internal_needs_exchange(self) -> SecuritySettings:
        if self.exchange_internal and not self.internal_domains:
            raise ValueError("exchange_internal = true needs internal_domains: the tenant's "
                             "accepted domains")
        if self.exchange_internal and "exchange-online" not in {
            i.strip().lower() for i in self.trusted_authserv_id
        }:
            raise ValueError('exchange_internal = true needs trusted_authserv_id = '
                             '["exchange-online"]: the AuthAs header means something only '
                             "in an Exchange Online mailbox")
        return self


class MatchingSettings(Section):
    # Second address -> the address Halo knows the approver by. Never a wildcard.
    aliases: dict[str, str] = Field(default_factory=dict)


class ServiceSettings(Section):
    """How ``responder run`` behaves as a service."""

    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no /healthz and /metrics
    metrics_host: str = "127.0.0.1"
    # /healthz turns unhealthy once the mailbox, Halo or the outgoing mail has been failing
    # for longer than this (a refused sign-in: at once, waiting does not heal it).
    unhealthy_after_seconds: float = Field(default=300.0, ge=0)
    retry_seconds: float = Field(default=60.0, gt=0)  # pending work and the outbox, retried
    # Several instances may watch one mailbox: each claims a message before acting on it;
    # a claim not renewed for this long (its holder crashed) is taken over.
    claim_timeout_seconds: float = Field(default=600.0, gt=0)
    # `responder run` logs one progress line per this many messages of a backlog.
    progress_every: int = Field(default=100, ge=1)
    # Another Message-ID with the same content counts as a copy only when the earlier
    # message came this recently and the new one would decide the same approver entry;
    # otherwise (a second approval round answered the same way) it is acted on.
    copy_window_minutes: float = Field(default=1440.0, ge=0)


class WebSettings(Section):
    """The review console (responder/console): off unless ``port`` is set.

    Serve it only behind a TLS reverse proxy (docs/operations.md); the password is kept as
    an argon2id hash, made with ``responder web-password``.
    """

    port: int = Field(default=0, ge=0, le=65535)  # 0: no console
    host: str = "127.0.0.1"
    password_hash: OptionalSecret = None  # a reference (env:, file:) is checked when read
    session_minutes: int = Field(default=480, ge=1)

    @model_validator(mode="after")
    def _password_when_on(self) -> WebSettings:
        problem = None if isinstance(self.password_hash, SecretRef) else self.hash_problem()
        if problem:
            error = PydanticCustomError("web_password", problem)
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [InitErrorDetails(type=error, loc=("password_hash",), input=None)],
            )
        return self

    def hash_problem(self) -> str | None:
        """What is wrong with password_hash, if anything (reads a reference)."""
        value = self.password_hash.get_secret_value() if self.password_hash is not None else ""
        if not value:
            return ("required when web.port is set (make one with: responder web-password)"
                    if self.port else None)
        if not value.startswith("$argon2id$"):
            return "expected an argon2id hash (make one with: responder web-password)"
        return None


class Settings(Section):
    halo: HaloSettings
    imap: ImapSettings | None = None
    maildir: MaildirSettings | None = None
    graph: GraphSettings | None = None
    smtp: SmtpSettings | None = None  # optional with [graph]: answers then go through Graph
    state: StateSettings = Field(default_factory=StateSettings)  # its path: env-dependent
    folders: FolderSettings = FolderSettings()
    parsing: ParsingSettings = ParsingSettings()
    answers: AnswerSettings = AnswerSettings()
    security: SecuritySettings = SecuritySettings()
    matching: MatchingSettings = MatchingSettings()
    service: ServiceSettings = ServiceSettings()
    web: WebSettings = WebSettings()

    @model_validator(mode="after")
    def _one_mailbox(self) -> Settings:
        if sum(s is not None for s in (self.imap, self.maildir, self.graph)) != 1:
            raise ValueError(
                "configure exactly one mailbox: an [imap], a [maildir] or a [graph] section"
            )
        if self.smtp is None:
            if self.graph is None:
                raise ValueError("smtp: required key is missing (answers go out over SMTP "
                                 "unless the mailbox is [graph])")
            return self
        if self.smtp.auth == "same-as-imap" and self.imap is None:
            raise ValueError('smtp.auth: "same-as-imap" needs an [imap] section')
        if self.smtp.auth.startswith("oauth2") and not self.smtp.username:
            raise ValueError(f'smtp.username: required with auth = "{self.smtp.auth}"')
        return self

    @property
    def answer_from(self) -> str:
        """The address answers come from: [smtp] from, else the Graph mailbox itself."""
        if self.smtp is not None:
            return self.smtp.from_
        assert self.graph is not None  # validated: no [smtp] only with [graph]
        return self.graph.mailbox

    def smtp_sign_in(self) -> SmtpSettings:
        """[smtp] with "same-as-imap" resolved: the [imap] method, keys and account."""
        assert self.smtp is not None
        if self.smtp.auth != "same-as-imap" or self.imap is None:
            return self.smtp
        keys = {key: getattr(self.imap, key) for key in (*_OAUTH_KEYS, "password", "sasl")}
        username = self.smtp.username or self.imap.username
        return self.smtp.model_copy(update={**keys, "auth": self.imap.auth, "username": username})

    def secrets(self) -> list[str]:
        """Every secret value that can be read here, so that logging can redact them."""
        values: list[SecretStr | None] = [self.halo.client_secret]
        for section in (self.imap, self.smtp):
            if section is not None:
                values += [section.password, section.client_secret, section.refresh_token]
        if self.graph is not None:
            values.append(self.graph.client_secret)
        found = []
        for value in values:
            if value is None or (isinstance(value, SecretRef) and value.problem()):
                continue
            if value.get_secret_value():
                found.append(value.get_secret_value())
        return found

    def secret_problems(self, *parts: str) -> list[str]:
        """Why the secrets of these parts (all by default) cannot be read here, one line
        each naming its key; the parts are "halo", "mailbox", "smtp" (the answers' way
        out, whichever it is) and "web"."""
        sections = {"halo": ["halo"], "mailbox": ["imap", "graph"],
                    "smtp": ["smtp"] if self.smtp is not None else ["graph"],
                    "web": ["web"] if self.web.port else []}  # no console: no hash needed
        if self.smtp is not None and self.smtp.auth == "same-as-imap":
            sections["smtp"].append("imap")
        wanted = {name for part in (parts or tuple(sections)) for name in sections[part]}
        problems = [ref.problem() for name, _, ref in self._secret_refs() if name in wanted]
        found = [p for p in problems if p]
        hashed = self.web.password_hash
        if "web" in wanted and isinstance(hashed, SecretRef) and not hashed.problem() and (
                problem := self.web.hash_problem()):  # inline hashes are checked at load
            found.append(f"{hashed.key}: {problem}")
        return found

    def require_secrets(self, *parts: str) -> None:
        """Read the secrets these parts (all by default) need: a ConfigError if one cannot."""
        problems = self.secret_problems(*parts)
        if problems:
            raise ConfigError("\n".join(problems))

    def _secret_refs(self) -> list[tuple[str, str, SecretRef]]:
        """(section, key, reference) for each secret written as env: or file:."""
        found = []
        for name in type(self).model_fields:
            section = getattr(self, name)
            if isinstance(section, BaseModel):
                found += [(name, key, value) for key, value in section.__dict__.items()
                          if isinstance(value, SecretRef)]
        return found

    @model_validator(mode="after")
    def _label_secrets(self) -> Settings:
        self.label_secrets("")
        return self

    def label_secrets(self, prefix: str) -> None:
        """Give each secret reference its key, for the error that says it is missing."""
        for section, key, ref in self._secret_refs():
            ref.key = f"{prefix}{section}.{key}"


_FRIENDLY = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
}


def _describe(error: ErrorDetails) -> str:
    loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    msg = _FRIENDLY.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def parse_settings(data: dict[str, Any]) -> Settings:
    """Validate a config mapping; raise ConfigError naming every bad key."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_input=False, include_url=False)]
        raise ConfigError("\n".join(lines)) from None


def parse_instances(data: dict[str, Any]) -> dict[str, Settings]:
    """One Settings per ``[instances.NAME]`` table, or a single one named "default".

    Each instance's sections override the top-level ones key by key, so that several
    mailboxes (and, for managed-service providers, several Halo tenants) share what
    they have in common. Each instance keeps its own ledger.
    """
    tables = data.get("instances")
    if tables is None:
        return {"default": parse_settings(data)}
    if not isinstance(tables, dict) or not tables or not all(
        isinstance(t, dict) for t in tables.values()
    ):
        raise ConfigError("instances: expected one or more [instances.NAME] tables")
    base = {key: value for key, value in data.items() if key != "instances"}
    found: dict[str, Settings] = {}
    errors: list[str] = []
    for name, overrides in tables.items():
        merged = _merge(base, overrides)
        if "path" not in overrides.get("state", {}):  # its own ledger beside the shared one
            shared = Path(base.get("state", {}).get("path") or default_state_path())
            path = shared.with_name(f"{shared.stem}-{name}{shared.suffix}")
            merged["state"] = {**merged.get("state", {}), "path": str(path)}
        try:
            found[name] = parse_settings(merged)
            found[name].label_secrets(f"instances.{name}.")
        except ConfigError as exc:
            errors += [f"instances.{name}.{line}" for line in str(exc).splitlines()]
    paths = [s.state.path.resolve() for s in found.values()]
    if len(set(paths)) != len(paths):
        errors.append("instances: each instance needs its own state.path")
    if errors:
        raise ConfigError("\n".join(errors))
    return found


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_instances(path: Path) -> dict[str, Settings]:
    """Read and validate a config file: every instance it defines, by name."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_instances(data)


def load_settings(path: Path) -> Settings:
    """A config file with exactly one instance (the common case)."""
    instances = load_instances(path)
    if len(instances) != 1:
        raise ConfigError(f"{path} defines {len(instances)} instances; name one")
    return next(iter(instances.values()))


def secret_files(config: Path, instances: Mapping[str, Settings]) -> list[Path]:
    """Every file a secret is taken from: each ``file:`` value of the config, the Graph
    certificate (it holds the private key) and Google service-account key files."""
    found: dict[Path, None] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        found.update((Path(v[5:]), None) for v in _strings(tomllib.loads(config.read_text(
            encoding="utf-8"))) if v.startswith("file:"))
    for settings in instances.values():
        paths = [settings.graph.certificate_path if settings.graph else None]
        paths += [s.service_account_file for s in (settings.imap, settings.smtp) if s]
        found.update((p, None) for p in paths if p is not None)
    return list(found)


def exposed_secrets(config: Path, instances: Mapping[str, Settings]) -> list[Path]:
    """The config (when it holds secrets) and the secret files other users may read."""
    holds = any(settings.secrets() for settings in instances.values())
    files = ([config] if holds else []) + secret_files(config, instances)
    return [path for path in files if readable_by_others(path)]


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed TOML document, however deep."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def readable_by_others(path: Path) -> bool:
    """A file that holds secrets should not be world- or group-readable."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))
