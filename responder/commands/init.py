"""``responder init``: write a working config by asking, checking each answer as it is given.

Every question has a flag (``add_arguments`` lists them), so provisioning scripts run it
unattended; without a terminal (or with ``--yes``) a missing answer stops it with exit
2 naming the flag. Each part is tried before the next is asked: Halo signs in, the
mailbox opens its folder, the outgoing server answers. The trust profile is discovered
from the mailbox itself (``responder.trust.discovery``: headers only, nothing changed). The
config is written 0600, secrets as ``file:`` (written 0600 too) or ``env:`` references;
no secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from responder.config import (
    ConfigError,
    Settings,
    parse_settings,
    readable_by_others,
    resolve_secret,
)
from responder.config import _web_address as web_address
from responder.logs import redact, setup_logging
from responder.terminal import printable_lines

if TYPE_CHECKING:
    from responder.trust.discovery import Discovery

USAGE, FAILED = 2, 1
KINDS = ("imap", "graph", "google", "maildir")
_HINTS = {  # the OAuth error code Halo answers -> what to fix
    "invalid_client": "the client id or secret is wrong, or the application is disabled",
    "invalid_request": "the token request was refused: check the tenant (--halo-tenant: "
                       "hosted Halo needs your tenant name) and --halo-auth-url",
    "invalid_scope": "the scope is not granted to this application (--scope)",
    "unauthorized_client": "this application may not use client credentials: choose "
                           "'Client ID and Secret (Services)' in Halo",
}


class InitStop(Exception):
    """init cannot go on: the message says why and which flag or answer to fix."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Secret:
    """A secret's value (used only to sign in) and how the config refers to it."""

    value: str
    reference: str  # "file:/path" or "env:NAME"
    write_to: Path | None = None  # a file init writes (0600) with the value


@dataclass
class Asker:
    """Answers from flags first, then from the terminal; never a prompt without one."""

    args: argparse.Namespace
    interactive: bool
    out: Callable[[str], None] = lambda text: print(redact(printable_lines(text)))
    known: list[str] = field(default_factory=list)  # every secret seen: redacted everywhere
    secrets: dict[str, Secret] = field(default_factory=dict)  # typed: to be stored
    store: str | None = None  # "file" or "env", for secrets typed at the prompt
    typed: dict[str, str] = field(default_factory=dict)  # flag -> last answer: the default

    def ask(self, flag: str, question: str, default: str | None = None,
            check: Callable[[str], str | None] | None = None, *, again: bool = False) -> str:
        """The answer to ``question``: its flag's value, else typed (``again``: re-ask)."""
        given = getattr(self.args, _dest(flag))
        given = None if given is None else str(given)
        if given is not None and not again:
            problem = check(given) if check else None
            if problem is None:
                return given
            if not self.interactive:
                raise InitStop(f"{flag}: {problem}", USAGE)
            self.out(f"  {flag}: {problem}")
        default = self.typed.get(flag, given if given is not None else default)
        if not self.interactive:
            if default is not None:
                return default
            raise InitStop(f"missing {flag} (no terminal to ask on)", USAGE)
        while True:
            shown = f" [{default}]" if default else ""
            answer = input(f"{question}{shown}: ").strip() or (default or "")
            problem = check(answer) if check else (None if answer else "an answer is needed")
            if problem is None:
                self.typed[flag] = answer
                return answer
            self.out(f"  {problem}")

    def secret(self, flag: str, question: str, name: str, env: str, folder: Path,
               *, again: bool = False) -> Secret:
        """A secret from --X-file or --X-env, else typed (not echoed) and stored as chosen;
        ``again`` (the first one was refused): typed anew. From now on no log line or
        message shows it."""
        found = self._secret(flag, question, name, env, folder, again)
        self.known.append(found.value)
        setup_logging(self.args.verbosity or -1, self.args.log_format, self.known)
        return found

    def _secret(self, flag: str, question: str, name: str, env: str, folder: Path,
                again: bool) -> Secret:
        path, variable = getattr(self.args, _dest(flag + "-file")), getattr(
            self.args, _dest(flag + "-env"))
        if variable and not again:
            if not os.environ.get(variable):
                raise InitStop(f"{flag}-env: environment variable {variable} is not set", USAGE)
            return Secret(os.environ[variable], f"env:{variable}")
        if path and Path(path).is_file() and not again:
            try:
                value = resolve_secret(f"file:{path}")
            except ValueError as exc:
                raise InitStop(f"{flag}-file: {exc}", USAGE) from None
            if not value:
                raise InitStop(f"{flag}-file: {path} is empty", USAGE)
            if readable_by_others(Path(path)):
                self.out(f"  warning: {path} is readable by other users: chmod 600 it")
            return Secret(value, f"file:{Path(path).resolve()}")
        if not self.interactive:
            if path:
                raise InitStop(f"{flag}-file: no such file {path}", USAGE)
            raise InitStop(f"missing {flag}-file or {flag}-env (no terminal to ask on)", USAGE)
        value = ""
        while not value:
            value = getpass.getpass(f"{question} (not shown): ").strip()
        if path:  # the file named is missing, or held a refused secret: write it there
            return self._keep(name, Secret(value, f"file:{Path(path).resolve()}", Path(path)))
        store = self.store or self.ask("--secret-store", "Keep secrets in files or in environment "
                                       "variables? (file/env)", "file", _one_of("file", "env"))
        self.store = store
        if store == "env":
            return self._keep(name, Secret(value, f"env:{env}"))
        target = (folder / name).resolve()
        return self._keep(name, Secret(value, f"file:{target}", target))

    def _keep(self, name: str, secret: Secret) -> Secret:
        self.secrets[name] = secret  # a secret typed again replaces the refused one
        return secret

    def confirm(self, question: str, yes: bool = True) -> bool:
        """A yes or no on the terminal; blank is ``yes`` (unattended: yes)."""
        if not self.interactive:
            return True
        answer = input(f"{question} {'[Y/n]' if yes else '[y/N]'}: ").strip().lower()
        return answer in ("y", "yes") or (yes and not answer)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda v: None if v in choices else f"expected one of: {', '.join(choices)}"


