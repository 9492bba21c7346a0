"""The Halo API client: OAuth2 client credentials, a request budget, retries, clean errors.

Every failure leaves this module as one of::

    HaloError                  base; the message names method, path and status, never a secret
    ├── HaloAuthError          credentials refused, or 401 again after one token refresh
    ├── HaloUnavailable        5xx, timeouts, refused/dropped connections, 429 after retries,
    │                          and answers that are not Halo's (a 3xx to a maintenance or
    │                          sign-in page, a 200 that is not JSON, a body that does not
    │                          decode or is too large or too deep): try again later
    │                          (``maybe_applied``: the request may have landed)
    ├── HaloRejected           any other 4xx: retrying won't help
    └── HaloUnusable           Halo's JSON cannot be trusted for a decision (another ticket's
                               id, an entry without a numeric ``seq`` or ``result``): not retried

Halo allows about 300 requests per rolling 5 minutes per tenant, shared with every other
integration, so the client keeps its own sliding-window budget (token requests count)
and waits for a free slot rather than cause a 429. Reads are retried with exponential
backoff and jitter; the approval POST is retried only when Halo certainly did not get
it (refused connection, 429, expired token), because a decision must never be sent
twice: after an uncertain failure the caller re-reads the ticket instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import httpx

from responder import __version__
from responder.config import HaloSettings
from responder.connections.budget import BudgetStore, Clock, RequestBudget, Sleep, retry_after
from responder.halo.tickets import (
    Approver,
    Malformed,
    Submission,
    Ticket,
    approver_from_json,
    ticket_from_json,
)

log = logging.getLogger("responder.halo")

TOKEN_MARGIN = 60.0  # renew this long before expires_in runs out
DEFAULT_EXPIRES_IN = 300.0  # when the token reply does not say
BACKOFF_CAP = 30.0
EXCERPT_CHARS = 200
# Halo's answers are kilobytes; a body (decoded) beyond this is not Halo's: given up.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_FRAMING = ("content-encoding", "content-length", "transfer-encoding")
# Failures after which Halo certainly did not process the request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class HaloError(Exception):
    """Base of every error from this module; ``str()`` is safe to log."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
    ) -> None:
        where = f"{method} {path}" if method and path else ""
        super().__init__(f"{where}: {message}" if where else message)
        self.method = method
        self.path = path
        self.status = status


class HaloAuthError(HaloError):
    """Halo refused our credentials or our fresh token: a configuration problem.

    ``code``: the OAuth ``error`` code Halo's token endpoint gave (``invalid_client``...),
    when it gave a plausible one."""

    code: str = ""


class HaloUnavailable(HaloError):
    """Halo could not be reached or is overloaded: try again later.

    ``maybe_applied`` is True when a request that changes data may have been processed
    before the failure (a timeout while waiting for the answer, a 5xx): re-read first.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        maybe_applied: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.maybe_applied = maybe_applied
        self.retry_after = retry_after


class HaloRejected(HaloError):
    """Halo answered with a 4xx (other than 401/429): the same request will fail again."""

    def __init__(
        self, message: str, *, method: str, path: str, status: int, excerpt: str = ""
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.excerpt = excerpt


class HaloUnusable(HaloError):
    """Halo answered with JSON that cannot be used for a decision: nothing is guessed."""


class _Unreadable(Exception):
    """The answer's body could not be read as sent (broken encoding, over the limit)."""


