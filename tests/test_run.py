"""The service loop for real: ``Responder.run(stop)`` against a real Dovecot.

Behaviour with generous bounds (a loaded CI machine must pass), not timing benchmarks:
``scripts/bench.py`` measures how fast. Dovecot itself delays an IDLE notice ~0.5 s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from responder.halo.standin import StandinHalo
from responder.service import responder
from responder.worker import Responder
from tests.harness import Harness, gmail_reply, outlook_reply
from tests.servers import Dovecot, SmtpSink

DECIDED_WITHIN = 8.0  # seconds from APPEND to the decision in Halo (~0.6 s unloaded)
STOPS_WITHIN = 5.0  # seconds from setting ``stop`` to ``run`` returning


@pytest.fixture(scope="module")
def dovecot_without_idle() -> Iterator[Dovecot]:
    with Dovecot(idle=False) as server:
        yield server


async def until(condition: object, timeout: float, what: str) -> float:
    """Wait for ``condition()`` to hold; the seconds it took (fails after ``timeout``)."""
    assert callable(condition)
    started = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - started
        assert elapsed < timeout, f"{what}: not within {timeout:g} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def decided(halo: StandinHalo, ticket_id: int, seq: int) -> bool:
    return halo.approver(ticket_id, seq)["result"] is not None


async def deliver(harness: Harness, raw: bytes) -> None:
    await asyncio.to_thread(harness.deliver, raw)


class Running:
    """``worker.run(stop)`` as a background task."""

    def __init__(self, worker: Responder) -> None:
        self.worker = worker
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(worker.run(self.stop))

    async def finish(self) -> float:
        """Set ``stop`` and wait for ``run`` to return; the seconds that took."""
        self.stop.set()
        started = time.monotonic()
        await asyncio.wait_for(self.task, STOPS_WITHIN * 2)
        return time.monotonic() - started


@pytest.fixture
async def running(harness: Harness) -> AsyncIterator[Running]:
    async with responder(harness.settings) as worker:
        service = Running(worker)
        try:
            yield service
        finally:
            if not service.task.done():
                await service.finish()


async def test_a_reply_arriving_during_idle_is_decided_and_the_loop_goes_on(
    harness: Harness, running: Running
) -> None:
    await asyncio.sleep(1.0)  # the first (empty) pass is done: it waits in IDLE now

    await deliver(harness, gmail_reply("alice@example.com", 1234, "Approve"))
    first = await until(lambda: decided(harness.halo, 1234, 1), DECIDED_WITHIN, "first reply")

    await asyncio.sleep(0.5)
    await deliver(harness, outlook_reply("bob@example.com", 1234, "Reject - over budget"))
    second = await until(lambda: decided(harness.halo, 1234, 2), DECIDED_WITHIN, "second reply")

    assert harness.halo.approver(1234, 1)["result"] == 1
    assert harness.halo.approver(1234, 2)["result"] == 2
    assert first < DECIDED_WITHIN and second < DECIDED_WITHIN
    await until(lambda: len(harness.answers()) == 2, DECIDED_WITHIN, "both answers")
    assert not running.task.done()
    assert await running.finish() < STOPS_WITHIN
    assert harness.folder("INBOX") == []
    assert len(harness.folder("Approvals/Done")) == 2
    assert harness.halo.duplicate_decisions == 0


async def test_stop_finishes_the_pass_in_hand_then_returns_promptly(
    harness: Harness, running: Running
) -> None:
    await asyncio.sleep(1.0)
    harness.halo.faults.latency = 0.5  # a slow Halo: the pass is still going when stop comes
    raw = gmail_reply("alice@example.com", 1300, "Approve")
    await deliver(harness, raw)
    await until(
        lambda: harness.halo.count("GET", "/api/tickets/1300") > 0,
        DECIDED_WITHIN,
        "the pass reading the ticket",
    )

    assert await running.finish() < STOPS_WITHIN

    assert decided(harness.halo, 1300, 4)  # the pass in hand was finished, not dropped
    assert len(harness.answers()) == 1
    assert harness.folder("Approvals/Done") == [raw]
    assert [row["state"] for row in harness.ledger_rows()] == ["filed"]


async def test_stop_while_waiting_returns_promptly(running: Running) -> None:
    await asyncio.sleep(1.0)  # waiting in IDLE

    assert await running.finish() < STOPS_WITHIN


async def test_without_idle_it_polls_and_still_decides(
    dovecot_without_idle: Dovecot, halo: StandinHalo, sink: SmtpSink
) -> None:
    with tempfile.TemporaryDirectory(prefix="responder-test-") as state:
        harness = Harness(dovecot_without_idle, halo, sink, Path(state))
        harness.overrides = {"imap": {"poll_seconds": 0.5}}
        async with responder(harness.settings) as worker:
            assert "polling every 0.5s" in await worker.mailbox.describe()
            service = Running(worker)
            await asyncio.sleep(0.8)  # past the first pass: polling now

            await deliver(harness, gmail_reply("alice@example.com", 1234, "Approve"))
            await until(lambda: decided(halo, 1234, 1), DECIDED_WITHIN, "polled reply")

            assert await service.finish() < STOPS_WITHIN
        assert harness.folder("Approvals/Done") != []
