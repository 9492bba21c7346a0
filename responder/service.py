"""Wiring: build the parts from the settings and run a command with them.

``check``, ``once`` and ``serve`` are what the CLI commands of the same names call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from responder import __version__
from responder.analysis import shared as shared_analyser
from responder.config import ConfigError, ServiceSettings, Settings, load_instances
from responder.connections.graph import GraphClient
from responder.connections.oauth import TokenSource, token_source
from responder.halo.client import HaloClient, HaloError
from responder.halo.tickets import Ticket
from responder.ledger import Ledger, LedgerError, schema_version
from responder.logs import also_redact, warn_exposed_secrets
from responder.mailboxes import Mailbox, MailboxAuthError, MailboxError
from responder.mailboxes.graph import GraphMailbox
from responder.mailboxes.imap import ImapMailbox
from responder.mailboxes.maildir import MaildirMailbox
from responder.metrics import Metrics, serve_metrics
from responder.senders import Sender
from responder.senders.graph import GraphSender
from responder.senders.smtp import SmtpError, SmtpSender
from responder.trust.discovery import trust_summary
from responder.worker import PassResult, Responder

if TYPE_CHECKING:
    from responder.console.actions import Wiring
    from responder.console.server import RunningConsole

log = logging.getLogger("responder")


def make_mailbox(
    settings: Settings, tokens: TokenSource | None = None, graph: GraphClient | None = None
) -> Mailbox:
    if settings.imap is not None:
        return ImapMailbox(settings.imap, tokens)
    if settings.graph is not None:
        return GraphMailbox(settings.graph, graph or GraphClient(settings.graph),
                            processing=settings.folders.processing,
                            state_path=settings.state.path)
    assert settings.maildir is not None
    return MaildirMailbox(settings.maildir, settings.folders.processing)


def make_mail(settings: Settings) -> tuple[Mailbox, Sender]:
    """The mailbox and the sender; with smtp.auth = "same-as-imap" they share one token,
    with [graph] and no [smtp] one Graph client (its throttling is per mailbox)."""
    if settings.graph is not None:
        client = GraphClient(settings.graph)
        mailbox = make_mailbox(settings, graph=client)
        if settings.smtp is None:
            return mailbox, GraphSender(client)
        return mailbox, SmtpSender(settings.smtp_sign_in())
    tokens = token_source(settings.imap) if settings.imap is not None else None
    assert settings.smtp is not None  # validated: only [graph] may go without
    shared = tokens if settings.smtp.auth == "same-as-imap" else None
    return make_mailbox(settings, tokens), SmtpSender(settings.smtp_sign_in(), shared)


@contextlib.asynccontextmanager
async def halo_client(settings: Settings) -> AsyncIterator[HaloClient]:
    """A Halo client whose request budget is shared by every process on this ledger."""
    budget: Ledger | None = None
    try:  # its own connection: the budget writes from worker threads
        budget = Ledger(settings.state.path)
    except (LedgerError, sqlite3.Error, OSError) as exc:
        log.warning("Halo request budget not shared (ledger unavailable: %s)", exc)
    try:
        async with HaloClient(settings.halo, budget_store=budget) as halo:
            yield halo
    finally:
        if budget is not None:
            budget.close()


@contextlib.asynccontextmanager
async def responder(settings: Settings, **options: object) -> AsyncIterator[Responder]:
    """A Responder with every part open, closed again on the way out."""
    mailbox, sender = make_mail(settings)
    ledger = Ledger(settings.state.path)
    try:
        async with halo_client(settings) as halo:
            await mailbox.open()
            worker = Responder(settings, mailbox, halo, sender, ledger,
                               **options)  # type: ignore[arg-type]
            try:
                yield worker
            finally:
                worker.close()
                await mailbox.close()
    finally:
        ledger.close()


@dataclass(frozen=True)
class CheckLine:
    component: str
    ok: bool
    detail: str


async def check(settings: Settings) -> list[CheckLine]:
    """Sign in to each part in turn; one line per part, whatever fails.

    A part whose secret cannot be read here (an ``env:`` variable only the service's
    environment sets) is a failed line naming the key; the other parts are still tried.
    """
    lines = [CheckLine("config", True, "valid")]
    missing = {part: "; ".join(settings.secret_problems(part))
               for part in ("mailbox", "smtp", "halo")}
    mailbox, sender = _check_parts(settings, missing)
    if mailbox is None:
        lines.append(CheckLine("mailbox", False, missing["mailbox"]))
    else:
        lines.append(await check_mailbox(mailbox))
    name = "smtp" if settings.smtp is not None else "sendmail"
    try:
        if sender is None:
            lines.append(CheckLine(name, False, missing["smtp"]))
        else:
            lines.append(CheckLine(name, True, await sender.check()))
    except SmtpError as exc:
        lines.append(CheckLine(name, False, str(exc)))
    try:
        if missing["halo"]:
            lines.append(CheckLine("halo", False, missing["halo"]))
        else:
            # no shared budget: check may run as another user than the service's, and
            # must neither create the ledger nor migrate it for its 2 requests
            async with HaloClient(settings.halo) as halo:
                lines.append(CheckLine("halo", True, await halo.check()))
    except HaloError as exc:
        lines.append(CheckLine("halo", False, str(exc)))
    lines.append(await asyncio.to_thread(check_ledger, settings.state.path))
    lines.append(CheckLine("trust", *trust_summary(settings.security)))
    return lines


def check_ledger(path: Path) -> CheckLine:
    """The ledger's absolute path and schema version, read without changing anything.

    ``check`` may be run as another user (root) than the service's: it must not create
    a ledger the service could then not write, nor migrate one.
    """
    where = str(path.absolute())
    if not path.is_absolute():
        where += " (state.path is relative: it depends on the working directory)"
    if not path.exists():
        folder = next(p for p in path.absolute().parents if p.exists())
        if not os.access(folder, os.W_OK | os.X_OK):
            return CheckLine("ledger", False, f"{where}: cannot be created: {folder} is not "
                             "writable by this user")
        return CheckLine("ledger", True, f"{where}, not created yet (the first run creates it)")
    try:
        ledger = Ledger.read_only(path)
        try:
            version = ledger.version()
        finally:
            ledger.close()
    except (LedgerError, sqlite3.Error, OSError) as exc:
        return CheckLine("ledger", False, f"{where}: {exc}")
    if version > schema_version():
        return CheckLine("ledger", False, f"{where}: schema version {version} was written by "
                         f"a newer responder (this one knows up to {schema_version()}): "
                         "upgrade the responder, or restore a backup made before the upgrade")
    later = f"; the next run migrates it to {schema_version()}" if version < schema_version() \
        else ""
    return CheckLine("ledger", True, f"{where}, schema version {version}{later}")


def _check_parts(
    settings: Settings, missing: dict[str, str]
) -> tuple[Mailbox | None, Sender | None]:
    """The mailbox and the sender that ``check`` can build: those whose secrets it has."""
    if not missing["mailbox"] and not missing["smtp"]:
        return make_mail(settings)
    mailbox = None
    if not missing["mailbox"]:
        tokens = token_source(settings.imap) if settings.imap is not None else None
        mailbox = make_mailbox(settings, tokens)
    sender = None  # "same-as-imap" and Graph's sendMail miss what the mailbox misses
    if not missing["smtp"] and settings.smtp is not None:
        sender = SmtpSender(settings.smtp_sign_in())
    return mailbox, sender


async def check_mailbox(mailbox: Mailbox) -> CheckLine:
    """Open the mailbox (its folder) and describe it; closed again whatever happens."""
    try:
        await mailbox.open()
        return CheckLine("mailbox", True, await mailbox.describe())
    except MailboxError as exc:
        return CheckLine("mailbox", False, str(exc))
    finally:
        with contextlib.suppress(MailboxError):
            await mailbox.close()


def watched(settings: Settings) -> str:
    """The watched folder in words: ``INBOX of approvals@imap.example.com``."""
    if settings.imap is not None:
        return f"{settings.imap.folder} of {settings.imap.username} on {settings.imap.host}"
    if settings.graph is not None:
        return f"{settings.graph.folder} of {settings.graph.mailbox}"
    assert settings.maildir is not None
    return f"the Maildir {settings.maildir.path}"


def read_only_mailbox(settings: Settings) -> Mailbox:
    """The mailbox opened so that nothing changes: IMAP ``EXAMINE`` instead of ``SELECT``,
    Graph without a ledger (no delta state saved); for ``init`` and ``check --discover``."""
    if settings.imap is not None:
        return ImapMailbox(settings.imap, read_only=True)
    if settings.graph is not None:
        return GraphMailbox(settings.graph, GraphClient(settings.graph))
    assert settings.maildir is not None  # validated: exactly one mailbox
    return MaildirMailbox(settings.maildir)


async def peek_headers(settings: Settings, limit: int) -> list[bytes]:
    """The newest messages' header blocks, read without a trace (IMAP EXAMINE and
    BODY.PEEK, a Graph GET, a Maildir read): for ``check --discover`` and ``init``."""
    mailbox = read_only_mailbox(settings)
    if settings.maildir is not None:  # its open() would make a missing folder
        return await mailbox.peek_headers(limit)
    await mailbox.open()
    try:
        return await mailbox.peek_headers(limit)
    finally:
        with contextlib.suppress(MailboxError):
            await mailbox.close()


async def read_ticket(settings: Settings, ticket_id: int) -> Ticket | None:
    """One ticket as the responder reads it (``check --online --ticket``): nothing posted."""
    async with halo_client(settings) as halo:
        return await halo.get_ticket(ticket_id)


async def once(
    settings: Settings, name: str = "default", progress: Callable[[str], None] | None = None
) -> PassResult:
    async with responder(settings, name=name, progress=progress) as worker:
        return await worker.run_once()


async def serve(instances: dict[str, Settings], config_path: Path | None = None) -> str:
    """Run every instance until SIGTERM/SIGINT, each isolated from the others' failures;
    returns the signal that stopped it (``responder run`` exits 130 after SIGINT).

    SIGTERM finishes the pass in hand, then closes everything. SIGHUP reloads the config
    from ``config_path`` and carries on with the new one, ``[web]`` and the health port
    included; a config that does not validate is reported and the old one kept. Each
    ledger is opened (and its schema migrated) before any mail is read, so an upgrade
    shows in the first lines.
    """
    loop = asyncio.get_running_loop()
    stopped_by: list[str] = []
    stop, reload = _on_signals(loop, stopped_by)
    log.info("responder %s starting: %s", __version__, describe_targets(instances))
    for name, settings in instances.items():
        await asyncio.to_thread(_prepare_ledger, name, settings)
    shared_analyser().start()  # the process that reads mail starts while we sign in
    metrics = Metrics()
    endpoints = Endpoints(metrics)
    try:
        await endpoints.start(instances)  # a port in use stops us here
        while True:
            await asyncio.gather(*(
                _serve_one(name, settings, stop, metrics) for name, settings in instances.items()
            ))
            if stopped_by or not reload.is_set() or config_path is None:
                break
            stop, reload = _on_signals(loop, stopped_by)
            try:
                instances = load_instances(config_path)
                for settings in instances.values():
                    settings.require_secrets()
                also_redact(s for settings in instances.values() for s in settings.secrets())
                log.info("config reloaded from %s: %s", config_path, describe_targets(instances))
                warn_exposed_secrets(config_path, instances)
            except ConfigError as exc:
                log.error("config not reloaded, keeping the old one: %s", exc)
                continue
            await endpoints.apply(instances)
    finally:
        await endpoints.close()
    log.info("stopped")
    return stopped_by[0] if stopped_by else "SIGTERM"


class Endpoints:
    """What ``run`` serves besides mail: /healthz and /metrics (``[service]
    metrics_host:metrics_port``) and the review console (``[web] host:port``).

    At start a port that cannot be had stops the start; on a reload (SIGHUP) each is
    moved, opened or closed as the new config says, and a port that cannot be had is
    logged naming its key, the rest of the reload standing.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.server: asyncio.Server | None = None
        self.console: RunningConsole | None = None
        self._health: tuple[str, int, float] = ("", 0, 0.0)
        self._web: tuple[str, int] = ("", 0)

    async def start(self, instances: dict[str, Settings]) -> None:
        first = next(iter(instances.values()))
        self.console = await _start_console(instances, self.metrics)  # first, as before
        self._web = (first.web.host, first.web.port)
        await self._serve_health(first.service)

    async def apply(self, instances: dict[str, Settings]) -> None:
        """Bring the endpoints in line with a reloaded config."""
        first = next(iter(instances.values()))
        if (first.web.host, first.web.port) == self._web:
            if self.console is not None:
                self.console.reload(instances)  # the password and session length
        else:
            await self._close_console()
            self._web = (first.web.host, first.web.port)
            try:
                self.console = await _start_console(instances, self.metrics)
            except ConfigError as exc:
                log.error("review console not served: %s", exc)
            if self.console is None and not first.web.port:
                log.info("review console closed (web.port = 0)")
        try:
            await self._serve_health(first.service)
        except OSError as exc:
            log.error("service.metrics_port: cannot listen on %s:%d: %s; /healthz and "
                      "/metrics not served", first.service.metrics_host,
                      first.service.metrics_port, os.strerror(exc.errno) if exc.errno else exc)

    async def _serve_health(self, service: ServiceSettings) -> None:
        """(Re)start the health port when its address or staleness changed."""
        self.metrics.unhealthy_after = service.unhealthy_after_seconds
        stale = 3 * max(service.retry_seconds, 60.0)
        wanted = (service.metrics_host, service.metrics_port, stale)
        if wanted == self._health:
            return
        moved = self.server is not None
        await self._close_health()
        self._health = wanted
        if not service.metrics_port:
            if moved:
                log.info("metrics closed (service.metrics_port = 0)")
            return
        self.server = await serve_metrics(self.metrics, service.metrics_host,
                                          service.metrics_port, stale)
        log.info("metrics on http://%s:%d/metrics", service.metrics_host, service.metrics_port)

    async def _close_health(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _close_console(self) -> None:
        if self.console is not None:
            await self.console.stop()
            self.console = None

    async def close(self) -> None:
        await self._close_health()
        await self._close_console()


async def _start_console(instances: dict[str, Settings], metrics: Metrics) -> RunningConsole | None:
    """The review console ([web] port), when configured; see responder/console."""
    if not next(iter(instances.values())).web.port:
        return None
    from responder.console.server import start_console

    return await start_console(instances, metrics, console_wiring())


def console_wiring() -> Wiring:
    """What the console's actions build: the mailbox to put a message back into, the
    sender of a resent answer."""
    from responder.console.actions import Wiring

    return Wiring(mailbox=make_mailbox, sender=lambda settings: make_mail(settings)[1])


def describe_targets(instances: dict[str, Settings]) -> str:
    """``1 instance: default (imap u@host:993 INBOX -> Halo https://..., ledger ...)``."""
    parts = []
    for name, s in instances.items():
        if s.imap is not None:
            mailbox = f"imap {s.imap.username}@{s.imap.host}:{s.imap.port} {s.imap.folder}"
        elif s.graph is not None:
            mailbox = f"graph {s.graph.mailbox} {s.graph.folder}"
        else:
            assert s.maildir is not None
            mailbox = f"maildir {s.maildir.path}"
        parts.append(f"{name} ({mailbox} -> Halo {s.halo.base_url}, ledger {s.state.path})")
    n = len(instances)
    return f"{n} instance{'' if n == 1 else 's'}: {'; '.join(parts)}"


def _prepare_ledger(name: str, settings: Settings) -> None:
    """Open the ledger once at start: migrations run now, a newer schema stops the start."""
    ledger = Ledger(settings.state.path)
    try:
        log.info("%s: ledger %s, schema version %d", name, settings.state.path, ledger.version())
    finally:
        ledger.close()


def _on_signals(
    loop: asyncio.AbstractEventLoop, stopped_by: list[str]
) -> tuple[asyncio.Event, asyncio.Event]:
    """Fresh stop and reload events, set by SIGTERM/SIGINT and SIGHUP from now on; the
    stopping signals are noted in ``stopped_by`` (a stop during a reload wins)."""
    stop, reload = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, _stopping, "SIGTERM", stop, stopped_by)
    loop.add_signal_handler(signal.SIGINT, _stopping, "SIGINT", stop, stopped_by)
    loop.add_signal_handler(signal.SIGHUP, _set_both, reload, stop)
    return stop, reload


