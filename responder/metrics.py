"""Optional ``/healthz`` and Prometheus ``/metrics`` (off unless ``[service] metrics_port``).

The figures an operator watches: messages by outcome, Halo requests by kind, the time
from a reply's arrival to its decision, whether the mailbox is reachable, the outbox.
``/healthz`` reports each dependency (mailbox, Halo, outgoing mail) and how long it has
been failing; it turns unhealthy once one has failed for longer than ``[service]
unhealthy_after_seconds``, or refused the sign-in (waiting does not heal that). Anyone
who reaches the port reads it: names, states and seconds only, never an error's text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("responder")

DEPENDENCIES = ("mailbox", "halo", "outgoing-mail")


@dataclass
class Dependency:
    """What is known of one dependency of one instance, from the calls made to it."""

    failing_since: float | None = None  # time.time() of the first failure in a row
    refused: bool = False  # the last failure was a refused sign-in

    def state(self, now: float) -> str:
        if self.failing_since is None:
            return "ok"
        what = "refusing the sign-in" if self.refused else "failing"
        return f"{what} for {now - self.failing_since:.0f} s"


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
        self.last_pass = Gauge("responder_last_pass_timestamp_seconds",
                               "When the last pass over the mailbox finished", registry=r)
        self.instance_passes: dict[str, float] = {}  # for the review console
        self.dependencies: dict[tuple[str, str], Dependency] = {}  # (instance, name)
        self.unhealthy_after = 300.0  # [service] unhealthy_after_seconds

    def dependency(self, instance: str, name: str, ok: bool | None,
                   refused: bool = False) -> None:
        """Note how a call to a dependency went; None: it was not called (no change)."""
        if ok is None:
            return
        found = self.dependencies.setdefault((instance, name), Dependency())
        if ok:
            found.failing_since, found.refused = None, False
        else:
            found.failing_since = found.failing_since or time.time()
            found.refused = refused

    def record_pass(
        self,
        instance: str,
        outcomes: Iterable[str],
        latencies: Iterable[float],
        halo_calls: Mapping[str, int],
        outbox_size: int,
        *,
        halo: tuple[bool | None, bool] = (None, False),
        outgoing: bool | None = None,
    ) -> None:
        """One finished pass; ``halo`` is (answered, refused the sign-in) of its last
        call, ``outgoing`` whether answers went out (None: neither had anything to do)."""
        self.dependency(instance, "halo", halo[0], refused=halo[1])
        self.dependency(instance, "outgoing-mail", outgoing)
        for outcome in outcomes:
            self.messages.labels(instance, outcome).inc()
            if outcome == "pending":
                self.halo_unavailable.inc()
        for seconds in latencies:
            self.latency.observe(max(seconds, 0.0))
        for kind, count in halo_calls.items():
            self.halo_requests.labels(instance, kind).set(count)
        self.outbox.set(outbox_size)
        self.mailbox_reachable(True, instance=instance)
        self.last_pass_at = time.time()
        self.last_pass.set(self.last_pass_at)
        self.instance_passes[instance] = self.last_pass_at

    def mailbox_reachable(self, up: bool, problem: str = "", *, instance: str = "default",
                          refused: bool = False) -> None:
        self.mailbox_ok = up
        self.mailbox_up.set(1 if up else 0)
        self.dependency(instance, "mailbox", up, refused=refused)

    def healthy(self, stale_after: float) -> tuple[bool, str]:
        """Healthy when a pass finished recently and no dependency has been failing for
        longer than ``unhealthy_after`` (a refused sign-in: at once). The text: a first
        line (``ok`` or ``unhealthy: why``), then one line per dependency."""
        now = time.time()
        problem = self._problem(now, stale_after)
        lines = [f"unhealthy: {problem}" if problem else "ok"]
        for instance in sorted({i for i, _ in self.dependencies} or {"default"}):
            label = "" if instance == "default" else f"{instance}: "
            for name in DEPENDENCIES:
                found = self.dependencies.get((instance, name))
                lines.append(f"{label}{name} "
                             f"{found.state(now) if found else 'not contacted yet'}")
        if self.last_pass_at:
            lines.append(f"last pass {now - self.last_pass_at:.0f} s ago")
        return problem is None, "\n".join(lines) + "\n"

    def _problem(self, now: float, stale_after: float) -> str | None:
        for (instance, name), found in sorted(self.dependencies.items()):
            label = name if instance == "default" else f"{instance}: {name}"
            if found.failing_since is None:
                continue
            if found.refused:
                return f"{label} refusing the sign-in"
            if now - found.failing_since > self.unhealthy_after:
                return (f"{label} failing for {now - found.failing_since:.0f} s "
                        f"(over {self.unhealthy_after:g} s)")
        if not self.last_pass_at:
            return "no pass finished yet"
        if now - self.last_pass_at > stale_after:
            return f"last pass {now - self.last_pass_at:.0f} s ago"
        return None

    def render(self) -> bytes:
        return generate_latest(self.registry)


# The health port is reachable by anyone who can reach the host: bounded and brief.
REQUEST_LIMIT = 64 * 1024  # bytes of request line and headers, all together
CONNECTION_SECONDS = 5.0  # a client gets this long to send its request, then is dropped
MAX_CONNECTIONS = 64  # beyond this, the oldest connection is dropped for the newcomer


class _TooLarge(Exception):
    """The request line or the headers are over ``REQUEST_LIMIT``."""


async def serve_metrics(
    metrics: Metrics, host: str, port: int, stale_after: float
) -> asyncio.Server:
    """A minimal HTTP/1.0 server for GET /metrics and GET /healthz.

    Each connection has ``CONNECTION_SECONDS`` in all (a slow client cannot hold one open),
    the request may be at most ``REQUEST_LIMIT`` bytes (431 beyond), and at most
    ``MAX_CONNECTIONS`` are open at once, the oldest dropped first, so a flood of idle
    connections never keeps the container's health check out. Nothing a client sends
    makes a traceback: a bad request is one debug line.
    """
    open_: dict[asyncio.StreamWriter, float] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _make_room(open_)
        open_[writer] = time.monotonic()
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(CONNECTION_SECONDS):
                try:
                    path = await _read_request(reader)
                except _TooLarge:
                    status, body, kind = ("431 Request Header Fields Too Large",
                                          b"request too large", "text/plain")
                    log.debug("health port: request from %s over %d bytes", peer,
                              REQUEST_LIMIT)
                else:
                    status, body, kind = _route(metrics, path, stale_after)
                if writer.is_closing():  # dropped for a newer connection meanwhile
                    return
                writer.write(
                    f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except TimeoutError:
            log.debug("health port: %s dropped after %g s", peer, CONNECTION_SECONDS)
        except Exception as exc:  # a client's bytes must never make a traceback
            log.debug("health port: request from %s ended: %s", peer, type(exc).__name__)
        finally:
            open_.pop(writer, None)
            writer.close()

    return await asyncio.start_server(handle, host, port, limit=REQUEST_LIMIT)


def _make_room(open_: dict[asyncio.StreamWriter, float]) -> None:
    """Drop the oldest connections while ``MAX_CONNECTIONS`` are open."""
    while len(open_) >= MAX_CONNECTIONS:
        oldest = next(iter(open_))  # insertion order: the first still open
        del open_[oldest]
        oldest.close()


async def _read_request(reader: asyncio.StreamReader) -> str:
    """The path of the request line; the headers are read and dropped, within the limit."""
    total = 0
    lines: list[bytes] = []
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raise _TooLarge from exc
        except asyncio.IncompleteReadError as exc:  # the client stopped sending
            line = exc.partial
        total += len(line)
        if total > REQUEST_LIMIT:
            raise _TooLarge
        lines.append(line)
        if line in (b"\r\n", b"\n", b"") or not line.endswith(b"\n"):
            break
    words = lines[0].split()
    return words[1].decode("latin-1") if len(words) > 1 else ""


def _route(metrics: Metrics, path: str, stale_after: float) -> tuple[str, bytes, str]:
    if path == "/metrics":
        return "200 OK", metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
    if path == "/healthz":
        ok, why = metrics.healthy(stale_after)
        return ("200 OK" if ok else "503 Service Unavailable"), why.encode(), "text/plain"
    return "404 Not Found", b"not found", "text/plain"
