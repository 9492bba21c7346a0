"""A stand-in Halo over real HTTP: the demo, the tests and the chaos scripts run against it.

No real Halo is reachable from the places this project is built and tried, so this
module follows the facts in ``shared/halo`` closely enough that the Halo client, the
demo and the end-to-end tests exercise real sockets, real timeouts and real 4xx/5xx
replies. Stdlib only: a ``ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread.

    POST /auth/token (or /token)        form-encoded client credentials, ?tenant= accepted
    GET  /api/tickets/{id}              the ticket with its ``approvers``
    GET  /api/TicketApproval?ticket_id= the ticket's approval entries
    POST /api/TicketApproval            a JSON array of decisions, all-or-nothing
    GET  /api/authinfo                  ``auth_url`` and ``tenant_id`` (discovery)

Paths match case-insensitively, as they do on Halo (ASP.NET). Every request is kept in
``requests``; ``faults`` switches latency, failures, dropped connections, a rate limit,
token expiry and hostile answers (``HOSTILE``: a redirect, a login page, JSON nested too
deep, a broken gzip body, a gzip bomb, another ticket's id, a text ``result``, an entry
without ``seq``) on and off while it runs. ``behaviour`` (a ``Behaviour``; presets by
name in ``BEHAVIOURS``) chooses among the plausible answers where ``shared/halo`` says
Halo's behaviour is unconfirmed: what the POST answers, a batch applied in part, decided
entries moved to ``approvers_history``, decided entries refused, 403 on some tickets,
scope and tenant enforced, several approval steps. Run ``python -m responder.halo.standin --port
8080 --seed demo`` to try it by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gzip
import json
import logging
import random
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from responder.config import HaloSettings

log = logging.getLogger("responder.standin")

RATE_LIMIT_TEXT = "Rate Limit Reached - {requests} Requests per rolling {window} window"
_DECIDED_STATUS = {1: "approved", 2: "rejected"}


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in saw it (status 0: the connection was dropped)."""

    method: str
    path: str  # as sent, without the query string
    query: dict[str, str]
    status: int
    body: Any  # the JSON body, the token form (client_secret masked), or None
    at: float = field(default_factory=time.monotonic)  # time.monotonic() when it arrived

    def matches(self, method: str, path: str) -> bool:
        return self.method == method.upper() and _norm(self.path) == _norm(path)


@dataclass
class _Failure:
    status: int
    path_prefix: str | None

    def applies(self, path: str) -> bool:
        return self.path_prefix is None or _norm(path).startswith(_norm(self.path_prefix))


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any = None  # JSON-serialisable, a str (sent as text), bytes (as they are), or None
    headers: dict[str, str] = field(default_factory=dict)


# Answers no well-behaved Halo gives, but a proxy in front of it, a maintenance window or
# an attacker in the path might: ``Faults.hostile_next`` sends them in place of the real one.
Hostile = Literal["redirect", "login-page", "deep-json", "broken-gzip", "gzip-bomb",
                  "other-ticket", "result-text", "no-seq"]
HOSTILE: tuple[Hostile, ...] = ("redirect", "login-page", "deep-json", "broken-gzip",
                                "gzip-bomb", "other-ticket", "result-text", "no-seq")
_GZIP = {"Content-Type": "application/json; charset=utf-8", "Content-Encoding": "gzip"}


@functools.cache
def _bomb() -> bytes:
    """16 MB of spaces in 16 KB of gzip: twice what the client reads of an answer."""
    return gzip.compress(b" " * (16 * 2**20), compresslevel=9)


