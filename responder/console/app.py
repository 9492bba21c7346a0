"""The console's web application (Starlette): routes, sign-in, forms, security headers.

    GET  /                   overview                 GET  /signin   the sign-in form
    GET  /messages           the list, filtered        POST /signin   sign in
    GET  /messages/{key}     one message               POST /signout  sign out
    POST /actions/{release|retry|resend}               GET  /static/console.css

Every page but the sign-in form needs a session (else: a redirect to sign in); every
POST needs the form's CSRF token; nothing changes state on GET. Templates autoescape,
and the Content-Security-Policy allows our own stylesheet and nothing else: no script
at all, so the console works the same with JavaScript off.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import python_multipart  # noqa: F401  Starlette parses forms with it: missing, fail at start
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from responder.config import Settings, WebSettings
from responder.console import actions, views
from responder.console.auth import Sessions, Throttle, password_matches, same
from responder.console.chart import COLOURS, stacked
from responder.metrics import Metrics

log = logging.getLogger("responder")

HERE = Path(__file__).parent
SESSION_COOKIE = "responder_session"
SIGNIN_COOKIE = "responder_signin"  # the sign-in form's own CSRF token (before a session)
HASH_CHECKS = 2  # password checks running at once, all clients together
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FLASHES = {  # what a redirect after an action may say (a fixed set: no text from the URL)
    "released": "Released: it is back in the mailbox and the next pass takes it as "
                "authenticated. This page refreshes until it is done.",
    "retried": "Put back for the next pass. This page refreshes until it is done.",
    "waiting": "It is still in the mailbox: the service tries it again on its next pass.",
    "processed": "Put back, and the pass has processed it again: see below.",
    "resent": "The answer was sent again.",
    "failed": "That did not work; the reason is in the list of admin actions below.",
}


@dataclass
class Console:
    """The state the pages read: the instances (replaced on a config reload), metrics."""

    instances: Mapping[str, Settings]
    web: WebSettings
    wiring: actions.Wiring  # builds the mailbox and the sender an action needs
    metrics: Metrics | None = None
    sessions: Sessions = field(init=False)
    throttle: Throttle = field(default_factory=Throttle)
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(HASH_CHECKS))

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.web.session_minutes)

    def reload(self, instances: Mapping[str, Settings]) -> int:
        """A reloaded config's instances and password. A changed password signs everyone
        out: whoever knew only the old one (often the reason to change it) must not stay
        signed in on a session it opened. Returns how many sessions ended."""
        web = next(iter(instances.values())).web
        changed = web.password_hash != self.web.password_hash
        self.instances, self.web = instances, web
        self.sessions.minutes = web.session_minutes  # for sessions started from now on
        if not changed:
            return 0
        ended = self.sessions.end_all()
        log.info("console password changed: %d session%s signed out", ended,
                 "" if ended == 1 else "s")
        return ended


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "pages"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["urlkey"] = lambda key: quote(str(key), safe="")
    return env


Handler = Callable[[Request], Awaitable[Response]]


def create_app(console: Console) -> Starlette:
    routes = [
        Route("/", overview),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/messages", message_list),
        Route("/messages/{key:path}", message),
        Route("/actions/{action}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    app.state.env = _environment()
    return app


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = getattr(request.state, "session", None)
    env: Environment = request.app.state.env
    html = env.get_template(name).render(session=session, path=request.url.path, **context)
    return HTMLResponse(html, status)


def refused(request: Request) -> Response:
    return page(request, "error.html", 403, title="Refused",
                message="This form is out of date or was not sent from this console (no "
                        "valid CSRF token). Nothing was changed. Go back, reload the page "
                        "and try again.")


def signed_in(handler: Handler) -> Handler:
    """Signed-out requests go to the sign-in page; a POST needs the session's CSRF token."""

    async def guarded(request: Request) -> Response:
        session = _console(request).sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/signin?" + urlencode({"next": target}), 303)
        request.state.session = session
        if request.method == "POST":
            form = await request.form()
            if not same(str(form.get("csrf", "")), session.csrf):
                return refused(request)
            request.state.form = form
        return await handler(request)

    return guarded


