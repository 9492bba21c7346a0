"""Logging as the CLI sets it up, seen from where its lines land."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from responder.logs import setup_logging


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_a_line_logged_after_stderr_was_replaced_goes_to_the_new_stderr(
    restored_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker thread still logging after the stream logging was set up with is closed (a
    daemoniser, an embedding program, a captured test run) writes its line, not an error."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging(0, "text", ["hunter2-secret"])
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)

    worker = threading.Thread(
        target=logging.getLogger("responder.imap").info, args=("signed in with hunter2-secret",))
    worker.start()
    worker.join()

    (line,) = second.getvalue().splitlines()  # the line itself, not "--- Logging error ---"
    assert line.endswith("INFO    signed in with ***")