class HaloClient:
    """One Halo tenant, shared safely by many tasks; use ``async with`` or ``aclose()``."""

    def __init__(
        self,
        settings: HaloSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        jitter: Callable[[], float] = random.random,
        backoff_base: float = 0.5,
        budget_store: BudgetStore | None = None,
    ) -> None:
        self.settings = settings
        self.calls: Counter[str] = Counter()  # HTTP attempts by kind, retries included
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._backoff_base = backoff_base
        self._budget = RequestBudget(
            settings.requests_per_window, settings.window_seconds, sleep=sleep, clock=clock,
            store=budget_store, key=f"{settings.base_url.rstrip('/')}|{settings.tenant or ''}",
            reserve=decision_reserve(settings),
        )
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=settings.timeout,
            follow_redirects=False,
            headers={
                "Accept": "application/json",
                "User-Agent": f"halo-approval-responder/{__version__}",
            },
        )
        self._token: str | None = None
        self._token_expiry = 0.0
        self._token_lock = asyncio.Lock()
        # How the last API call went, for /healthz: None before the first; ``refused``
        # when Halo refused the sign-in (that does not heal by waiting).
        self.reachable: bool | None = None
        self.refused = False
        self.granted_scope = settings.scope  # what the last token says it grants (check())

    async def __aenter__(self) -> HaloClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the operations --------------------------------------------------------------

    @property
    def budget_pressed(self) -> bool:
        """Whether requests are waiting for the request budget (a backlog is draining)."""
        return self._budget.pressed

    async def get_ticket(self, ticket_id: int) -> Ticket | None:
        """The ticket with its approvers, or None when Halo has no such ticket (404)."""
        path = f"/tickets/{int(ticket_id)}"
        response = await self._api("GET", path, "GET ticket", idempotent=True, allow={404})
        if response.status_code == 404:
            return None
        data = _json(response)
        if not isinstance(data, dict):
            raise _not_halos(response, "not a ticket")
        try:
            ticket = ticket_from_json(data)
        except Malformed as exc:
            raise HaloUnusable(f"Halo's answer for ticket {ticket_id} cannot be used: {exc}",
                               method="GET", path=_path(response), status=200) from None
        if ticket.id != ticket_id:
            raise HaloUnusable(f"Halo answered with ticket {ticket.id} when asked for ticket "
                               f"{ticket_id}", method="GET", path=_path(response), status=200)
        return ticket

    async def submit(
        self, submissions: Sequence[Submission], answer_within: float | None = None
    ) -> list[Approver] | None:
        """POST the decisions as one array; Halo's records of them when the reply has them.

        None means the reply carried no records (the spec documents none): re-read the
        ticket to see what Halo recorded. Nothing to submit makes no call.
        ``answer_within`` bounds the wait for Halo's answer (not the wait for a slot in
        the budget, during which nothing was sent); past it the POST may have landed.
        """
        if not submissions:
            return []
        body = [s.as_json(self.settings.note_field) for s in submissions]
        timeout: dict[str, Any] = {} if answer_within is None else {
            "timeout": min(self.settings.timeout, answer_within)}
        response = await self._api(
            "POST", "/ticketapproval", "POST ticketapproval", idempotent=False, json=body,
            **timeout,
        )
        return _submitted_records(_json(response), submissions)

    async def check(self) -> str:
        """Fetch a fresh token: proves the URL and the credentials, for ``responder check``."""
        async with self._token_lock:
            _, reply = await self._fetch_token()
        self.granted_scope = str(reply.get("scope") or self.settings.scope)
        return f"token ok (scope {self.granted_scope}, expires in {_expires_in(reply):.0f} s)"

    # -- tokens ----------------------------------------------------------------------

    async def _bearer(self, stale: str | None = None) -> str:
        """The cached token, fetched once for all waiting tasks when missing or ``stale``."""
        async with self._token_lock:
            if self._token and self._token != stale and self._clock() < self._token_expiry:
                return self._token
            token, _ = await self._fetch_token()
            return token

    async def _fetch_token(self) -> tuple[str, dict[str, Any]]:
        """A new token from the token URL, cached; the caller holds ``_token_lock``."""
        settings = self.settings
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "scope": settings.scope,
        }
        params = {"tenant": settings.tenant} if settings.tenant else None
        response = await self._send(
            "token", "POST", settings.token_url, idempotent=True, data=form, params=params
        )
        method, path = "POST", response.request.url.path
        if response.status_code in (400, 401, 403):
            code = _oauth_error(response)
            refused = HaloAuthError(
                f"Halo refused the client credentials (HTTP {response.status_code}"
                f"{': ' + code if code else ''})",
                method=method,
                path=path,
                status=response.status_code,
            )
            refused.code = code
            raise refused
        if response.status_code >= 300:
            raise self._rejected(response, "the token request failed")
        data = _json(response)
        if not isinstance(data, dict):
            raise _not_halos(response, "not a token")
        reply: dict[str, Any] = data
        token = reply.get("access_token")
        if not isinstance(token, str) or not token:
            raise HaloAuthError(
                "the token reply carries no access_token", method=method, path=path, status=200
            )
        lifetime = _expires_in(reply)
        self._token = token
        self._token_expiry = self._clock() + lifetime - min(TOKEN_MARGIN, lifetime / 2)
        log.debug("Halo token obtained, expires in %.0f s", lifetime)
        return token, reply

    # -- requests --------------------------------------------------------------------

    async def _api(
        self,
        method: str,
        path: str,
        label: str,
        *,
        idempotent: bool,
        allow: frozenset[int] | set[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """An API call, noting whether Halo answered it (``reachable``, ``refused``)."""
        try:
            response = await self._authorised(method, path, label, idempotent=idempotent,
                                              allow=allow, **kwargs)
        except HaloError as exc:
            self.reachable = not isinstance(exc, HaloAuthError | HaloUnavailable)
            self.refused = isinstance(exc, HaloAuthError)
            raise
        self.reachable, self.refused = True, False
        return response

    async def _authorised(
        self,
        method: str,
        path: str,
        label: str,
        *,
        idempotent: bool,
        allow: frozenset[int] | set[int] = frozenset(),
        **kwargs: Any,
    ) -> httpx.Response:
        """An API call with the bearer token: refreshed once on 401; 2xx or ``allow`` back."""
        url = self.settings.api_url + path
        stale: str | None = None
        for _ in range(2):
            token = await self._bearer(stale)
            headers = {"Authorization": f"Bearer {token}"}
            response = await self._send(
                label, method, url, idempotent=idempotent, headers=headers, **kwargs
            )
            if response.status_code != 401:
                break
            log.info("Halo answered 401 to %s %s: renewing the token", method, _path(response))
            stale = token
        else:
            raise HaloAuthError(
                "Halo refused a freshly issued token (HTTP 401): check the application's "
                "permissions and the agent it logs in as",
                method=method,
                path=_path(response),
                status=401,
            )
        if response.status_code < 300 or response.status_code in allow:
            return response
        raise self._rejected(response, f"Halo rejected the request (HTTP {response.status_code})")

    async def _send(
        self, label: str, method: str, url: str, *, idempotent: bool, **kwargs: Any
    ) -> httpx.Response:
        """One logical request: budget, timeout, retries; returns any non-5xx, non-429 reply."""
        retries = self.settings.max_retries
        for attempt in range(retries + 1):
            stamp = await self._budget.acquire(urgent=not idempotent)
            self.calls[label] += 1
            try:
                response = await self._fetch(method, url, **kwargs)
            except httpx.TransportError as exc:
                failure = self._transport_failure(exc, method, url)
                if (failure.maybe_applied and not idempotent) or _name_unknown(exc):
                    raise failure from None  # a name DNS does not know: no use retrying now
                delay = self._backoff(attempt)
            except _Unreadable as exc:  # an answer came: a POST may have landed
                failure = HaloUnavailable(str(exc), method=method, path=httpx.URL(url).path,
                                          maybe_applied=not idempotent)
                if not idempotent:
                    raise failure from None
                delay = self._backoff(attempt)
            else:
                log.debug("%s %s -> %d", method, _path(response), response.status_code)
                status = response.status_code
                if status == 429:
                    failure = self._rate_limited(response)
                    delay = failure.retry_after or self._backoff(attempt)
                elif status >= 500 or 300 <= status < 400:  # 3xx: maintenance, a sign-in page
                    what = "a redirect, not Halo's answer" if status < 400 else "a server error"
                    failure = HaloUnavailable(
                        f"Halo answered HTTP {status} ({what})",
                        method=method,
                        path=_path(response),
                        status=status,
                        maybe_applied=not idempotent,
                    )
                    if not idempotent:
                        raise failure
                    delay = self._backoff(attempt)
                else:
                    return response
            finally:
                await self._budget.settle_soon(stamp)
            if attempt == retries:
                raise failure
            log.warning("%s; retry %d of %d in %.1f s", failure, attempt + 1, retries, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange, its body read (decoded) up to ``MAX_ANSWER_BYTES``."""
        request = self._http.build_request(method, url, **kwargs)
        response = await self._http.send(request, stream=True)
        try:
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise _Unreadable(f"Halo's answer (HTTP {response.status_code}) is over "
                                      f"{MAX_ANSWER_BYTES // 2**20} MB: not Halo's")
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            raise _Unreadable(f"Halo's answer (HTTP {response.status_code}) cannot be "
                              f"decoded ({type(exc).__name__}: broken compression?)") from None
        finally:
            await response.aclose()
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in _FRAMING]
        return httpx.Response(response.status_code, headers=headers,
                              content=b"".join(chunks), request=request)

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter: half to the whole of base * 2**attempt, capped."""
        ceiling = min(BACKOFF_CAP, self._backoff_base * 2.0**attempt)
        return ceiling * (0.5 + self._jitter() / 2)

    def _transport_failure(
        self, exc: httpx.TransportError, method: str, url: str
    ) -> HaloUnavailable:
        path = httpx.URL(url).path
        sent = not isinstance(exc, _NOT_SENT)
        if isinstance(exc, httpx.TimeoutException):
            what = f"no answer within {self.settings.timeout:g} s ({type(exc).__name__})"
        elif _name_unknown(exc):
            host = httpx.URL(url).host
            key = "auth_url" if self.settings.auth_url and url == self.settings.token_url \
                else "base_url"
            what = f"no such host: {host} is not known to DNS (check halo.{key})"
        else:
            what = f"connection failed ({type(exc).__name__}: {_redact(str(exc), self)})"
        return HaloUnavailable(what, method=method, path=path, maybe_applied=sent)

    def _rate_limited(self, response: httpx.Response) -> HaloUnavailable:
        wait = retry_after(response.headers.get("Retry-After"))
        return HaloUnavailable(
            f"Halo's rate limit was reached (HTTP 429: {_excerpt(response, self)})",
            method=response.request.method,
            path=_path(response),
            status=429,
            retry_after=wait,
        )

    def _rejected(self, response: httpx.Response, message: str) -> HaloRejected:
        excerpt = _excerpt(response, self)
        return HaloRejected(
            f"{message}: {excerpt}" if excerpt else message,
            method=response.request.method,
            path=_path(response),
            status=response.status_code,
            excerpt=excerpt,
        )


# -- helpers (pure) ----------------------------------------------------------------------


_NAME_UNKNOWN = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def _name_unknown(exc: BaseException) -> bool:
    """Whether DNS answered that the host does not exist (not a temporary failure, which
    is EAI_AGAIN): retrying within seconds cannot help, the next pass tries again."""
    seen: BaseException | None = exc
    for _ in range(5):  # httpx.ConnectError <- httpcore.ConnectError <- socket.gaierror
        if seen is None:
            return False
        if isinstance(seen, socket.gaierror):
            return seen.errno in _NAME_UNKNOWN
        seen = seen.__cause__ or seen.__context__
    return False


def decision_reserve(settings: HaloSettings) -> int:
    """Slots of each window that reads leave to decisions (one POST per ``batch_size``
    reads, and one more), so that a backlog's first decision goes within seconds instead
    of waiting a whole window behind the reads. None under a budget of a few requests."""
    limit = settings.requests_per_window
    return limit // settings.batch_size + 1 if limit >= 10 else 0


def _path(response: httpx.Response) -> str:
    return response.request.url.path


def _json(response: httpx.Response) -> Any:
    """The body as JSON; None when it is empty or not JSON (nested too deep included)."""
    if not response.content.strip():
        return None
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _not_halos(response: httpx.Response, what: str) -> HaloUnavailable:
    """A 2xx whose body is not Halo's JSON: a proxy's maintenance or sign-in page, most
    likely, which passes; if it does not, base_url is wrong (``responder check`` says so)."""
    kind = response.headers.get("Content-Type", "no content type").split(";")[0][:60]
    return HaloUnavailable(
        f"Halo's answer is {what} (HTTP {response.status_code}, {kind}, "
        f"{len(response.content)} bytes): a maintenance or sign-in page? is base_url right?",
        method=response.request.method,
        path=_path(response),
        status=response.status_code,
    )


def _redact(text: str, client: HaloClient) -> str:
    """Belt and braces: no secret of ours survives into a message, even if Halo echoes it."""
    for secret in (client.settings.client_secret.get_secret_value(), client._token):
        if secret:
            text = text.replace(secret, "***")
    return text


def _excerpt(response: httpx.Response, client: HaloClient) -> str:
    """A short one-line excerpt of an error body, for humans."""
    text = " ".join(response.text.split())
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1] + "…"
    return _redact(text, client)


def _oauth_error(response: httpx.Response) -> str:
    """The OAuth ``error`` code (e.g. ``invalid_client``), never the rest of the body."""
    data = _json(response)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str) and error.replace("_", "").isalnum() and len(error) <= 40:
        return error
    return ""


def _expires_in(reply: dict[str, Any]) -> float:
    try:
        value = float(reply.get("expires_in") or DEFAULT_EXPIRES_IN)
    except (TypeError, ValueError):
        return DEFAULT_EXPIRES_IN
    return value if value > 0 else DEFAULT_EXPIRES_IN


def _submitted_records(data: Any, submissions: Sequence[Submission]) -> list[Approver] | None:
    """Halo's records for what we submitted, if the reply is a list of them; else None."""
    if not isinstance(data, list):
        return None
    wanted = {(s.ticket_id, s.seq) for s in submissions}
    records = []
    for item in data:
        if not isinstance(item, dict) or not {"ticket_id", "seq", "result"} <= item.keys():
            return None
        try:
            key = (int(item["ticket_id"]), int(item["seq"]))
        except (TypeError, ValueError, OverflowError):
            return None
        if key in wanted:
            try:
                records.append(approver_from_json(item))
            except Malformed:  # then the ticket is re-read, as when no records came
                return None
    return records or None