def _address(value: str) -> str | None:
    return None if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value) else "expected an email address"


def _port(value: str) -> str | None:
    return None if value.isdigit() and 0 < int(value) < 65536 else "expected a port number"


def _url(value: str) -> str | None:
    """The config's own rule for a web address (https, or http to this machine only)."""
    try:
        web_address(value)
    except ValueError as exc:
        return str(exc)
    return None


# -- the parts, each asked and then tried ------------------------------------------------


def ask_halo(a: Asker, folder: Path, again: bool = False) -> dict[str, Any]:
    url = a.ask("--halo-url", "Halo address", None, _url, again=again)
    found_auth, found_tenant = asyncio.run(authinfo(url))
    if found_auth or found_tenant:
        a.out(f"  Halo says (GET /api/authinfo): authorisation server {found_auth or '-'}, "
              f"tenant {found_tenant or '-'}")
    auth = a.ask("--halo-auth-url", "Halo authorisation server (blank: the address + /auth)",
                 found_auth, lambda v: None if not v else _url(v), again=again)
    if auth.rstrip("/") == url.rstrip("/") + "/auth":
        auth = ""  # the default: not written
    tenant = a.ask("--halo-tenant", "Halo tenant (blank for none)", found_tenant,
                   lambda v: None if _TENANT.fullmatch(v) else "expected a tenant name",
                   again=again)
    client = a.ask("--client-id", "API application client id", None, again=again)
    secret = a.secret("--client-secret", "API application client secret",
                      "halo_client_secret", "HALO_CLIENT_SECRET", folder, again=again)
    scope = a.ask("--scope", "Scope", "all", again=again)
    section: dict[str, Any] = {"base_url": url, "client_id": client, "client_secret": secret,
                               "scope": scope}
    section |= {"auth_url": auth} if auth else {}
    section |= {"tenant": tenant} if tenant else {}
    return section


_TENANT = re.compile(r"[A-Za-z0-9._-]{0,100}")


