"""Messages are read in worker processes under a wall-clock limit (issue 19).

Real processes, real pipes: a reader stuck in a regular expression is killed at the
limit and replaced, a reader that dies is replaced, and either way the message is
filed as too complex to read (no sender: never answered).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from responder.analysis import Analyser, too_complex
from responder.config import ParsingSettings
from responder.reading.message import analyse
from tests import slow_work
from tests.harness import gmail_reply

REPO = Path(__file__).resolve().parent.parent
QUICK = ParsingSettings(analysis_timeout_seconds=2)
CRAWLING = gmail_reply("alice@example.com", 1234, "Approve").replace(
    b"\r\n\r\n", b"\r\n" + slow_work.MARK + b"\r\n\r\n", 1)


@pytest.fixture(scope="module")
def analyser() -> Iterator[Analyser]:
    reader = Analyser(work=slow_work.crawl)
    yield reader
    reader.close()


def pids(reader: Analyser) -> set[int | None]:
    return {w.process.pid for w in reader._idle}


def test_a_message_reads_in_a_process_as_it_does_here(analyser: Analyser) -> None:
    raw = gmail_reply("alice@example.com", 1234, "Approve - within budget")
    facts = analyser.analyse(raw, QUICK)
    assert facts.as_json() == analyse(raw, QUICK).as_json()
    assert facts.headers is not None and facts.headers["From"] == "alice@example.com"


def test_the_process_is_kept_from_message_to_message(analyser: Analyser) -> None:
    analyser.analyse(gmail_reply("alice@example.com", 1, "Approve"), QUICK)
    first = pids(analyser)
    started = time.monotonic()
    analyser.analyse(gmail_reply("bob@example.com", 2, "Reject"), QUICK)
    assert pids(analyser) == first  # no new process: its start is paid once
    assert time.monotonic() - started < 1


def test_a_message_past_the_limit_is_too_complex_and_its_reader_replaced(
    analyser: Analyser,
) -> None:
    analyser.analyse(gmail_reply("alice@example.com", 1, "Approve"), QUICK)
    before = pids(analyser)
    started = time.monotonic()
    facts = analyser.analyse(CRAWLING, QUICK)
    took = time.monotonic() - started

    assert 2 <= took < 5  # the limit, not the 2**64 steps of the pattern
    assert facts == too_complex(CRAWLING, 2)
    assert facts.sender is None  # so it is never answered
    assert "too complex to read: not read within 2 s" in (facts.unreadable or "")
    assert pids(analyser).isdisjoint(before)  # the stuck one is gone, a new one waits
    again = analyser.analyse(gmail_reply("bob@example.com", 2, "Reject"), QUICK)
    assert again.sender == "bob@example.com"


def test_a_reader_that_dies_is_replaced_and_the_message_filed_as_unreadable() -> None:
    reader = Analyser(work=slow_work.die)
    try:
        facts = reader.analyse(CRAWLING, QUICK)
        assert facts.sender is None
        assert "the process reading it stopped (exit code 3)" in (facts.unreadable or "")
        again = reader.analyse(gmail_reply("bob@example.com", 2, "Reject"), QUICK)
        assert again.sender == "bob@example.com"
    finally:
        reader.close()


def test_other_messages_are_read_while_one_is_stuck(analyser: Analyser) -> None:
    """Two readers: a stuck message holds one, the other goes on reading."""
    warm = [threading.Thread(target=analyser.analyse, args=(raw, QUICK))
            for raw in (gmail_reply("a@example.com", 1, "x"), gmail_reply("b@example.com", 1, "x"))]
    for thread in warm:  # both readers started (their start is not what is measured)
        thread.start()
    for thread in warm:
        thread.join()
    done: dict[str, float] = {}

    def stuck() -> None:
        assert "too complex" in (analyser.analyse(CRAWLING, QUICK).unreadable or "")
        done["stuck"] = time.monotonic()

    thread = threading.Thread(target=stuck)
    thread.start()
    time.sleep(0.2)
    facts = analyser.analyse(gmail_reply("carol@example.com", 3, "Approve"), QUICK)
    done["carol"] = time.monotonic()
    thread.join()
    assert facts.sender == "carol@example.com"
    assert done["carol"] < done["stuck"]  # read while the other one was stuck


ORPHAN = """
import multiprocessing, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from responder.analysis import Analyser
from responder.config import ParsingSettings
from tests import slow_work
from tests.harness import gmail_reply
raw = gmail_reply("alice@example.com", 1, "Approve").replace(
    b"\\r\\n\\r\\n", b"\\r\\n" + slow_work.MARK + b"\\r\\n\\r\\n", 1)
reader = Analyser(work=slow_work.crawl)
threading.Thread(target=reader.analyse, daemon=True,
                 args=(raw, ParsingSettings(analysis_timeout_seconds=600))).start()
while not multiprocessing.active_children():
    time.sleep(0.05)
time.sleep(3)  # its imports done, the crawl under way
print(multiprocessing.active_children()[0].pid, flush=True)
os._exit(9)  # the service dies without any cleanup (SIGKILL, a crash)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_reader_stuck_on_a_message_dies_with_the_service() -> None:
    done = subprocess.run([sys.executable, "-c", ORPHAN, str(REPO)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 9, done.stderr
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the reader outlived the service, burning a CPU"
