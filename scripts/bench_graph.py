"""The Microsoft Graph figures of ``scripts/bench.py --graph``: the [graph] mailbox against
the stand-in Graph (real HTTPS, MSAL, httpx) and the stand-in Halo.

- latency from arrival to decision at the default poll (10 s): ``Responder.run(stop)``
  waits in the background; replies arrive one at a time at a random phase against the
  poll; timed from the delivery into the stand-in mailbox to the POST's arrival at Halo;
- Graph calls per decision: a backlog handled by one pass, every request counted by
  endpoint (token requests apart);
- peak RSS of a child process running one pass over replies that each carry a large
  attachment, next to the same process idle.

Not a test: nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from responder.halo.standin import StandinHalo  # noqa: E402
from responder.service import responder  # noqa: E402
from tests.graph_harness import GraphHarness  # noqa: E402
from tests.harness import gmail_reply, reply  # noqa: E402
from tests.standin_graph import StandinGraph  # noqa: E402


def log(text: str) -> None:
    print(f"[bench graph {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _approver(n: int) -> str:
    return f"approver{n}@example.com"


def _tickets(halo: StandinHalo, first: int, count: int) -> list[int]:
    ids = list(range(first, first + count))
    for ticket_id in ids:
        halo.add_ticket(ticket_id, f"Ticket {ticket_id}", [
            {"emailaddress": _approver(ticket_id), "seq": 1, "actionnumber": 1}])
    return ids


def _posted_at(halo: StandinHalo, ticket_id: int) -> float | None:
    for request in halo.requests:
        if (request.matches("POST", "/api/ticketapproval") and request.status == 200
                and any(d.get("ticket_id") == ticket_id for d in request.body or ())):
            return request.at
    return None


def _graph_calls(graph: StandinGraph, mailbox: str) -> collections.Counter[str]:
    """Requests by endpoint kind: delta, list, move, $value, read, sendMail, folders, ..."""
    kinds: collections.Counter[str] = collections.Counter()
    for r in graph.graph_requests(mailbox):
        if r.path.endswith("/messages/delta"):
            kind = "delta"
        elif r.path.endswith("/$value"):
            kind = "$value"
        elif r.path.endswith("/move"):
            kind = "move"
        elif r.path == "/sendMail":
            kind = "sendMail"
        elif r.path.endswith("/messages"):
            kind = "list"
        elif r.path.startswith("/messages/"):
            kind = "read" if r.method == "GET" else r.method.lower()
        else:
            kind = "folders"
        kinds[kind] += 1
    return kinds


async def latency(graph: StandinGraph, samples: int, state: Path) -> list[float]:
    halo = StandinHalo().start()
    try:
        gh = GraphHarness(graph, halo, state)
        gh.overrides = {"graph": {"poll_seconds": 10.0}}  # the default
        ids = _tickets(halo, 5000, samples + 1)
        rng = random.Random(7)
        found: list[float] = []
        async with responder(gh.settings) as worker:
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            await asyncio.sleep(0.5)
            for index, ticket_id in enumerate(ids):
                await asyncio.sleep(rng.uniform(0, 10.0))  # a random phase against the poll
                started = time.monotonic()
                gh.deliver(gmail_reply(_approver(ticket_id), ticket_id, "Approve"))
                while (at := _posted_at(halo, ticket_id)) is None:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
                if index:  # the first warms up (token, TLS, folders)
                    found.append(at - started)
                log(f"latency {index}: {at - started:.2f} s" + ("" if index else " (warm-up)"))
            stop.set()
            await asyncio.wait_for(task, 30)
        return found
    finally:
        halo.stop()


async def backlog(graph: StandinGraph, count: int, state: Path) -> dict[str, Any]:
    halo = StandinHalo().start()
    try:
        gh = GraphHarness(graph, halo, state)
        for ticket_id in _tickets(halo, 10_000, count):
            gh.deliver(gmail_reply(_approver(ticket_id), ticket_id, "Approve"))
        started = time.perf_counter()
        passed = await gh.once()
        seconds = time.perf_counter() - started
        decided = sum(r.outcome == "approved" for r in passed.reports)
        calls = _graph_calls(graph, gh.mailbox)
        tokens = len([r for r in graph.requests if r.path == "/token"])
        log(f"backlog: {decided}/{count} in {seconds:.2f} s, {dict(calls)}")
        return {"decided": decided, "seconds": seconds, "calls": calls, "tokens": tokens}
    finally:
        halo.stop()


def rss(graph: StandinGraph, count: int, megabytes: float, state: Path) -> dict[str, Any]:
    halo = StandinHalo().start()
    try:
        gh = GraphHarness(graph, halo, state)
        size = int(megabytes * 1024 * 1024)
        line = "A" * 76 + "\r\n"
        blob = line * (size // len(line))
        for ticket_id in _tickets(halo, 20_000, count):
            body = ("--b1\nContent-Type: text/plain; charset=utf-8\n\nApprove\n"
                    "--b1\nContent-Type: application/pdf; name=quote.pdf\n"
                    "Content-Disposition: attachment; filename=quote.pdf\n"
                    "Content-Transfer-Encoding: base64\n\n" + blob + "--b1--\n")
            gh.deliver(reply(_approver(ticket_id), f"Re: Approval required [ID:{ticket_id}]",
                             body, content_type='multipart/mixed; boundary="b1"'))
        child = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "bench.py"), "--rss-child"],
            input=json.dumps(gh.config()), capture_output=True, text=True, check=False,
            timeout=600, env={**os.environ, **graph.env()},
        )
        if child.returncode != 0:
            raise RuntimeError(f"rss child failed: {child.stderr[-2000:]}")
        out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
        out["value_requests"] = len(graph.graph_requests(gh.mailbox, "GET", "/$value"))
        log(f"rss: {out}")
        return out
    finally:
        halo.stop()


async def figures(args: argparse.Namespace) -> list[str]:
    """Every Graph figure, as the lines of a table."""
    with StandinGraph() as graph, tempfile.TemporaryDirectory(prefix="bench-graph-") as tmp:
        os.environ.update(graph.env())
        state = Path(tmp)
        done = await backlog(graph, args.backlog, state)
        memory = await asyncio.to_thread(rss, graph, args.attachments, args.graph_attachment_mb,
                                         state)
        waits = await latency(graph, args.graph_samples, state)
    calls = done["calls"]
    per = sum(calls.values()) / max(done["decided"], 1)
    waits.sort()
    lines = [
        "  Microsoft Graph ([graph] mailbox, sendMail answers; stand-in Graph over HTTPS)",
        f"    arrival -> decision at poll 10 s: median {statistics.median(waits):.2f} s, "
        f"max {waits[-1]:.2f} s over {len(waits)} replies",
        f"    backlog of {args.backlog}: {done['decided']} decided in {done['seconds']:.2f} s, "
        f"{sum(calls.values())} Graph calls = {per:.2f} per decision "
        f"({', '.join(f'{k} {v}' for k, v in calls.most_common())}); "
        f"{done['tokens']} token requests",
        f"    {args.attachments} replies x {args.graph_attachment_mb:g} MB attachment: peak RSS "
        f"{memory['peak_kb'] / 1024:.0f} MB (idle {memory['idle_kb'] / 1024:.0f} MB), "
        f"{memory['fetched_bytes'] / 1024:.0f} kB read of "
        f"{memory['mailbox_bytes'] / 1024 / 1024:.0f} MB, {memory['value_requests']} $value",
    ]
    return lines