async def authinfo(url: str) -> tuple[str, str]:
    """Halo's own word on its authorisation server and tenant; ("", "") if it has none.

    An unauthenticated GET; the answer is hostile input like any other, so only a
    plausible https address and tenant name are taken from it.
    """
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.get(url.rstrip("/") + "/api/authinfo")
        data = response.json() if response.status_code == 200 and len(
            response.content) < 65536 else {}
    except (httpx.HTTPError, ValueError):
        return "", ""
    data = data if isinstance(data, dict) else {}
    auth, tenant = str(data.get("auth_url") or ""), str(data.get("tenant_id") or "")
    auth = auth if len(auth) < 300 and _url(auth) is None and not re.search(r"\s", auth) \
        else ""
    return auth, tenant if _TENANT.fullmatch(tenant) else ""


async def try_halo(section: dict[str, Any]) -> str:
    """Sign in once: a token, and a scope that can record decisions."""
    from responder.config import HaloSettings
    from responder.halo.client import HaloAuthError, HaloClient, HaloError, HaloUnavailable

    secret: Secret = section["client_secret"]
    settings = HaloSettings.model_validate({**section, "client_secret": secret.value,
                                            "max_retries": 0})
    try:
        async with HaloClient(settings) as halo:
            said = await halo.check()
    except HaloError as exc:
        text = str(exc).replace(secret.value, "***")
        hint = _HINTS.get(exc.code if isinstance(exc, HaloAuthError) else "", "")
        if exc.status == 404:
            hint = f"no token endpoint at {settings.token_url}: check the address"
        elif isinstance(exc, HaloUnavailable) and exc.status is None:
            hint = f"cannot reach {settings.token_url}: check the address"
        raise InitStop(f"Halo: {hint} ({text})" if hint else f"Halo: {text}") from None
    granted = set(halo.granted_scope.split())
    if not granted & {"all", "edit:tickets"}:
        raise InitStop(f"Halo: the token's scope ({' '.join(sorted(granted))}) cannot record "
                       "decisions: give the application edit:tickets (or all) and --scope")
    return said


def ask_mailbox(a: Asker, folder: Path, again: bool = False) -> tuple[str, dict[str, Any]]:
    kind = a.ask("--mailbox", "Mailbox kind (imap, graph for Microsoft 365, google, maildir)",
                 "imap", _one_of(*KINDS), again=again)
    if kind == "maildir":
        path = a.ask("--maildir", "Maildir path", None,
                     lambda v: None if (Path(v) / "cur").is_dir() else f"no Maildir at {v}",
                     again=again)
        return kind, {"path": str(Path(path).resolve())}
    if kind == "graph":
        section = {
            "tenant_id": a.ask("--tenant-id", "Entra ID tenant (id or domain)", again=again),
            "client_id": a.ask("--graph-client-id", "Entra app client id", again=again),
            "client_secret": a.secret("--graph-client-secret", "Entra app client secret",
                                      "graph_client_secret", "GRAPH_CLIENT_SECRET", folder,
                                      again=again),
            "mailbox": a.ask("--graph-mailbox", "The mailbox address", None, _address,
                             again=again),
            "folder": a.ask("--folder", "Watched folder", "Inbox", again=again),
        }
        for flag, key in (("--graph-authority", "authority"), ("--graph-url", "graph_url")):
            if getattr(a.args, _dest(flag)):  # national clouds (e.g. graph.microsoft.us)
                section[key] = getattr(a.args, _dest(flag))
        return kind, section
    google = kind == "google"
    host = a.ask("--imap-host", "IMAP server", "imap.gmail.com" if google else None, again=again)
    tls = a.ask("--imap-tls", "IMAP TLS (implicit, starttls, none)", "implicit",
                _one_of("implicit", "starttls", "none"), again=again)
    section = {
        "host": host,
        "port": int(a.ask("--imap-port", "IMAP port", "993" if tls == "implicit" else "143",
                          _port, again=again)),
        "tls": tls,
        "username": a.ask("--imap-user", "Mailbox user (Google: the address)", again=again),
    }
    if google:
        section |= {"auth": "oauth2-google", "service_account_file": a.ask(
            "--google-service-account-file", "Service account key (JSON file)", None,
            lambda v: None if Path(v).is_file() else f"no file {v}", again=again)}
    else:
        section["password"] = a.secret("--imap-password", "Mailbox password", "imap_password",
                                       "IMAP_PASSWORD", folder, again=again)
    section["folder"] = a.ask("--folder", "Watched folder", "INBOX", again=again)
    if getattr(a.args, "no_verify_tls", False):
        section["verify_tls"] = False
    return kind, section