def _hostile(kind: Hostile, reply: _Reply) -> _Reply:
    """``reply`` turned into the hostile answer ``kind``; the three that change a ticket
    (its id, an entry's ``result`` or ``seq``) keep the rest of it as it was."""
    if kind == "redirect":
        return _Reply(302, "", {"Location": "https://status.example/maintenance"})
    if kind == "login-page":
        page = b"<!DOCTYPE html><html><title>Sign in</title><form>...</form></html>"
        return _Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})
    if kind == "deep-json":
        return _Reply(200, b'{"id": 1, "approvers": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
                      {"Content-Type": "application/json"})
    if kind == "broken-gzip":
        return _Reply(200, gzip.compress(b"{}")[:10] + b"\xff" * 64, _GZIP)
    if kind == "gzip-bomb":
        return _Reply(200, _bomb(), _GZIP)
    if not isinstance(reply.body, dict) or reply.status != 200:
        return reply
    ticket = json.loads(json.dumps(reply.body))  # a deep copy
    entry = (ticket.get("approvers") or [{}])[0]
    if kind == "other-ticket":
        ticket["id"] = ticket["id"] + 1
    elif kind == "result-text":
        entry["result"] = "approved"
    else:
        entry.pop("seq", None)
    return _Reply(200, ticket, reply.headers)


PostAnswer = Literal["records", "empty", "object"]


@dataclass
class Behaviour:
    """One choice for each of Halo's unconfirmed behaviours (``shared/halo``).

    The default is the kindest reading; each field is a stricter one that real Halo may
    turn out to have, so the responder is tested under every one of them.
    """

    # What POST /api/TicketApproval answers: the records, an empty body, or ``{}``.
    post_answer: PostAnswer = "records"
    # A batch has its first k entries applied, then is refused with 400 (None: all or none).
    batch_refused_after: int | None = None
    # Decided entries leave ``approvers`` for ``approvers_history``.
    history: bool = False
    # A POST for an entry already decided is refused with 400 (else ignored, answered 200).
    refuse_decided: bool = False
    # Tickets whose read and decisions are refused with 403 (the agent may not see them).
    forbidden: frozenset[int] = frozenset()
    # Token scope enforced (reads need read:tickets or edit:tickets, decisions edit:tickets,
    # ``all`` covers both); and, when set, the token request must name this tenant.
    enforce_scope: bool = False
    tenant: str | None = None
    # Only entries of the ticket's current step (the lowest with entries pending) may be
    # decided; a decision for a later step is refused with 400.
    steps: bool = False


BEHAVIOURS: dict[str, Behaviour] = {
    "default": Behaviour(),
    "post-empty": Behaviour(post_answer="empty"),
    "post-object": Behaviour(post_answer="object"),
    "batch-partial": Behaviour(batch_refused_after=1),
    "history": Behaviour(history=True),
    "refuse-decided": Behaviour(refuse_decided=True),
    "steps": Behaviour(steps=True),
    "scoped": Behaviour(enforce_scope=True, tenant="standin"),
    # Everything strict at once: the most likely shape of the real thing is in here.
    "strict": Behaviour(post_answer="empty", batch_refused_after=1, history=True,
                        refuse_decided=True, enforce_scope=True, steps=True),
}


