"""Shared fixtures: real servers started by the test session (see tests/servers.py)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from responder.halo.standin import StandinHalo
from tests.corpus_cases import SKIPPED
from tests.harness import Harness
from tests.servers import Dovecot, SmtpSink


def pytest_configure(config: pytest.Config) -> None:
    """A config without ``[state]`` keeps its ledger in the user's state folder: in a
    test run (and the responder processes tests start) that is a folder of the run's own,
    never the real ``~/.local/state`` nor a systemd ``$STATE_DIRECTORY``."""
    _STATE_HOME.append(tempfile.mkdtemp(prefix="responder-test-state-"))
    os.environ["XDG_STATE_HOME"] = _STATE_HOME[0]
    os.environ.pop("STATE_DIRECTORY", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _STATE_HOME:
        shutil.rmtree(folder, ignore_errors=True)


_STATE_HOME: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One visible line when the corpus tests were skipped for want of the corpus, saying
    how to run them (a skip alone shows only as an "s", even without -q)."""
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        if SKIPPED in reason and "RESPONDER_CORPUS=/path" in reason:
            terminalreporter.write_line(reason.removeprefix("Skipped: "), yellow=True)
            return


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """Tests that run the CLI in-process set up logging on the output pytest captures; put
    the root logger back, so that no later thread writes to a capture that is closed."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


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