async def signin_form(request: Request, error: str = "", status: int = 200,
                      next: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    target = next if next is not None else request.query_params.get("next", "/")
    response = page(request, "signin.html", status, csrf=token, error=error,
                    next=_safe_next(target))
    _set_cookie(response, request, SIGNIN_COOKIE, token, 600, "/signin")
    return response


async def signin(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    target = _safe_next(str(form.get("next", "/")))
    if not same(str(form.get("csrf", "")), request.cookies.get(SIGNIN_COOKIE, "-")):
        return await signin_form(request, "The form expired; please sign in again.", 403,
                                 target)
    name = " ".join(str(form.get("name", "")).split())[:64]
    password = str(form.get("password", ""))[:1024]
    client = request.client.host if request.client else "?"
    wait = console.throttle.begin(client)  # counted as a failure from now until it succeeds
    if wait is None:
        return await signin_form(request, "A sign-in from your network is being checked: "
                                 "wait a few seconds and try again.", 429, target)
    ok = False
    try:
        await asyncio.sleep(wait)
        ok = bool(name) and await _checked(console, password)
    finally:
        console.throttle.end(client, ok)
    if not ok:
        log.warning("console: failed sign-in from %s", client)
        why = "Wrong password." if name else "Your name is needed for the audit trail."
        return await signin_form(request, why, 401, target)
    who = f"{name} ({client})"
    token = console.sessions.start(who)
    log.info("console: %s signed in", who)
    response = RedirectResponse(target, 303)
    _set_cookie(response, request, SESSION_COOKIE, token, console.web.session_minutes * 60)
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


async def _checked(console: Console, password: str) -> bool:
    """Whether the password is right; at most ``HASH_CHECKS`` argon2 checks run at once
    (each takes tens of MB and a core for a moment), whoever asks."""
    hashed = console.web.password_hash  # `run` read it at start (require_secrets)
    stored = hashed.get_secret_value() if hashed is not None else ""
    async with console.checks:
        return await asyncio.to_thread(password_matches, stored, password)


@signed_in
async def signout(request: Request) -> Response:
    _console(request).sessions.end(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@signed_in
async def overview(request: Request) -> Response:
    console = _console(request)
    data = await asyncio.to_thread(views.overview, console.instances, console.metrics)
    return page(request, "overview.html", data=data, chart=stacked(data.days),
                colours=COLOURS, groups=list(views.GROUPS))


def _filters(request: Request) -> views.Filters:
    q = request.query_params
    ticket = q.get("ticket", "").strip()
    return views.Filters(
        outcome=q.get("outcome", "") if q.get("outcome") in views.OUTCOMES else "",
        instance=q.get("instance", ""),
        sender=q.get("sender", "").strip()[:200],
        ticket=int(ticket) if ticket.isdigit() and len(ticket) < 12 else None,
    )


@signed_in
async def message_list(request: Request) -> Response:
    console, filters = _console(request), _filters(request)
    number = request.query_params.get("page", "")
    found = await asyncio.to_thread(views.messages, console.instances, filters,
                                    min(int(number), 10_000) if number.isdigit() else 0)
    base = {k: v for k, v in (("outcome", filters.outcome), ("instance", filters.instance),
                              ("sender", filters.sender),
                              ("ticket", str(filters.ticket or ""))) if v}
    return page(request, "messages.html", found=found, filters=filters,
                outcomes=views.OUTCOMES, instances=list(console.instances),
                query=lambda n: urlencode({**base, "page": n}))


@signed_in
async def message(request: Request) -> Response:
    console = _console(request)
    key = request.path_params["key"]
    instance = request.query_params.get("instance", "")
    detail = await asyncio.to_thread(views.find, console.instances, key, instance)
    if detail is None:
        return page(request, "error.html", 404, title="Not found",
                    message="No message with that key in any ledger.")
    done = request.query_params.get("done", "")
    if done in ("released", "retried") and not detail.refreshing:
        done = "processed"
    flash = FLASHES.get(done)
    return page(request, "message.html", d=detail, flash=flash,
                multiple=len(console.instances) > 1)


@signed_in
async def act(request: Request) -> Response:
    form: FormData = request.state.form
    action = request.path_params["action"]
    key, instance = str(form.get("key", "")), str(form.get("instance", ""))
    console = _console(request)
    settings = console.instances.get(instance)
    if settings is None or action not in ("release", "retry", "resend"):
        return page(request, "error.html", 404, title="Not found",
                    message="No such message or action.")
    who = request.state.session.who
    if action == "release":
        done = await actions.release(console.wiring, settings, key, who)
        flash = "released" if done.ok else "failed"
    elif action == "retry":
        done = await actions.retry(console.wiring, settings, key, who)
        flash = {"replayed": "retried", "in-progress": "waiting"}.get(done.status, "failed")
    else:
        answer = str(form.get("answer", ""))
        done = await actions.resend(console.wiring, settings, key,
                                    int(answer) if answer.isdigit() else -1, who)
        flash = "resent" if done.ok else "failed"
    query = urlencode({"instance": instance, "done": flash})
    return RedirectResponse(f"/messages/{quote(key, safe='')}?{query}", 303)


def with_security_headers(app: ASGIApp) -> ASGIApp:
    """Add the CSP and friends to every response, errors and static files included."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in {h.lower() for h in HEADERS}]
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, sending)

    return wrapped


def _secure(request: Request) -> bool:
    """Served over TLS, or behind a trusted proxy that says so (X-Forwarded-Proto)."""
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int,
                path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True,
                        samesite="strict", secure=_secure(request))


def _safe_next(target: str) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
