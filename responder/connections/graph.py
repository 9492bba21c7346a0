"""Microsoft Graph over httpx: app-only sign-in, the throttling rules, clean errors.

One ``GraphClient`` per mailbox, shared by the Graph mailbox and the Graph sender, so
that together they keep to what Exchange Online allows one app on one mailbox:

- at most 4 requests in flight (Outlook's per-mailbox concurrency limit; more get 429
  "MailboxConcurrency"), counted for every client on that mailbox in the process (two
  instances on one mailbox, the console's actions), ``graph.concurrency`` of them;
- a budget of ``BUDGET_REQUESTS`` per ``BUDGET_WINDOW`` seconds, half of Outlook's 10,000
  per 10 minutes per app and mailbox, so that a second instance (same app) fits beside us;
- a 429 or 503 waits for its ``Retry-After`` (else backs off) and is retried, at most
  ``MAX_RETRIES`` times; a refused token (401) is replaced once.

Errors leave as ``GraphError`` with the HTTP status and Graph's error code, never a token
or a secret. Tokens come from ``oauth.MicrosoftTokens`` (MSAL, client credentials, scope
``https://graph.microsoft.com/.default``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from responder.config import GraphSettings
from responder.connections.budget import RequestBudget, retry_after
from responder.connections.oauth import GRAPH_SCOPE, MicrosoftTokens, TokenError, TokenSource

log = logging.getLogger("responder.graph")

# The gate of each mailbox, per event loop (a semaphore serves one loop only).
_Gates = dict[tuple[str, str], asyncio.Semaphore]
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Gates] = weakref.WeakKeyDictionary()
BUDGET_REQUESTS, BUDGET_WINDOW = 5000, 600.0  # Outlook allows 10,000 per 10 min per app+mailbox
MAX_RETRIES = 4
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
_RETRIED = (429, 503, 504)


class GraphError(Exception):
    """Graph refused a request or could not be reached; ``status`` 0 for no answer."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def graph_tokens(settings: GraphSettings, http_client: Any = None) -> MicrosoftTokens:
    """MSAL client credentials for the app: its secret, or its certificate's private key."""
    credential: str | dict[str, str]
    if settings.client_secret is not None:
        credential = settings.client_secret.get_secret_value()
    else:
        assert settings.certificate_path and settings.certificate_thumbprint  # validated
        credential = {
            "private_key": _read_key(settings.certificate_path),
            "thumbprint": settings.certificate_thumbprint.replace(":", "").strip(),
        }
    return MicrosoftTokens(settings.tenant_id, settings.client_id, credential, GRAPH_SCOPE,
                           http_client=http_client, authority=settings.authority)


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not a PEM file"
        raise TokenError(f"graph.certificate_path {path}: {why}") from None


def error_code(response: httpx.Response) -> tuple[str, str]:
    """Graph's ``{"error": {"code", "message"}}`` as (code, first line of the message)."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    message = str(error.get("message") or "").strip().splitlines()
    return str(error.get("code") or ""), (message[0][:200] if message else "")


def mailbox_gate(settings: GraphSettings) -> asyncio.Semaphore:
    """The one gate of a mailbox in this process: every client on it waits at the same one."""
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    key = (settings.graph_url.rstrip("/").lower(), settings.mailbox.lower())
    if key not in gates:
        gates[key] = asyncio.Semaphore(settings.concurrency)  # 1-4: Outlook allows 4
    return gates[key]


class GraphClient:
    """Requests to ``graph_url`` as the app, for one mailbox (``user_path``)."""

    def __init__(
        self,
        settings: GraphSettings,
        tokens: TokenSource | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tokens = tokens if tokens is not None else graph_tokens(settings)
        self.base = settings.graph_url.rstrip("/")
        self.user_path = f"/users/{quote(settings.mailbox, safe='@.')}"
        self.calls: Counter[str] = Counter()  # requests sent, by label (retries included)
        self.throttled = 0  # 429/503 answers seen
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._sleep = sleep
        self._budget = RequestBudget(BUDGET_REQUESTS, BUDGET_WINDOW, sleep=sleep, clock=clock)
        self._gate: asyncio.Semaphore | None = None
        self._users = 0

    async def open(self) -> None:
        """Each user (mailbox, sender) opens and closes once; the last close ends it."""
        self._users += 1
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.settings.timeout,
                                           transport=self._transport)
            self._gate = mailbox_gate(self.settings)

    async def close(self) -> None:
        self._users = max(self._users - 1, 0)
        if self._users == 0 and self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def url(self, path: str) -> str:
        """A path under the mailbox ("/messages/x") or a whole link Graph gave us."""
        if path.startswith("https://") or path.startswith("http://"):
            return path
        return f"{self.base}{self.user_path}{path}"

    async def request(
        self,
        label: str,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One logical request; returns an answer in ``ok``, else raises ``GraphError``.

        Only GET and PATCH are retried after a broken connection (they are safe to repeat);
        a 429/503 was refused by Graph before any work, so every method is retried then.
        """
        if self._http is None:
            await self.open()
        assert self._http is not None and self._gate is not None
        url = self.url(path)
        stale = False
        for attempt in range(MAX_RETRIES + 1):
            try:
                token = await self.tokens.token(force_refresh=stale)
            except TokenError as exc:
                raise GraphError(f"graph: no token: {exc}", status=401, code="token") from None
            sent = {**(headers or {}), "Authorization": f"Bearer {token}"}
            stamp = await self._budget.acquire()
            self.calls[label] += 1
            try:
                async with self._gate:
                    response = await self._http.request(method, url, headers=sent, **kwargs)
            except httpx.TransportError as exc:
                if attempt == MAX_RETRIES or method not in ("GET", "PATCH"):
                    raise GraphError(f"graph {method} {label}: no answer "
                                     f"({type(exc).__name__})") from None
                delay = self._backoff(attempt)
            else:
                if response.status_code in ok:
                    return response
                if response.status_code == 401 and not stale:
                    stale = True  # refused before it expired by our clock: fetch anew
                    continue
                if response.status_code not in _RETRIED or attempt == MAX_RETRIES:
                    raise self._refused(label, method, response)
                self.throttled += 1
                # Retry-After is a floor; a little spread keeps instances that were
                # refused together from all coming back in the same instant.
                delay = retry_after(response.headers.get("Retry-After")) or \
                    self._backoff(attempt)
                delay *= 1 + random.random() / 4
                log.warning("graph %s %s: HTTP %d, retrying in %.1f s", method, label,
                            response.status_code, delay)
            finally:
                self._budget.settle(stamp)
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def json(self, label: str, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(label, method, path, **kwargs)
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise GraphError(f"graph {method} {label}: the answer is not JSON",
                             status=response.status_code) from None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
        return ceiling * (0.5 + random.random() / 2)

    def _refused(self, label: str, method: str, response: httpx.Response) -> GraphError:
        code, message = error_code(response)
        status = response.status_code
        what = f"{code}: {message}" if code else (message or response.reason_phrase)
        return GraphError(f"graph {method} {label}: HTTP {status} ({what})",
                          status=status, code=code)
