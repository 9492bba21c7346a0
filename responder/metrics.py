"""Optional ``/healthz`` and Prometheus ``/metrics`` (off unless ``[service] metrics_port``).

The figures an operator watches: messages by outcome, Halo requests by kind, the time
from a reply's arrival to its decision, whether the mailbox is reachable, the outbox.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("responder_messages", "Messages handled, by outcome",
                                ["instance", "outcome"], registry=r)
        self.halo_requests = Gauge("responder_halo_requests", "Halo HTTP requests made "
                                   "since start, by kind (retries included)",
                                   ["instance", "kind"], registry=r)
        self.halo_unavailable = Counter("responder_halo_unavailable",
                                        "Messages left pending because Halo was unavailable",
                                        registry=r)
        self.latency = Histogram("responder_decision_latency_seconds",
                                 "From a reply's arrival in the mailbox to its decision",
                                 buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
                                 registry=r)
        self.mailbox_up = Gauge("responder_mailbox_up", "1 when the last mailbox call worked",
                                registry=r)
        self.outbox = Gauge("responder_outbox_size", "Answers waiting to be sent", registry=r)
        self.last_pass_at = 0.0
        self.mailbox_ok = False
        self.mailbox_problem = ""  # why the mailbox is not answering, for /healthz
        self.last_pass = Gauge("responder_last_pass_timestamp_seconds",
                               "When the last pass over the mailbox finished", registry=r)
        self.instance_passes: dict[str, float] = {}  # for the review console

    def record_pass(
        self,
        instance: str,
        outcomes: Iterable[str],
        latencies: Iterable[float],
        halo_calls: Mapping[str, int],
        outbox_size: int,
    ) -> None:
        for outcome in outcomes:
            self.messages.labels(instance, outcome).inc()
            if outcome == "pending":
                self.halo_unavailable.inc()
        for seconds in latencies:
            self.latency.observe(max(seconds, 0.0))
        for kind, count in halo_calls.items():
            self.halo_requests.labels(instance, kind).set(count)
        self.outbox.set(outbox_size)
        self.mailbox_reachable(True)
        self.last_pass_at = time.time()
        self.last_pass.set(self.last_pass_at)
        self.instance_passes[instance] = self.last_pass_at

    def mailbox_reachable(self, up: bool, problem: str = "") -> None:
        self.mailbox_ok = up
        self.mailbox_problem = "" if up else problem
        self.mailbox_up.set(1 if up else 0)

    def healthy(self, stale_after: float) -> tuple[bool, str]:
        """Healthy when a pass finished recently and the mailbox answered."""
        if self.mailbox_problem:
            return False, f"mailbox unreachable: {self.mailbox_problem}"
        if not self.last_pass_at:
            return False, "no pass finished yet"
        if not self.mailbox_ok:
            return False, "mailbox unreachable"
        age = time.time() - self.last_pass_at
        if age > stale_after:
            return False, f"last pass {age:.0f} s ago"
        return True, f"ok, last pass {age:.0f} s ago"

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def serve_metrics(
    metrics: Metrics, host: str, port: int, stale_after: float
) -> asyncio.Server:
    """A minimal HTTP/1.0 server for GET /metrics and GET /healthz."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split()[1].decode() if len(request.split()) > 1 else ""
            status, body, kind = _route(metrics, path, stale_after)
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


def _route(metrics: Metrics, path: str, stale_after: float) -> tuple[str, bytes, str]:
    if path == "/metrics":
        return "200 OK", metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
    if path == "/healthz":
        ok, why = metrics.healthy(stale_after)
        return ("200 OK" if ok else "503 Service Unavailable"), why.encode(), "text/plain"
    return "404 Not Found", b"not found", "text/plain"
