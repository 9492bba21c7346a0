"""Pytest fixtures over the real servers in ``tests/servers.py``.

Each is defined under a function name that differs from its fixture name, so that a test
module can import it without ruff seeing the test's parameter as a redefinition
(``from tests.fixtures_mail import dovecot_server  # noqa: F401`` gives ``dovecot``).
The short aliases at the end serve ``from tests.fixtures_mail import dovecot`` in a
conftest. Fixtures depend only on each other.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator

import pytest

from responder.config import ImapSettings
from tests.servers import Dovecot, SmtpSink

_users = itertools.count(1)


def new_mail_user(server: Dovecot) -> tuple[str, str]:
    """A fresh login with an empty mailbox, so that tests sharing a server stay independent."""
    user = f"user{next(_users)}-{secrets.token_hex(3)}"
    password = "pw-" + secrets.token_hex(8)
    server.add_user(user, password)
    return user, password


def settings_for(server: Dovecot, user: str, password: str, **overrides: object) -> ImapSettings:
    """Test-friendly ImapSettings for ``user`` on ``server``: plain IMAP, quick polling."""
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "tls": "none",
        "username": user,
        "password": password,
        "poll_seconds": 0.2,
        "timeout": 10,
    }
    values.update(overrides)
    return ImapSettings.model_validate(values)


@pytest.fixture(scope="session", name="dovecot")
def dovecot_server() -> Iterator[Dovecot]:
    """One Dovecot for the session (with IDLE and MOVE); tests each take a fresh user."""
    with Dovecot() as server:
        yield server


@pytest.fixture(scope="session", name="dovecot_no_idle")
def dovecot_no_idle_server() -> Iterator[Dovecot]:
    """A Dovecot that does not advertise IDLE, for the polling fallback."""
    with Dovecot(idle=False) as server:
        yield server


@pytest.fixture(name="imap_settings")
def imap_settings_for_new_user(dovecot: Dovecot) -> ImapSettings:
    """ImapSettings (tls="none") for a fresh user on the session's Dovecot."""
    user, password = new_mail_user(dovecot)
    return settings_for(dovecot, user, password)


@pytest.fixture(name="smtp_sink")
def smtp_sink_server() -> Iterator[SmtpSink]:
    """An SMTP sink on a free port without AUTH; read ``smtp_sink.received()``."""
    with SmtpSink() as sink:
        yield sink


# The fixture names, for conftest imports (pytest registers each under its ``name``).
dovecot = dovecot_server
dovecot_no_idle = dovecot_no_idle_server
imap_settings = imap_settings_for_new_user
smtp_sink = smtp_sink_server
