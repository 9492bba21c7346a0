"""Wiring: build the parts from the settings and run a command with them.

``check``, ``once`` and ``serve`` are what the CLI commands of the same names call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from responder.config import ConfigError, Settings, load_settings
from responder.halo import HaloClient, HaloError
from responder.imap import ImapMailbox
from responder.ledger import Ledger
from responder.mailbox import Mailbox, MailboxError
from responder.maildir import MaildirMailbox
from responder.metrics import Metrics, serve_metrics
from responder.smtp import SmtpError, SmtpSender
from responder.worker import PassResult, Responder

log = logging.getLogger("responder")


def make_mailbox(settings: Settings) -> Mailbox:
    if settings.imap is not None:
        return ImapMailbox(settings.imap)
    assert settings.maildir is not None
    return MaildirMailbox(settings.maildir)


@contextlib.asynccontextmanager
async def responder(settings: Settings, **options: object) -> AsyncIterator[Responder]:
    """A Responder with every part open, closed again on the way out."""
    mailbox = make_mailbox(settings)
    ledger = Ledger(settings.state.path)
    try:
        async with HaloClient(settings.halo) as halo:
            await mailbox.open()
            try:
                yield Responder(settings, mailbox, halo, SmtpSender(settings.smtp), ledger,
                                **options)  # type: ignore[arg-type]
            finally:
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
    mailbox = make_mailbox(settings)
    try:
        await mailbox.open()
        lines.append(CheckLine("mailbox", True, await mailbox.describe()))
    except MailboxError as exc:
        lines.append(CheckLine("mailbox", False, str(exc)))
    finally:
        with contextlib.suppress(MailboxError):
            await mailbox.close()
    try:
        lines.append(CheckLine("smtp", True, await SmtpSender(settings.smtp).check()))
    except SmtpError as exc:
        lines.append(CheckLine("smtp", False, str(exc)))
    try:
        async with HaloClient(settings.halo) as halo:
            lines.append(CheckLine("halo", True, await halo.check()))
    except HaloError as exc:
        lines.append(CheckLine("halo", False, str(exc)))
    try:
        Ledger(settings.state.path).close()
        lines.append(CheckLine("ledger", True, str(settings.state.path)))
    except Exception as exc:
        lines.append(CheckLine("ledger", False, f"{settings.state.path}: {exc}"))
    return lines


async def once(settings: Settings) -> PassResult:
    async with responder(settings) as worker:
        return await worker.run_once()


async def serve(settings: Settings, config_path: Path | None = None) -> None:
    """Run until SIGTERM/SIGINT (finish the pass in hand, then close everything).

    SIGHUP reloads the config from ``config_path`` and carries on with the new one; a
    config that does not validate is reported and the old one kept.
    """
    metrics = Metrics()
    server = None
    if settings.service.metrics_port:
        stale = 3 * max(settings.service.retry_seconds, 60.0)
        server = await serve_metrics(metrics, settings.service.metrics_host,
                                     settings.service.metrics_port, stale)
        log.info("metrics on http://%s:%d/metrics", settings.service.metrics_host,
                 settings.service.metrics_port)
    loop = asyncio.get_running_loop()
    try:
        while True:
            stop, reload = asyncio.Event(), asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGHUP, _set_both, reload, stop)
            async with responder(settings, metrics=metrics) as worker:
                await worker.run(stop, retry_seconds=settings.service.retry_seconds)
            if not reload.is_set() or config_path is None:
                return
            try:
                settings = load_settings(config_path)
                log.info("config reloaded from %s", config_path)
            except ConfigError as exc:
                log.error("config not reloaded, keeping the old one: %s", exc)
    finally:
        if server is not None:
            server.close()


def _set_both(*events: asyncio.Event) -> None:
    for event in events:
        event.set()