class Faults:
    """Switches for misbehaviour; safe to flip from the test thread while requests run.

    ``latency`` (seconds added to every request) and ``error_rate`` (fraction of
    requests answered 500, drawn from a seeded RNG so a run can be replayed) are plain
    attributes; the rest are methods.
    """

    def __init__(self, seed: int | str = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.latency = 0.0
        self.error_rate = 0.0
        # Seconds to wait after a decision POST is applied, before answering: the window
        # in which a client can be killed with Halo changed and its ledger not yet.
        self.delay_after_apply = 0.0
        self.delay_before_apply = 0.0  # ... and before it is applied: killed, nothing changed
        self._failures: list[_Failure] = []
        self._drops: list[_Failure] = []
        self._rate: tuple[int, float, str | None] | None = None
        self._hostile: list[tuple[Hostile, _Failure]] = []
        self._admitted: deque[float] = deque()
        self._token_epoch = 0

    def fail_next(self, status: int, times: int = 1, path_prefix: str | None = None) -> None:
        """Answer the next ``times`` requests (under ``path_prefix``) with ``status``."""
        with self._lock:
            self._failures.extend(_Failure(status, path_prefix) for _ in range(times))

    def drop_next(self, times: int = 1, path_prefix: str | None = None) -> None:
        """Close the connection on the next ``times`` requests without any answer."""
        with self._lock:
            self._drops.extend(_Failure(0, path_prefix) for _ in range(times))

    def hostile_next(self, kind: Hostile, times: int = 1, path_prefix: str | None = None
                     ) -> None:
        """Answer the next ``times`` requests (under ``path_prefix``) with the hostile
        answer ``kind`` (see ``HOSTILE``) instead of the real one."""
        with self._lock:
            self._hostile.extend((kind, _Failure(200, path_prefix)) for _ in range(times))

    def _take_hostile(self, path: str) -> Hostile | None:
        with self._lock:
            hit = next((h for h in self._hostile if h[1].applies(path)), None)
            if hit is None:
                return None
            self._hostile.remove(hit)
            return hit[0]

    def rate_limit(
        self, requests: int | None, window: float = 300.0, *, retry_after: float | None = None
    ) -> None:
        """Answer 429 beyond ``requests`` per rolling ``window`` seconds (None: no limit).

        Halo sends no Retry-After that anyone has seen; ``retry_after`` adds one.
        """
        with self._lock:
            self._admitted.clear()
            if requests is None:
                self._rate = None
            else:
                header = None if retry_after is None else f"{retry_after:g}"
                self._rate = (requests, window, header)

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid (the next API call gets 401)."""
        with self._lock:
            self._token_epoch += 1

    def clear(self) -> None:
        """Back to a well-behaved Halo (issued tokens stay as they are)."""
        with self._lock:
            self.latency = 0.0
            self.error_rate = 0.0
            self.delay_after_apply = 0.0
            self.delay_before_apply = 0.0
            self._failures.clear()
            self._drops.clear()
            self._hostile.clear()
            self._rate = None
            self._admitted.clear()

    @property
    def token_epoch(self) -> int:
        return self._token_epoch

    def _take(self, path: str) -> _Reply | None:
        """The fault for this request, if any: a drop is status 0."""
        with self._lock:
            for queue in (self._drops, self._failures):
                hit = next((f for f in queue if f.applies(path)), None)
                if hit is not None:
                    queue.remove(hit)
                    return _Reply(hit.status, f"stand-in fault: HTTP {hit.status}")
            limited = self._over_rate_limit()
            if limited is not None:
                return limited
            if self.error_rate and self._rng.random() < self.error_rate:
                return _Reply(500, "stand-in fault: random server error")
        return None

    def _over_rate_limit(self) -> _Reply | None:
        if self._rate is None:
            return None
        limit, window, retry_after = self._rate
        now = time.monotonic()
        while self._admitted and self._admitted[0] <= now - window:
            self._admitted.popleft()
        if len(self._admitted) < limit:
            self._admitted.append(now)
            return None
        span = f"{window / 60:g} minute" if window >= 60 else f"{window:g} second"
        text = RATE_LIMIT_TEXT.format(requests=limit, window=span)
        return _Reply(429, text, {"Retry-After": retry_after} if retry_after else {})


@dataclass
class _Token:
    epoch: int
    expires_at: float
    scope: str = "all"

    def allows(self, needed: str) -> bool:
        granted = set(self.scope.split())
        return "all" in granted or needed in granted or (
            needed == "read:tickets" and "edit:tickets" in granted)


class StandinHalo:
    """A small Halo on 127.0.0.1: start it, add tickets, point a client at ``base_url``."""

    def __init__(
        self,
        *,
        client_id: str = "demo-client",
        client_secret: str = "demo-secret",
        token_lifetime: float = 3600.0,
        post_returns_records: bool = True,
        port: int = 0,
        seed: int | str = 0,
        behaviour: Behaviour | str | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        if isinstance(behaviour, str):
            behaviour = dataclasses.replace(BEHAVIOURS[behaviour])  # a copy: presets stay put
        # The spec documents no body for the POST; False answers with an empty 200.
        self.behaviour = behaviour or Behaviour(
            post_answer="records" if post_returns_records else "empty")
        self.faults = Faults(seed)
        self.requests: list[Recorded] = []
        self.decisions: list[dict[str, Any]] = []  # every decision applied, in order
        self.duplicates: list[dict[str, Any]] = []  # decisions sent for a decided approver
        self.issued_tokens: list[str] = []
        self._port = port
        self._lock = threading.RLock()
        self._tickets: dict[int, dict[str, Any]] = {}
        self._tokens: dict[str, _Token] = {}
        self._user_ids: dict[str, int] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> StandinHalo:
        """Listen (port 0 picks a free one); connections are accepted once this returns."""
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="standin-halo",
            daemon=True,
        )
        self._thread.start()
        log.debug("stand-in Halo listening at %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, so calls now fail for real."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StandinHalo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in Halo is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> HaloSettings:
        """HaloSettings pointing at this stand-in with its credentials (``overrides`` win)."""
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        return HaloSettings.model_validate(values | overrides)

    # -- data ----------------------------------------------------------------------

    def add_ticket(self, ticket_id: int, summary: str, approvers: list[dict[str, Any]]) -> None:
        """Add (or replace) a ticket; each approver needs emailaddress, seq and actionnumber.

        Other FaultApproval fields get Halo-like defaults (``result`` null = pending);
        any field given in the dict wins.
        """
        entries = [self._approver_entry(ticket_id, given) for given in approvers]
        seqs = [e["seq"] for e in entries]
        if len(set(seqs)) != len(seqs):
            raise ValueError(f"ticket {ticket_id}: approver seq values must be unique")
        with self._lock:
            self._tickets[ticket_id] = {"id": ticket_id, "summary": summary, "approvers": entries}

    def _approver_entry(self, ticket_id: int, given: dict[str, Any]) -> dict[str, Any]:
        missing = {"emailaddress", "seq", "actionnumber"} - given.keys()
        if missing:
            raise ValueError(f"approver for ticket {ticket_id} lacks {sorted(missing)}")
        email = str(given["emailaddress"])
        with self._lock:
            user_id = self._user_ids.setdefault(email.lower(), 23 + len(self._user_ids))
        entry: dict[str, Any] = {
            "ticket_id": ticket_id,
            "seq": given["seq"],
            "actionnumber": given["actionnumber"],
            "name": given.get("name") or email.split("@")[0].title(),
            "emailaddress": email,
            "user_id": user_id,
            "agent_id": None,
            "cab_id": None,
            "type": 0,
            "result": None,
            "dateapproved": None,
            "note": None,
            "approver_note": None,
            "token": None,
            "is_mandatory": True,
            "step_id": 1,
            "step_name": "Approval",
            "approval_process_id": 1,
        }
        return entry | given

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as GET /api/tickets/{id} shows it (a copy)."""
        with self._lock:
            return _ticket_json(self._tickets[ticket_id])

    def approver(self, ticket_id: int, seq: int) -> dict[str, Any]:
        """One approver entry's current state (a copy); KeyError if there is none."""
        with self._lock:
            for entry in self._tickets[ticket_id]["approvers"]:
                if entry["seq"] == seq:
                    return dict(entry)
        raise KeyError(f"ticket {ticket_id} has no approver seq {seq}")

    @property
    def duplicate_decisions(self) -> int:
        """How often a decision arrived for an approver already decided (should stay 0)."""
        with self._lock:
            return len(self.duplicates)

    def count(self, method: str, path: str) -> int:
        """How many requests of ``method`` to ``path`` arrived (case-insensitive, no query)."""
        with self._lock:
            return sum(1 for r in self.requests if r.matches(method, path))

    # -- the HTTP side (called from handler threads) ---------------------------------

    def _record(self, entry: Recorded) -> None:
        with self._lock:
            self.requests.append(entry)

    def _route(
        self, method: str, path: str, query: dict[str, str], auth: str, raw: bytes
    ) -> _Reply:
        key = _norm(path)
        if method == "POST" and key in ("/auth/token", "/token"):
            return self._issue_token(raw, query)
        if method == "GET" and key == "/api/authinfo":
            return _Reply(200, {"auth_url": self.base_url + "/auth", "tenant_id": "standin"})
        if not key.startswith("/api/"):
            return _Reply(404, "not found")
        token = self._token_valid(auth)
        if token is None:
            return _Reply(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        needed = "edit:tickets" if method == "POST" else "read:tickets"
        if self.behaviour.enforce_scope and not token.allows(needed):
            return _Reply(403, f"the token's scope does not allow {needed}")
        if key.startswith("/api/tickets/") and method == "GET":
            return self._get_ticket(key.removeprefix("/api/tickets/"))
        if key == "/api/ticketapproval" and method == "GET":
            return self._list_approvals(query)
        if key == "/api/ticketapproval" and method == "POST":
            return self._post_approvals(raw)
        return _Reply(404, "not found")

    def _issue_token(self, raw: bytes, query: dict[str, str]) -> _Reply:
        form = dict(parse_qsl(raw.decode("utf-8", "replace")))
        tenant = self.behaviour.tenant
        if tenant is not None and query.get("tenant") != tenant:
            return _Reply(400, {"error": "invalid_request"})
        if form.get("grant_type") != "client_credentials":
            return _Reply(400, {"error": "unsupported_grant_type"})
        ok_id = secrets.compare_digest(form.get("client_id", ""), self.client_id)
        ok_secret = secrets.compare_digest(form.get("client_secret", ""), self.client_secret)
        if not (ok_id and ok_secret):
            return _Reply(401, {"error": "invalid_client"})
        token = "standin-" + secrets.token_urlsafe(24)
        with self._lock:
            expires_at = time.monotonic() + self.token_lifetime
            scope = form.get("scope") or "all"
            self._tokens[token] = _Token(self.faults.token_epoch, expires_at, scope)
            self.issued_tokens.append(token)
        reply = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": round(self.token_lifetime),
            "refresh_token": secrets.token_urlsafe(16),
            "scope": form.get("scope") or "all",
        }
        return _Reply(200, reply, {"Cache-Control": "no-store"})

    def _token_valid(self, auth: str) -> _Token | None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self._lock:
            issued = self._tokens.get(token.strip())
        if (
            issued is not None
            and issued.epoch == self.faults.token_epoch
            and time.monotonic() < issued.expires_at
        ):
            return issued
        return None

    def _get_ticket(self, raw_id: str) -> _Reply:
        if not raw_id.isdigit():
            return _Reply(400, f"invalid ticket id {raw_id!r}")
        if int(raw_id) in self.behaviour.forbidden:
            return _Reply(403, "You do not have permission to view this ticket")
        with self._lock:
            ticket = self._tickets.get(int(raw_id))
            return (
                _Reply(404, "ticket not found")
                if ticket is None
                else _Reply(200, _ticket_json(ticket, history=self.behaviour.history))
            )

    def _list_approvals(self, query: dict[str, str]) -> _Reply:
        wanted = query.get("ticket_id")
        with self._lock:
            entries = [
                dict(entry)
                for ticket_id, ticket in self._tickets.items()
                if wanted is None or str(ticket_id) == wanted
                for entry in ticket["approvers"]
            ]
        return _Reply(200, entries)

    def _post_approvals(self, raw: bytes) -> _Reply:
        try:
            items = json.loads(raw or b"null")
        except ValueError:
            return _Reply(400, "request body is not valid JSON")
        if not isinstance(items, list):
            return _Reply(400, "expected a JSON array of FaultApproval")
        if self.faults.delay_before_apply:
            time.sleep(self.faults.delay_before_apply)
        behaviour = self.behaviour
        with self._lock:
            targets = []
            for index, item in enumerate(items):
                target = self._validate(item)
                if isinstance(target, str):
                    return _Reply(400, f"item {index}: {target}")
                targets.append((target, item))
            cut = behaviour.batch_refused_after
            if cut is not None and len(targets) > cut:
                for entry, item in targets[:cut]:
                    self._apply(entry, item)
                return _Reply(400, f"item {cut}: the approval could not be saved")
            records = [self._apply(entry, item) for entry, item in targets]
        if self.faults.delay_after_apply:
            time.sleep(self.faults.delay_after_apply)
        answer: Any = {"records": records, "empty": None, "object": {}}[behaviour.post_answer]
        return _Reply(200, answer)

    @property
    def post_returns_records(self) -> bool:
        return self.behaviour.post_answer == "records"

    @post_returns_records.setter
    def post_returns_records(self, value: bool) -> None:
        self.behaviour.post_answer = "records" if value else "empty"

    def _validate(self, item: Any) -> dict[str, Any] | str:
        """The approver entry that ``item`` decides, or what is wrong with it."""
        if not isinstance(item, dict):
            return "expected an object"
        for key in ("ticket_id", "seq", "actionnumber", "result"):
            if not _is_int(item.get(key)):
                return f"{key} is missing or not an integer"
        if item["ticket_id"] in self.behaviour.forbidden:
            return f"ticket {item['ticket_id']} is not visible to this agent"
        ticket = self._tickets.get(item["ticket_id"])
        if ticket is None:
            return f"ticket {item['ticket_id']} not found"
        approvers: list[dict[str, Any]] = ticket["approvers"]
        entry = next((e for e in approvers if e["seq"] == item["seq"]), None)
        if entry is None:
            return f"ticket {item['ticket_id']} has no approval with seq {item['seq']}"
        if entry["actionnumber"] != item["actionnumber"]:
            return f"actionnumber {item['actionnumber']} does not match seq {item['seq']}"
        if item["result"] not in _DECIDED_STATUS:
            return f"result {item['result']} is not 1 (approve) or 2 (reject)"
        if self.behaviour.refuse_decided and (entry["result"] or entry["dateapproved"]):
            return f"approval seq {item['seq']} has already been decided"
        step = _current_step(approvers)
        if self.behaviour.steps and entry.get("step_id") not in (None, step):
            return f"approval seq {item['seq']} is in step {entry['step_id']}, not step {step}"
        return entry

    def _apply(self, entry: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
        if entry["result"]:
            self.duplicates.append(dict(item))
            log.warning(
                "duplicate decision for ticket %s seq %s ignored", entry["ticket_id"], entry["seq"]
            )
            return dict(entry)
        entry["result"] = item["result"]
        entry["dateapproved"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for key in ("note", "approver_note"):
            if isinstance(item.get(key), str):
                entry[key] = item[key]
        self.decisions.append(dict(item))
        return dict(entry)


def _norm(path: str) -> str:
    return path.lower().rstrip("/") or "/"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _current_step(entries: list[dict[str, Any]]) -> int:
    """The lowest step with an entry still pending (the last step once all are decided)."""
    steps = [e.get("step_id") or 1 for e in entries]
    waiting = [e.get("step_id") or 1 for e in entries if not e["result"]]
    return min(waiting) if waiting else max(steps, default=1)


def _ticket_json(ticket: dict[str, Any], *, history: bool = False) -> dict[str, Any]:
    """Halo-like ticket JSON; ``approval_status`` is the stand-in's own simplification:
    0 pending, 1 approved by everyone, 2 rejected by anyone. With ``history``, decided
    entries are shown in ``approvers_history`` only."""
    entries = [dict(e) for e in ticket["approvers"]]
    results = [e["result"] for e in entries]
    status = 2 if 2 in results else 1 if results and all(r == 1 for r in results) else 0
    decided = [e for e in entries if e["result"]] if history else []
    return {
        "id": ticket["id"],
        "summary": ticket["summary"],
        "approvers": [e for e in entries if e not in decided],
        "approvers_history": decided,
        "approval_status": status,
        "approval_process_step": _current_step(entries),
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], halo: StandinHalo
    ) -> None:
        self.halo = halo
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("stand-in Halo: connection from %s ended badly", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx's pool expects
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.halo._lock:
            self.server.halo._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.halo._lock:
            self.server.halo._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        halo = self.server.halo
        arrived = time.monotonic()
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = _recorded_body(split.path, raw)
        if halo.faults.latency > 0:
            time.sleep(halo.faults.latency)
        reply = halo.faults._take(split.path)
        if (reply is not None and reply.status == 0) or not halo.running:
            halo._record(Recorded(method, split.path, query, 0, body, arrived))
            self.close_connection = True  # no answer at all: the client sees a disconnect
            return
        if reply is None:
            try:
                auth = self.headers.get("Authorization") or ""
                reply = halo._route(method, split.path, query, auth, raw)
            except Exception:
                log.exception("stand-in Halo failed on %s %s", method, split.path)
                reply = _Reply(500, "stand-in Halo: internal error")
        hostile = halo.faults._take_hostile(split.path)
        if hostile is not None:
            reply = _hostile(hostile, reply)
        halo._record(Recorded(method, split.path, query, reply.status, body, arrived))
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        if reply.body is None:
            payload, ctype = b"", "application/json"
        elif isinstance(reply.body, bytes):
            payload, ctype = reply.body, "application/octet-stream"
        elif isinstance(reply.body, str):
            payload, ctype = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            payload, ctype = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        self.send_response(reply.status)
        headers = {"Content-Type": ctype, **reply.headers, "Content-Length": str(len(payload))}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("stand-in Halo: " + format, *args)


def _recorded_body(path: str, raw: bytes) -> Any:
    """What ``requests`` keeps of a body: JSON parsed, the token form with its secret masked."""
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if _norm(path).endswith("/token"):
        form = dict(parse_qsl(text))
        if "client_secret" in form:
            form["client_secret"] = "***"
        return form
    try:
        return json.loads(text)
    except ValueError:
        return text


def seed_demo(halo: StandinHalo) -> None:
    """Two tickets waiting for approval, for trying by hand (``responder demo`` seeds its own)."""
    halo.add_ticket(
        1001,
        "New laptop for Dana",
        [
            {
                "emailaddress": "alice@example.com",
                "name": "Alice Approver",
                "seq": 1,
                "actionnumber": 11,
            },
            {"emailaddress": "bob@example.com", "name": "Bob Budget", "seq": 2, "actionnumber": 12},
        ],
    )
    halo.add_ticket(
        1002,
        "Firewall change: open 443 to the staging VPC",
        [
            {
                "emailaddress": "alice@example.com",
                "name": "Alice Approver",
                "seq": 1,
                "actionnumber": 21,
            }
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m responder.halo.standin", description="Run the stand-in Halo until Ctrl-C."
    )
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--seed", choices=["demo", "none"], default="demo", help="tickets to add")
    parser.add_argument("--client-id", default="demo-client")
    parser.add_argument("--client-secret", default="demo-secret")
    parser.add_argument("--behaviour", choices=sorted(BEHAVIOURS), default="default",
                        help="how strict to be where Halo's behaviour is unconfirmed")
    parser.add_argument("--rate-limit", type=int, metavar="N",
                        help="answer 429 beyond N requests per --window seconds")
    parser.add_argument("--window", type=float, default=300.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    halo = StandinHalo(client_id=args.client_id, client_secret=args.client_secret, port=args.port,
                       behaviour=args.behaviour)
    if args.rate_limit:
        halo.faults.rate_limit(args.rate_limit, args.window)
    if args.seed == "demo":
        seed_demo(halo)
    with halo:
        print(f"stand-in Halo at {halo.base_url} (API {halo.base_url}/api)")
        print(f"client_id = {halo.client_id!r}, client_secret = {halo.client_secret!r}")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
