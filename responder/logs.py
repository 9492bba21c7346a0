"""Logging: readable on a terminal, JSON lines when asked, secrets always redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from responder.config import Settings, exposed_secrets
from responder.terminal import printable, printable_lines

REDACTED = "***"
_SECRETS: list[str] = []  # the secrets of the config in force, for redact()


class Redactor(logging.Filter):
    """Replaces every configured secret in a log line, whichever library logged it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so that a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.redact(record.getMessage())
            record.args = ()
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        report = getattr(record, "report", None)
        if isinstance(report, dict):
            line.update(report)
        if record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """Log lines for people: a message's text in a log line (a subject, a Message-ID, a
    display name in a reason) cannot drive the terminal nor start a forged line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        return printable_lines(super().format(record))  # a traceback keeps its lines


def setup_logging(verbosity: int = 0, fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """verbosity: -1 quiet (warnings), 0 info, 1 debug."""
    secrets = list(secrets)
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redactor(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(message)s"))
    _SECRETS[:] = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn (the review console's server) says "Started server process" and "Shutting
    # down" of a server that is a task in this process: the console logs its own lines.
    for noisy in ("httpx", "httpcore", "imapclient", "mail.log", "aiosmtplib", "uvicorn"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def also_redact(secrets: Iterable[str]) -> None:
    """Hide these secrets too from now on (a config reloaded with new ones); the old ones
    stay hidden, as lines about the old config may still come."""
    known = set(_SECRETS) | {s for s in secrets if len(s) >= 4}
    _SECRETS[:] = sorted(known, key=len, reverse=True)
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, Redactor):
                found.secrets = list(_SECRETS)


def redact(text: str) -> str:
    """``text`` with the secrets of the last ``setup_logging`` replaced (for stderr lines)."""
    for secret in _SECRETS:
        text = text.replace(secret, REDACTED)
    return text


def warn_exposed_secrets(config: Path, instances: Mapping[str, Settings]) -> None:
    """One warning per file holding secrets that other users can read: the config, its
    ``file:`` secrets, the Graph certificate, the Google service-account key."""
    for path in exposed_secrets(config, instances):
        logging.getLogger("responder").warning(
            "%s holds secrets and is readable by other users: chmod 600 it", path)
