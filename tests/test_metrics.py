"""/healthz and /metrics: what an operator's monitoring sees."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from responder.metrics import (
    CONNECTION_SECONDS,
    MAX_CONNECTIONS,
    Metrics,
    serve_metrics,
)
from tests.harness import Harness, gmail_reply
from tests.servers import free_port


async def test_metrics_after_a_pass_and_health(harness: Harness) -> None:
    metrics = Metrics()
    port = free_port()
    server = await serve_metrics(metrics, "127.0.0.1", port, stale_after=60)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            before = await client.get("/healthz")
            assert before.status_code == 503 and "no pass" in before.text

            harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
            harness.deliver(gmail_reply("dave@example.com", 1234, "Approve"))
            await harness.once(metrics=metrics)

            health = await client.get("/healthz")
            text = (await client.get("/metrics")).text
            missing = await client.get("/nope")
    finally:
        server.close()
        await server.wait_closed()
    assert health.status_code == 200
    assert 'responder_messages_total{instance="default",outcome="approved"} 1.0' in text
    assert 'responder_messages_total{instance="default",outcome="not-approver"} 1.0' in text
    assert 'responder_halo_requests{instance="default",kind="POST ticketapproval"} 1.0' in text
    assert "responder_decision_latency_seconds_count 1.0" in text
    assert "responder_outbox_size 0.0" in text
    assert missing.status_code == 404


# -- the health port under attack: anyone who reaches it may send anything ---------------


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_a_request_line_over_64_kib_is_431_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await serve_metrics(Metrics(), "127.0.0.1", 0, stale_after=60)
    port = server.sockets[0].getsockname()[1]
    try:
        long_line = await _ask(port, b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n")
        many_headers = await _ask(port, b"GET /healthz HTTP/1.0\r\n"
                                  + (b"X-Pad: " + b"b" * 1000 + b"\r\n") * 100 + b"\r\n")
        binary = await _ask(port, b"\xff\xfe\x00 /\xc3( HTTP/1.0\r\n\r\n")
        after = await _ask(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    finally:
        server.close()
        await server.wait_closed()
    assert long_line.startswith(b"HTTP/1.0 431 ")
    assert many_headers.startswith(b"HTTP/1.0 431 ")
    assert binary.startswith(b"HTTP/1.0 404 ")
    assert after.startswith(b"HTTP/1.0 503 ")  # still serving
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text


async def test_slow_clients_are_dropped_and_do_not_hold_up_the_health_check() -> None:
    server = await serve_metrics(Metrics(), "127.0.0.1", 0, stale_after=60)
    port = server.sockets[0].getsockname()[1]

    async def slowloris() -> float:
        """One header line a second, for as long as the server lets it."""
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.0\r\n")
        try:
            while time.monotonic() - started < 30:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                if await _closed(reader, 1.0):
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()
        return time.monotonic() - started

    try:
        slow = [asyncio.ensure_future(slowloris()) for _ in range(MAX_CONNECTIONS + 20)]
        await asyncio.sleep(1.0)  # all of them connected and dribbling
        times = []
        for _ in range(5):
            started = time.monotonic()
            answer = await _ask(port, b"GET /healthz HTTP/1.0\r\n\r\n")
            times.append(time.monotonic() - started)
            assert answer.startswith(b"HTTP/1.0 503 ")
        held = await asyncio.gather(*slow)
    finally:
        server.close()
        await server.wait_closed()
    assert max(times) < 0.5, times
    assert max(held) < CONNECTION_SECONDS + 2, max(held)  # every one of them was dropped


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closed (or answered on) the connection within ``within`` s."""
    try:
        await asyncio.wait_for(reader.read(1024), within)
    except TimeoutError:
        return False
    return True


async def test_an_unhealthy_mailbox_is_reported_without_its_account_or_the_servers_words(
) -> None:
    metrics = Metrics()
    metrics.mailbox_reachable(
        False, "authentication failed: imap login refused for approvals7: "
               "[AUTHENTICATIONFAILED] Authentication failed.", refused=True)
    server = await serve_metrics(metrics, "127.0.0.1", 0, stale_after=60)
    port = server.sockets[0].getsockname()[1]
    try:
        answer = await _ask(port, b"GET /healthz HTTP/1.0\r\n\r\n")
    finally:
        server.close()
        await server.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 503 ")
    assert body.decode().splitlines() == [
        "unhealthy: mailbox refusing the sign-in", "mailbox refusing the sign-in for 0 s",
        "halo not contacted yet", "outgoing-mail not contacted yet"]  # names and states only