def ask_sending(a: Asker, kind: str, folder: Path, mailbox: dict[str, Any],
                again: bool = False) -> dict[str, Any] | None:
    """The [smtp] section, or None: answers go out through Graph."""
    def ask(*words: Any, **options: Any) -> str:
        return a.ask(*words, again=again, **options)

    how = ask("--send", "Answers leave by (smtp, graph)", "graph" if kind == "graph" else "smtp",
              _one_of("smtp", "graph") if kind == "graph" else _one_of("smtp"))
    if how == "graph":
        return None
    google = kind == "google"
    user = str(mailbox.get("username") or mailbox.get("mailbox") or "")
    host = ask("--smtp-host", "SMTP server", "smtp.gmail.com" if google else mailbox.get("host"))
    tls = ask("--smtp-tls", "SMTP TLS (implicit, starttls, none)",
              "implicit" if google else "starttls", _one_of("implicit", "starttls", "none"))
    section: dict[str, Any] = {
        "host": host,
        "port": int(ask("--smtp-port", "SMTP port",
                        {"implicit": "465", "starttls": "587", "none": "25"}[tls], _port)),
        "tls": tls,
        "from": ask("--from", "Answers come from (address)", user if "@" in user else None,
                    _address),
    }
    auths = ("same-as-imap", "password", "none") if kind in ("imap", "google") else (
        "none", "password")  # beside a Maildir: most often the local relay
    auth = ask("--smtp-auth", f"SMTP sign-in ({', '.join(auths)})", auths[0], _one_of(*auths))
    if auth == "same-as-imap":
        section["auth"] = "same-as-imap"
    elif auth == "password":
        section["username"] = ask("--smtp-user", "SMTP user", user or None)
        section["password"] = a.secret("--smtp-password", "SMTP password", "smtp_password",
                                       "SMTP_PASSWORD", folder, again=again)
    if getattr(a.args, "no_verify_tls", False) and tls != "none":
        section["verify_tls"] = False
    return section


async def try_mailbox(settings: Settings) -> list[str]:
    """Sign in to the mailbox read-only and open its folder, before SMTP is asked about."""
    from responder.service import check_mailbox, read_only_mailbox

    line = await check_mailbox(read_only_mailbox(settings))
    if not line.ok:
        raise InitStop(f"mailbox: {line.detail}")
    return [line.detail]


async def try_sending(settings: Settings) -> list[str]:
    """Greet the outgoing server (or Graph) the answers leave through."""
    from responder.senders.smtp import SmtpError
    from responder.service import make_mail

    _, sender = make_mail(settings)
    try:
        return [await sender.check()]
    except SmtpError as exc:
        raise InitStop(f"smtp: {exc}") from None


def choose_trust(a: Asker, settings: Settings) -> dict[str, Any]:
    """The [security] block: discovered from the newest messages, or named by --trust."""
    from responder.service import peek_headers, watched
    from responder.trust.discovery import discover, report_lines

    trust = a.args.trust or "auto"
    if trust == "auto":
        found = discover(asyncio.run(peek_headers(settings, a.args.newest)), settings.security)
        for line in report_lines(found, watched(settings)):
            if not line.startswith("the current config"):  # there is none yet
                a.out(line)
        if found.none_trusted:
            a.out("WARNING: with this block every reply would be quarantined; answer n "
                  "and name the profile only once the reason above is fixed")
        if found.proposal.trusted_authserv_id and not found.mixed and (
                not found.none_trusted or a.interactive) and a.confirm(
                "Trust this anyway?" if found.none_trusted else "Trust this?",
                yes=not found.none_trusted):
            return found.block()
        if not a.interactive:
            raise InitStop(f"--trust auto: {_refused(found)}; name the profile with --trust "
                           "(exchange-online, gmail, authserv-id:NAME or off)", USAGE)
        trust = a.ask("--trust", "Trust profile (exchange-online, gmail, authserv-id:NAME, off)",
                      _as_choice(found.profile) if found.proposal.trusted_authserv_id
                      and not found.none_trusted else None,
                      lambda v: "name one" if v == "auto" else _trust_choice(v), again=True)
    if trust == "off":
        return {"policy": "off"}
    name = {"exchange-online": "exchange-online", "gmail": "mx.google.com"}.get(
        trust, trust.removeprefix("authserv-id:"))
    return {"trusted_authserv_id": [name]}