def _stopping(signame: str, stop: asyncio.Event, stopped_by: list[str]) -> None:
    if not stopped_by:
        log.info("%s received: finishing the pass in hand, then stopping", signame)
    stopped_by.append(signame)
    stop.set()


def backlog_progress(name: str, every: int) -> Callable[[str], None]:
    """The worker's progress as one log line per ``every`` messages of a backlog.

    The worker reports ``N messages, ...`` once per pass, then ``filed K/N`` per message;
    a pass smaller than ``every`` logs nothing here (its messages are logged one by one).
    """
    total = 0

    def show(text: str) -> None:
        nonlocal total
        words = text.split()
        if len(words) > 1 and words[1] == "messages," and words[0].isdigit():
            total = int(words[0])
            if total >= every:
                log.info("%s: backlog of %d messages: %s", name, total, text.split(", ", 1)[1])
        elif words[:1] == ["filed"] and total >= every:
            done = int(words[1].split("/")[0])
            if done % every == 0 or done == total:
                log.info("%s: backlog: %d of %d messages done", name, done, total)

    return show


async def _serve_one(name: str, settings: Settings, stop: asyncio.Event, metrics: Metrics) -> None:
    """One instance's service loop; if it cannot start, it keeps trying (with backoff).

    A refused sign-in is logged as "authentication failed" once per backoff step and
    shown by /healthz, so a wrong password is seen without stopping the retries (it may
    be fixed on the server side).
    """
    backoff = 1.0
    progress = backlog_progress(name, settings.service.progress_every)
    while not stop.is_set():
        try:
            async with responder(settings, metrics=metrics, name=name,
                                 progress=progress) as worker:
                await worker.run(stop, retry_seconds=settings.service.retry_seconds)
            return
        except MailboxAuthError as exc:
            log.error("%s: mailbox authentication failed: %s; retrying in %.0f s",
                      name, exc, backoff)
            metrics.mailbox_reachable(False, f"authentication failed: {exc}", instance=name,
                                      refused=True)
        except (MailboxError, HaloError, OSError) as exc:
            log.error("%s: cannot start: %s; retrying in %.0f s", name, exc, backoff)
            metrics.mailbox_reachable(False, str(exc), instance=name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, 300.0)


def _set_both(*events: asyncio.Event) -> None:
    for event in events:
        event.set()
