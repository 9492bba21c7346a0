"""/healthz and /metrics: what an operator's monitoring sees."""

from __future__ import annotations

import httpx

from responder.metrics import Metrics, serve_metrics
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
