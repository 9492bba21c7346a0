"""Wiring: build the parts from the settings and run a command with them.

``check``, ``once`` and ``serve`` are what the CLI commands of the same names call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from responder import __version__
from responder.analysis import shared as shared_analyser
from responder.config import ConfigError, Settings, load_instances
from responder.graph_api import GraphClient
from responder.halo import HaloClient, HaloError
from responder.ledger import Ledger
from responder.mailboxes import Mailbox, MailboxAuthError, MailboxError
from responder.mailboxes.graph import GraphMailbox
from responder.mailboxes.imap import ImapMailbox
from responder.mailboxes.maildir import MaildirMailbox
from responder.metrics import Metrics, serve_metrics
from responder.oauth import TokenSource, token_source
from responder.senders import Sender
from responder.senders.graph import GraphSender
from responder.senders.smtp import SmtpError, SmtpSender
from responder.tickets import Ticket
from responder.worker import PassResult, Responder

if TYPE_CHECKING:
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
    try:  # its own connection: the budget writes from worker threads
        budget: Ledger | None = Ledger(settings.state.path)
    except (sqlite3.Error, OSError) as exc:  # ``check`` reports the ledger on its own line
        log.warning("Halo request budget not shared (ledger unavailable: %s)", exc)
        budget = None
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
    """Sign in to each part in turn; one line per part, whatever fails."""
    lines = [CheckLine("config", True, "valid")]
    mailbox, sender = make_mail(settings)
    try:
        await mailbox.open()
        lines.append(CheckLine("mailbox", True, await mailbox.describe()))
    except MailboxError as exc:
        lines.append(CheckLine("mailbox", False, str(exc)))
    finally:
        with contextlib.suppress(MailboxError):
            await mailbox.close()
    name = "smtp" if settings.smtp is not None else "sendmail"
    try:
        lines.append(CheckLine(name, True, await sender.check()))
    except SmtpError as exc:
        lines.append(CheckLine(name, False, str(exc)))
    try:
        async with halo_client(settings) as halo:
            lines.append(CheckLine("halo", True, await halo.check()))
    except HaloError as exc:
        lines.append(CheckLine("halo", False, str(exc)))
    try:
        Ledger(settings.state.path).close()
        lines.append(CheckLine("ledger", True, str(settings.state.path)))
    except Exception as exc:
        lines.append(CheckLine("ledger", False, f"{settings.state.path}: {exc}"))
    return lines


async def read_ticket(settings: Settings, ticket_id: int) -> Ticket | None:
    """One ticket as the responder reads it (``check --online --ticket``): nothing posted."""
    async with halo_client(settings) as halo:
        return await halo.get_ticket(ticket_id)


async def once(
    settings: Settings, name: str = "default", progress: Callable[[str], None] | None = None
) -> PassResult:
    async with responder(settings, name=name, progress=progress) as worker:
        return await worker.run_once()


async def serve(instances: dict[str, Settings], config_path: Path | None = None) -> None:
    """Run every instance until SIGTERM/SIGINT, each isolated from the others' failures.

    SIGTERM finishes the pass in hand, then closes everything. SIGHUP reloads the config
    from ``config_path`` and carries on with the new one; a config that does not
    validate is reported and the old one kept. Each ledger is opened (and its schema
    migrated) before any mail is read, so an upgrade shows in the first lines.
    """
    loop = asyncio.get_running_loop()
    stop, reload = _on_signals(loop)
    log.info("responder %s starting: %s", __version__, describe_targets(instances))
    for name, settings in instances.items():
        await asyncio.to_thread(_prepare_ledger, name, settings)
    shared_analyser().start()  # the process that reads mail starts while we sign in
    metrics = Metrics()
    service = next(iter(instances.values())).service
    console = await _start_console(instances, metrics)  # first: a port in use stops us here
    server = None
    if service.metrics_port:
        stale = 3 * max(service.retry_seconds, 60.0)
        server = await serve_metrics(metrics, service.metrics_host, service.metrics_port, stale)
        log.info("metrics on http://%s:%d/metrics", service.metrics_host, service.metrics_port)
    try:
        while True:
            await asyncio.gather(*(
                _serve_one(name, settings, stop, metrics) for name, settings in instances.items()
            ))
            if not reload.is_set() or config_path is None:
                log.info("stopped")
                return
            stop, reload = _on_signals(loop)
            try:
                instances = load_instances(config_path)
                log.info("config reloaded from %s: %s", config_path, describe_targets(instances))
                if console is not None:
                    console.reload(instances)
            except ConfigError as exc:
                log.error("config not reloaded, keeping the old one: %s", exc)
    finally:
        if server is not None:
            server.close()
        if console is not None:
            await console.stop()


async def _start_console(instances: dict[str, Settings], metrics: Metrics) -> RunningConsole | None:
    """The review console ([web] port), when configured; see responder/console."""
    if not next(iter(instances.values())).web.port:
        return None
    from responder.console.server import start_console

    return await start_console(instances, metrics)


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


def _on_signals(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Event, asyncio.Event]:
    """Fresh stop and reload events, set by SIGTERM/SIGINT and SIGHUP from now on."""
    stop, reload = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, _stopping, "SIGTERM", stop)
    loop.add_signal_handler(signal.SIGINT, _stopping, "SIGINT", stop)
    loop.add_signal_handler(signal.SIGHUP, _set_both, reload, stop)
    return stop, reload


def _stopping(signame: str, stop: asyncio.Event) -> None:
    if not stop.is_set():
        log.info("%s received: finishing the pass in hand, then stopping", signame)
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
            metrics.mailbox_reachable(False, f"authentication failed: {exc}")
        except (MailboxError, HaloError, OSError) as exc:
            log.error("%s: cannot start: %s; retrying in %.0f s", name, exc, backoff)
            metrics.mailbox_reachable(False, str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, 300.0)


def _set_both(*events: asyncio.Event) -> None:
    for event in events:
        event.set()