def _refused(found: Discovery) -> str:
    """Why ``--trust auto`` takes no profile, unattended (header text shown escaped)."""
    from responder.terminal import printable

    if found.mixed:
        return "the messages are stamped by more than one server"
    if found.none_trusted:
        n = len(found.samples)
        return (f"not one of the {n} newest message{'' if n == 1 else 's'} would be trusted "
                f"under the profile they fit, every reply would be quarantined "
                f"({printable(found.main_refusal()[:200])})")
    return "no message fits a profile"


def _as_choice(profile: str) -> str:
    """A discovered profile as --trust names it."""
    return {"exchange-online": "exchange-online", "mx.google.com": "gmail"}.get(
        profile, f"authserv-id:{profile}")


def _trust_choice(value: str) -> str | None:
    if value in ("auto", "exchange-online", "gmail", "off") or re.fullmatch(
            r"authserv-id:[A-Za-z0-9.-]+", value):
        return None
    return "expected auto, exchange-online, gmail, authserv-id:NAME or off"


# -- the whole conversation ----------------------------------------------------------------


def run_init(args: argparse.Namespace) -> int:
    """Ask, try, discover, write; then print Halo's template text and the next commands."""
    interactive = sys.stdin.isatty() and not args.yes
    target = Path(args.config_out).resolve()
    if target.exists() and not args.force and not (
            interactive and Asker(args, True).confirm(f"{target} exists: replace it?")):
        raise InitStop(f"--config-out: {target} exists (--force replaces it)", USAGE)
    folder = Path(args.secrets_dir).resolve() if args.secrets_dir else target.parent
    a = Asker(args, interactive)
    a.out("Halo (the API application: Configuration > Integrations > Halo API)")
    halo = _until_it_works(a, lambda again: {"halo": ask_halo(a, folder, again)},
                           lambda data: [asyncio.run(try_halo(data["halo"]))])
    a.out("The mailbox the approvers reply to")

    kinds: list[str] = []

    def mailbox(again: bool) -> dict[str, Any]:
        kind, section = ask_mailbox(a, folder, again)
        kinds[:] = [kind]
        data = {**halo, ("imap" if kind == "google" else kind): section}
        return data | ({"state": {"path": str(Path(args.state_path).resolve())}}
                       if args.state_path else {})

    found = _until_it_works(a, mailbox,
                            lambda d: asyncio.run(try_mailbox(_settings(d, sending=False))))
    a.out("How the answers leave")

    def sending(again: bool) -> dict[str, Any]:
        key = "imap" if kinds[0] == "google" else kinds[0]
        smtp = ask_sending(a, kinds[0], folder, found[key], again)
        return found | ({"smtp": smtp} if smtp is not None else {})

    data = _until_it_works(a, sending, lambda d: asyncio.run(try_sending(_settings(d))))
    a.out("Trust: which server's Authentication-Results to believe")
    data["security"] = choose_trust(a, _settings(data))
    settings = _settings(data)  # the whole config validates before anything is written
    written = write_config(target, data, list(a.secrets.values()))
    for line in closing_lines(settings, target, written):
        a.out(line)
    return 0


def _until_it_works(a: Asker, ask: Callable[[bool], dict[str, Any]],
                    attempt: Callable[[dict[str, Any]], list[str]]) -> dict[str, Any]:
    """Ask, then try; on a terminal a refusal is shown and the answers asked again."""
    again = False
    while True:
        data = ask(again)
        try:
            for line in attempt(data):
                a.out(f"  ok: {line}")
            return data
        except InitStop as exc:
            if not a.interactive:
                raise
            a.out(f"  FAILED: {exc}")
            again = True


