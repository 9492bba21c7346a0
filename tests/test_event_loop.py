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

from responder.analysis import Analyser
from responder.metrics import Metrics, serve_metrics
from responder.service import responder
from tests import slow_work
from tests.harness import Harness, gmail_reply, offline_dkim, reply

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


async def test_healthz_answers_within_1_s_while_a_message_reads_past_its_limit(
    harness: Harness,
) -> None:
    """A message whose reading never ends (a catastrophic pattern, in C, holding the
    GIL of the process reading it): /healthz answers all along, the message is filed
    as failed at the limit with the reason, unanswered, and the next one is read."""
    harness.overrides = {"parsing": {"analysis_timeout_seconds": 3}}
    stuck = gmail_reply("alice@example.com", 1234, "Approve", msgid="<stuck@example.com>")
    harness.deliver(stuck.replace(b"\r\n\r\n", b"\r\n" + slow_work.MARK + b"\r\n\r\n", 1))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))
    metrics = Metrics()
    server = await serve_metrics(metrics, "127.0.0.1", 0, stale_after=600)
    port = server.sockets[0].getsockname()[1]
    reader = Analyser(work=slow_work.crawl)
    prober = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, str(port), stdout=asyncio.subprocess.PIPE)
    try:
        async with responder(harness.settings, metrics=metrics, analyser=reader,
                             dkim_verifier=offline_dkim) as worker:
            assert prober.stdout is not None
            await prober.stdout.readline()
            started = time.monotonic()
            result = await worker.run_once()
            took = time.monotonic() - started
            again = await worker.run_once()
    finally:
        reader.close()
        prober.kill()
        output, _ = await prober.communicate()
        server.close()
        await server.wait_closed()
    times = [float(line) for line in output.decode().split()]

    outcomes = {r.sender: (r.outcome, r.reason) for r in result.reports}
    assert outcomes == {
        None: ("failed", "message too complex to read: not read within 3 s "
                         "(parsing.analysis_timeout_seconds)"),
        "bob@example.com": ("rejected", outcomes["bob@example.com"][1]),
    }
    assert 3 <= took < 20  # the limit, then the rest of the pass
    assert len(times) >= 20  # /healthz was asked all through
    assert max(times) < 1.0, f"slowest /healthz: {max(times) * 1000:.0f} ms"
    assert [m["To"] for m in harness.answers()] == ["bob@example.com"]  # alice: no answer
    assert len(harness.folder("Approvals/Failed")) == 1
    assert again.reports == []  # filed: not read again
