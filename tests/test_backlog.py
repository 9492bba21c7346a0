"""A backlog larger than one budget window drains at the budget's pace (real servers).

The issue as tried: 100 replies waiting, a budget of 30 requests per 30 s, and after
160 s of ``responder run`` nothing was decided, because every pass threw its reads
away at the pass deadline. Here the window is scaled down (the same shape, seconds
instead of minutes) and the stand-in Halo enforces the same limit, answering 429
beyond it. ``scripts/bench.py`` measures the pace; this only shows that it drains.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from responder.halo.client import HaloClient
from responder.halo.standin import StandinHalo
from responder.ledger import Ledger
from responder.service import responder
from tests.harness import Harness, gmail_reply
from tests.test_run import Running, until

LIMIT, WINDOW = 12, 2.0  # requests per window: the budget and the stand-in's rate limit


async def test_a_backlog_beyond_one_window_is_decided_each_once(harness: Harness) -> None:
    count = 40
    for n in range(count):
        harness.halo.add_ticket(3000 + n, f"ticket {n}", [
            {"emailaddress": f"approver{n}@example.com", "seq": 1, "actionnumber": 1}])
        harness.deliver(gmail_reply(f"approver{n}@example.com", 3000 + n, "Approve"))
    harness.halo.faults.rate_limit(LIMIT, WINDOW)
    harness.overrides = {"halo": {"requests_per_window": LIMIT, "window_seconds": WINDOW,
                                  "pass_deadline_seconds": 1.0, "batch_size": 10}}

    started = time.monotonic()
    async with responder(harness.settings) as worker:
        service = Running(worker)
        first = await until(lambda: harness.halo.decisions, 10.0, "first decision")
        await until(lambda: len(harness.halo.decisions) == count, 60.0, "the whole backlog")
        await until(lambda: not harness.folder("INBOX"), 20.0, "everything filed")
        await service.finish()
    took = time.monotonic() - started

    assert first < 3.0  # the first batch goes as soon as its tickets are read
    assert sorted(d["ticket_id"] for d in harness.halo.decisions) == \
        [3000 + n for n in range(count)]
    assert harness.halo.duplicate_decisions == 0
    assert [r for r in harness.halo.requests if r.status == 429] == []
    # 40 reads and a handful of POSTs at 12 per 2 s: about 8 s; generous for a busy CI
    assert took < 40.0
    assert len(harness.answers()) == count
    assert len(harness.folder("Approvals/Done")) == count


async def test_a_read_cut_by_the_deadline_serves_the_next_pass(harness: Harness) -> None:
    harness.overrides = {"halo": {"pass_deadline_seconds": 0.3}}
    harness.halo.faults.latency = 0.6  # every call outlasts the pass
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))
    async with responder(harness.settings) as worker:
        first = await worker.run_once()
        assert [r.outcome for r in first.reports] == ["pending"] and first.more
        await until(lambda: harness.halo.count("GET", "/api/tickets/1300") == 1, 10.0,
                    "the read answered in the background")
        await asyncio.sleep(0.2)  # its answer reaches the client
        harness.halo.faults.latency = 0.0
        second = await worker.run_once()

    assert [r.outcome for r in second.reports] == ["approved"]
    assert harness.halo.count("GET", "/api/tickets/1300") == 1  # read once, kept


async def test_processes_on_one_ledger_share_one_budget(tmp_path: Path) -> None:
    """Two clients, each with its own connection to the ledger (as two processes have),
    against a stand-in that answers 429 beyond the limit: together they keep to it."""
    limit, window = 8, 1.5
    with StandinHalo() as halo:
        halo.add_ticket(1, "x", [{"emailaddress": "a@example.com", "seq": 1, "actionnumber": 1}])
        halo.faults.rate_limit(limit, window)
        settings = halo.settings(requests_per_window=limit, window_seconds=window,
                                 max_retries=0)
        stores = [Ledger(tmp_path / "ledger.sqlite3") for _ in range(2)]
        try:
            async def reads(store: Ledger) -> None:
                async with HaloClient(settings, budget_store=store) as client:
                    for _ in range(9):
                        await client.get_ticket(1)

            started = time.monotonic()
            await asyncio.gather(*(reads(s) for s in stores))
            took = time.monotonic() - started
        finally:
            for store in stores:
                store.close()
    assert [r for r in halo.requests if r.status == 429] == []
    assert len(halo.requests) == 20  # 2 tokens and 18 reads
    assert took >= 2 * window * 0.9  # 20 requests at 8 per 1.5 s: two windows of waiting
