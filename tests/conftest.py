"""Shared fixtures: real servers started by the test session (see tests/servers.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from responder.standin import StandinHalo
from tests.harness import Harness
from tests.servers import Dovecot, SmtpSink


@pytest.fixture(scope="session")
def shared_dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session; each harness signs in as a fresh user."""
    with Dovecot() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def halo() -> Iterator[StandinHalo]:
    """The stand-in Halo with a few tickets awaiting approval."""
    with StandinHalo() as server:
        server.add_ticket(1234, "New laptop for Dana", [
            {"emailaddress": "Alice@Example.com", "name": "Alice", "seq": 1, "actionnumber": 3},
            {"emailaddress": "bob@example.com", "name": "Bob", "seq": 2, "actionnumber": 3},
        ])
        server.add_ticket(1235, "Firewall change", [
            {"emailaddress": "carol@example.com", "seq": 1, "actionnumber": 5, "result": 1},
        ])
        server.add_ticket(1300, "Licence renewal", [
            {"emailaddress": "alice@example.com", "seq": 4, "actionnumber": 9},
        ])
        yield server


@pytest.fixture
def harness(shared_dovecot: Dovecot, halo: StandinHalo, sink: SmtpSink) -> Iterator[Harness]:
    with tempfile.TemporaryDirectory(prefix="responder-test-") as state:
        yield Harness(shared_dovecot, halo, sink, Path(state))