# A config needs a way out for its answers; while only the mailbox is tried, this one
# stands in (never contacted: try_mailbox opens the mailbox alone).
_NOT_YET_ASKED = {"host": "localhost", "from": "answers@example.invalid"}


def _settings(data: dict[str, Any], sending: bool = True) -> Settings:
    if not sending and "smtp" not in data and "graph" not in data:
        data = data | {"smtp": _NOT_YET_ASKED}
    try:
        return parse_settings(_render(data, lambda s: s.value))
    except ConfigError as exc:
        raise InitStop(f"the answers do not make a valid config:\n{exc}", USAGE) from None


def _render(data: Any, secret: Callable[[Secret], str]) -> Any:
    """The answers with each secret as ``secret`` shows it (its value, or its reference)."""
    if isinstance(data, dict):
        return {k: _render(v, secret) for k, v in data.items()}
    return secret(data) if isinstance(data, Secret) else data


def toml_text(data: dict[str, Any]) -> str:
    """The config as TOML: tables of strings, numbers, booleans and lists of strings."""
    import json

    lines = ["# written by responder init; every key: config.example.toml"]
    for table, values in data.items():
        lines += ["", f"[{table}]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (0600 even if the file was there; never
    through a symbolic link someone left in its place)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def write_config(target: Path, data: dict[str, Any], typed: list[Secret]) -> Path | None:
    """The secret files, an environment file for typed ``env:`` secrets, then the config."""
    env_lines = []
    for secret in typed:
        if secret.write_to is not None:
            _write_private(secret.write_to, secret.value + "\n")
        elif secret.reference.startswith("env:"):
            env_lines.append(f"{secret.reference[4:]}={_env_quoted(secret.value)}")
    env_file = None
    if env_lines:
        env_file = target.with_name("responder.env")
        _write_private(env_file, "\n".join(env_lines) + "\n")
    _write_private(target, toml_text(_render(data, lambda s: s.reference)))
    return env_file


