"""Serving the console inside ``responder run`` with uvicorn, on ``[web] host:port``.

The socket is bound here, before uvicorn starts, so that a port in use is a clear
error at start-up. uvicorn trusts ``X-Forwarded-Proto``/``-For`` only from the
addresses in ``FORWARDED_ALLOW_IPS`` (default 127.0.0.1: a reverse proxy on this host),
so the session cookie is marked Secure exactly when the proxy says it serves HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping

import uvicorn

from responder.config import ConfigError, Settings
from responder.console.actions import Wiring
from responder.console.app import Console, create_app, with_security_headers
from responder.metrics import Metrics

log = logging.getLogger("responder")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handlers: ``responder run`` owns those."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningConsole:
    def __init__(self, console: Console, server: _Server, task: asyncio.Task[None],
                 url: str) -> None:
        self.console = console
        self._server = server
        self._task = task
        self.url = url

    def reload(self, instances: Mapping[str, Settings]) -> None:
        """A reloaded config: new instances and password (host and port need a restart);
        a new password signs everyone out."""
        self.console.reload(instances)

    async def stop(self) -> None:
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 10)
        log.info("review console on %s stopped", self.url)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"web.port: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


async def start_console(instances: Mapping[str, Settings], metrics: Metrics | None,
                        wiring: Wiring) -> RunningConsole:
    """Start serving the console; ``stop()`` the result on the way out."""
    web = next(iter(instances.values())).web
    console = Console(instances, web, wiring, metrics)
    sock = _bind(web.host, web.port)
    config = uvicorn.Config(
        with_security_headers(create_app(console)),
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        task.result()  # re-raise why it did not start
    url = f"http://{web.host}:{web.port}/"
    log.info("review console on %s (put it behind a TLS reverse proxy)", url)
    return RunningConsole(console, server, task, url)
