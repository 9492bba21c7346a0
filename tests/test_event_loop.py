"""The event loop only waits: /healthz answers while a pass reads a hostile 2 MB message,
and no SQLite statement of a pass runs on the loop's thread.

Real Dovecot, the stand-in Halo, the real /healthz server. The probe is a process of its
own (a client on the event loop would wait with it, one in a thread would share its GIL).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from responder.metrics import Metrics, serve_metrics
from responder.service import responder
from tests.harness import Harness, gmail_reply, reply

HEALTHZ_WITHIN = 0.1  # seconds


def hostile_html(ticket: int) -> bytes:
    """2 MB of HTML paragraphs: some seconds of layout work (bounded, see test_hostile)."""
    body = "<p>Approve" + "<p>x" * 480_000
    return reply("alice@example.com", f"Re: Approval [ID:{ticket}]", body,
                 content_type='text/html; charset="utf-8"')


PROBE = """
import socket, sys, time
port = int(sys.argv[1])
while True:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.0\\r\\n\\r\\n")
        answer = conn.recv(1024)
    assert answer.startswith(b"HTTP/1.0 "), answer
    print(time.monotonic() - started, flush=True)
    time.sleep(0.02)
"""


async def test_healthz_answers_within_100_ms_while_a_pass_reads_a_hostile_message(
    harness: Harness,
) -> None:
    harness.overrides = {"parsing": {"max_message_bytes": 3_000_000}}
    raw = hostile_html(1234)
    assert len(raw) > 1_900_000
    harness.deliver(raw)
    metrics = Metrics()
    server = await serve_metrics(metrics, "127.0.0.1", 0, stale_after=600)
    port = server.sockets[0].getsockname()[1]
    # The probe is a process of its own: a thread here would compete for our GIL.
    prober = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, str(port), stdout=asyncio.subprocess.PIPE)
    try:
        async with responder(harness.settings, metrics=metrics) as worker:
            assert prober.stdout is not None
            await prober.stdout.readline()  # it is running (its first answer not counted)
            started = time.monotonic()
            result = await worker.run_once()
            took = time.monotonic() - started
    finally:
        prober.kill()
        output, _ = await prober.communicate()
        server.close()
        await server.wait_closed()
    times = [float(line) for line in output.decode().split()]

    assert [r.outcome for r in result.reports] == ["approved"]  # it was read, in full
    assert took > 0.5  # the analysis was long enough to matter
    assert len(times) >= 5  # /healthz was asked all through the pass
    assert max(times) < HEALTHZ_WITHIN, f"slowest /healthz: {max(times) * 1000:.0f} ms"


async def test_no_ledger_statement_of_a_pass_runs_on_the_event_loop(harness: Harness) -> None:
    """Every SQLite write is an fsync (synchronous=FULL): the worker thread makes them.

    The pass decides, answers, bundles a digest for the answers over the hourly limit and
    files, so each part of it that touches the ledger is seen."""
    harness.overrides = {"security": {"answers_per_sender_per_hour": 1}}
    for ticket_id in (1234, 1235, 1236):
        harness.halo.add_ticket(ticket_id, f"Purchase {ticket_id}",
                                [{"emailaddress": "alice@example.com", "seq": 1,
                                  "actionnumber": 1}])
        harness.deliver(gmail_reply("alice@example.com", ticket_id, "Approve",
                                    msgid=f"<loop{ticket_id}@example.com>"))
    loop_thread = threading.get_ident()
    on_loop: list[str] = []

    def seen(statement: str) -> None:
        if threading.get_ident() == loop_thread:
            on_loop.append(statement)

    async with responder(harness.settings, metrics=Metrics()) as worker:
        worker.ledger.db.set_trace_callback(seen)
        result = await worker.run_once()

    assert [r.outcome for r in result.reports] == ["approved"] * 3
    assert (result.answers_sent, result.digests_sent) == (2, 1)  # one answer, then a digest
    assert on_loop == []