def _env_quoted(value: str) -> str:
    """A value systemd's EnvironmentFile= and a POSIX shell both read back unchanged."""
    if re.fullmatch(r"[A-Za-z0-9_./:@+=-]+", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def closing_lines(settings: Settings, target: Path, env_file: Path | None) -> list[str]:
    """What to paste into Halo's approval template, and the commands to run next."""
    tag = f"{settings.parsing.start_tag}$FAULTID{settings.parsing.end_tag}"
    watched = (settings.graph.mailbox if settings.graph is not None else
               settings.imap.username if settings.imap is not None and "@" in
               settings.imap.username else settings.answer_from)
    lines = [f"wrote {target} (mode 600)", "",
             "In Halo: Configuration > Email > Email Templates, the approval template:",
             f"  Reply-To: {watched}",
             f"  Subject:  Approval required {tag}   (keep the tag {tag})",
             "  Body:",
             f'    $APPROVERNAME, ticket {tag} "$SYMPTOM" needs your approval.',
             "",
             "    Reply to this email with APPROVE or REJECT as the first word of your reply.",
             "    Anything you write after the word, in the same paragraph, is kept as your",
             "    note:  REJECT - please get a second quote first.",
             "  (and make sure Halo's own mailbox polling does not read this mailbox)", "",
             "Next:"]
    if env_file is not None:
        lines += [f"  set -a; . {env_file}; set +a     # systemd: EnvironmentFile={env_file}"]
    lines += [f"  responder check --config {target}",
              f"  responder check --config {target} --online --ticket N   # N: a ticket "
              "awaiting approval",
              f"  responder run --config {target}"]
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every question's flag, so that ``init`` runs unattended."""
    g = p.add_argument_group("the run")
    g.add_argument("--config-out", default="config.toml", metavar="FILE",
                   help="where to write the config (config.toml)")
    g.add_argument("--force", action="store_true", help="replace --config-out if it exists")
    g.add_argument("--yes", "--non-interactive", dest="yes", action="store_true",
                   help="never ask: a missing answer exits 2 naming its flag")
    g.add_argument("--secret-store", choices=("file", "env"),
                   help="typed secrets go into files (0600) or an environment file")
    g.add_argument("--secrets-dir", metavar="DIR", help="where secret files go (the config's)")
    g.add_argument("--state-path", metavar="FILE", help="the ledger ([state] path)")
    g = p.add_argument_group("Halo")
    _flags(g, (
        ("--halo-url", "URL", "Halo's address, https://..."),
        ("--halo-auth-url", "URL", "the authorisation server (default: what Halo says)"),
        ("--halo-tenant", "NAME", "the tenant (default: what Halo says; '' for none)"),
        ("--client-id", "ID", "the API application's client id"),
        ("--scope", "SCOPE", "the token scope (all)")))
    _secret_flags(g, "--client-secret", "the API application's secret")
    g = p.add_argument_group("the mailbox")
    g.add_argument("--mailbox", choices=KINDS, help="the mailbox kind")
    _flags(g, (
        ("--imap-host", "HOST", "IMAP server (google: imap.gmail.com)"),
        ("--imap-tls", "MODE", "implicit, starttls or none"), ("--imap-port", "PORT", "IMAP port"),
        ("--imap-user", "USER", "mailbox user (google: the address)"),
        ("--folder", "FOLDER", "the watched folder (INBOX; graph: Inbox)"),
        ("--maildir", "PATH", "Maildir path"),
        ("--google-service-account-file", "FILE", "google: the service account key (JSON)"),
        ("--tenant-id", "TENANT", "graph: the Entra ID tenant (id or domain)"),
        ("--graph-client-id", "ID", "graph: the app's client id"),
        ("--graph-mailbox", "ADDRESS", "graph: the mailbox address"),
        ("--graph-authority", "URL", "graph: the sign-in authority, for national clouds"),
        ("--graph-url", "URL", "graph: the Graph address, for national clouds")))
    _secret_flags(g, "--imap-password", "the mailbox password")
    _secret_flags(g, "--graph-client-secret", "graph: the app's secret")
    g.add_argument("--no-verify-tls", action="store_true",
                   help="accept a self-signed certificate (test servers only)")
    g = p.add_argument_group("answers")
    _flags(g, (
        ("--send", "HOW", "smtp, or graph with a graph mailbox"),
        ("--smtp-host", "HOST", "SMTP server (default: the IMAP server)"),
        ("--smtp-tls", "MODE", "implicit, starttls or none"), ("--smtp-port", "PORT", "SMTP port"),
        ("--from", "ADDRESS", "the answers' From address"),
        ("--smtp-auth", "HOW", "same-as-imap, password or none"),
        ("--smtp-user", "USER", "SMTP user")))
    _secret_flags(g, "--smtp-password", "the SMTP password")
    g = p.add_argument_group("trust")
    g.add_argument("--trust", type=_checked(_trust_choice), metavar="PROFILE",
                   help="auto (discover from the mailbox), exchange-online, gmail, "
                        "authserv-id:NAME or off")
    g.add_argument("--newest", type=_checked(_count), default=20, metavar="N",
                   help="discovery reads the newest N messages' headers (20)")


def _flags(g: Any, flags: tuple[tuple[str, str, str], ...]) -> None:
    for flag, metavar, text in flags:
        g.add_argument(flag, metavar=metavar, help=text)


def _secret_flags(g: Any, flag: str, text: str) -> None:
    g.add_argument(f"{flag}-file", metavar="FILE",
                   help=f"{text}: read from FILE (written there if typed at the prompt)")
    g.add_argument(f"{flag}-env", metavar="NAME", help=f"{text}: from environment variable NAME")


def _count(value: str) -> str | None:
    return None if value.isdigit() and 1 <= int(value) <= 500 else "expected 1 to 500"


def _checked(check: Callable[[str], str | None]) -> Callable[[str], Any]:
    """An argparse type from a check; a number when the value is all digits."""
    def parse(value: str) -> Any:
        problem = check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return int(value) if value.isdigit() else value
    return parse
