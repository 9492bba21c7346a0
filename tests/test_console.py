"""The review console's rules, over HTTP (httpx's ASGI transport, the real app and ledger):
who gets in, what every response carries, what a form must bring, what the pages read.

The browser story against ``responder run`` is in test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from argon2 import PasswordHasher

from responder.config import ConfigError, Settings, parse_settings
from responder.console.app import Console, create_app, with_security_headers
from responder.console.auth import Sessions, Throttle, hash_password, password_matches
from responder.console.chart import stacked
from responder.console.server import start_console
from responder.console.views import overview
from responder.ledger import FILED, Ledger
from responder.refile import put_back
from responder.service import console_wiring, make_mailbox
from tests.harness import Harness, gmail_reply, text_of
from tests.servers import free_port

PASSWORD = "a long console password"
HASH = hash_password(PASSWORD)
REPO = Path(__file__).resolve().parent.parent


def settings_for(tmp_path: Path, **web: object) -> Settings:
    return parse_settings({
        "halo": {"base_url": "http://127.0.0.1:9", "client_id": "c", "client_secret": "s"},
        "maildir": {"path": str(tmp_path / "Maildir")},
        "smtp": {"host": "127.0.0.1", "port": 9, "tls": "none", "from": "approvals@x.example"},
        "state": {"path": str(tmp_path / "ledger.sqlite3")},
        "web": {"port": 8443, "password_hash": HASH, **web},
    })


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path)


def http(settings: Settings, base_url: str = "http://127.0.0.1:8443") -> httpx.AsyncClient:
    console = Console({"default": settings}, settings.web, console_wiring())
    app = with_security_headers(create_app(console))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with http(settings) as c:
        yield c


def seed(settings: Settings, key: str, **fields: object) -> None:
    ledger = Ledger(settings.state.path)
    try:
        values = {"content_hash": key, "state": FILED, "outcome": "quarantined",
                  "sender": "bob@example.com", "ticket_id": 1234, **fields}
        ledger.record(key, **values)
    finally:
        ledger.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, password: str = PASSWORD,
                  name: str = "Dana") -> int:
    form = await client.get("/signin")
    reply = await client.post("/signin", data={"csrf": csrf_of(form.text), "name": name,
                                         "password": password, "next": "/"})
    return reply.status_code


async def test_signed_out_requests_go_to_sign_in_and_change_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    seed(settings, "<q@x>")
    for path in ("/", "/messages?outcome=failed", "/messages/%3Cq%40x%3E"):
        reply = await client.get(path)
        assert reply.status_code == 303
        assert reply.headers["location"].startswith("/signin?next=")
    reply = await client.post("/actions/release", data={"key": "<q@x>", "instance": "default"})
    assert reply.status_code == 303 and reply.headers["location"].startswith("/signin")
    assert Ledger(settings.state.path).actions("<q@x>") == []


async def test_sign_in_sets_a_strict_httponly_cookie_and_a_wrong_password_does_not(
    client: httpx.AsyncClient,
) -> None:
    assert await sign_in(client, "wrong password") == 401
    assert "responder_session" not in client.cookies
    form = await client.get("/signin")
    reply = await client.post("/signin", data={"csrf": csrf_of(form.text), "name": "Dana",
                                         "password": PASSWORD, "next": "//evil.example/x"})
    assert reply.status_code == 303 and reply.headers["location"] == "/"  # no open redirect
    cookie = reply.headers["set-cookie"].lower()
    assert "responder_session=" in cookie and "httponly" in cookie
    assert "samesite=strict" in cookie and "secure" not in cookie  # plain HTTP here
    assert (await client.get("/")).status_code == 200


async def test_over_tls_the_cookie_is_secure(settings: Settings) -> None:
    async with http(settings, "https://console.example") as c:
        assert await sign_in(c) == 303
        assert "; secure" in (await c.get("/signin")).headers["set-cookie"].lower()


async def test_sign_in_needs_the_forms_own_token(client: httpx.AsyncClient) -> None:
    await client.get("/signin")
    reply = await client.post("/signin", data={"csrf": "guessed", "name": "Dana",
                                         "password": PASSWORD})
    assert reply.status_code == 403 and "responder_session" not in client.cookies


async def test_failed_sign_ins_slow_the_network_down_but_the_right_password_gets_in(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(5):
        assert await sign_in(client, "guess") == 401
    started = time.monotonic()
    assert await sign_in(client) == 303
    assert time.monotonic() - started >= 1.0  # the sixth attempt waited first
    assert "responder_session" in client.cookies


def test_throttle_counts_by_network_slows_down_boundedly_and_forgets() -> None:
    now = [0.0]
    throttle = Throttle(free=2, longest=8, window=60, clock=lambda: now[0])
    waits = []
    for host in ("192.0.2.1", "192.0.2.77", "192.0.2.200", "192.0.2.9", "192.0.2.9",
                 "192.0.2.9", "192.0.2.9"):
        waits.append(throttle.begin(host))
        assert throttle.begin("192.0.2.254") is None  # one attempt of a network at a time
        throttle.end(host, succeeded=False)
    assert waits == [0, 0, 1, 2, 4, 8, 8]  # one /24; growing, bounded
    assert throttle.delay("198.51.100.1") == 0  # another network is not slowed down
    assert throttle.delay("2001:db8:1:2::1") == 0
    for host in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::3"):
        throttle.end(host, succeeded=throttle.begin(host) is None)
    assert throttle.delay("2001:db8:1:2:abcd::1") == 2  # one /64
    assert throttle.delay("2001:db8:1:3::1") == 0
    now[0] = 61
    assert throttle.delay("192.0.2.9") == 0  # the window has passed
    throttle.begin("192.0.2.9")
    throttle.end("192.0.2.9", succeeded=True)
    assert throttle.delay("192.0.2.1") == 0


# -- the sign-in under attack, against the console served by uvicorn ----------------------


@contextlib.asynccontextmanager
async def running_console(tmp_path: Path, password_hash: str = HASH) -> AsyncIterator[str]:
    """The console as ``responder run`` serves it (uvicorn on a real port); its URL."""
    settings = settings_for(tmp_path, port=free_port(), host="127.0.0.1",
                            password_hash=password_hash)
    console = await start_console({"default": settings}, None, console_wiring())
    try:
        yield console.url.rstrip("/")
    finally:
        await console.stop()


def from_address(url: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 on Linux)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, base_url=url, timeout=60,
                             limits=httpx.Limits(max_connections=100))


async def test_forty_guesses_sent_at_once_from_one_client_are_not_all_checked(
    tmp_path: Path,
) -> None:
    async with running_console(tmp_path) as url, from_address(url) as c:
        token = csrf_of((await c.get("/signin")).text)

        async def guess(n: int) -> int:
            reply = await c.post("/signin", data={"csrf": token, "name": "Mallory",
                                                  "password": f"guess {n}", "next": "/"})
            return reply.status_code

        codes = await asyncio.gather(*(guess(n) for n in range(40)))

    assert sorted(set(codes)) == [401, 429]
    assert codes.count(401) <= 5, codes  # checked: the rest refused while one was checked
    assert codes.count(429) >= 35


async def test_failures_from_many_networks_never_lock_out_the_right_password(
    tmp_path: Path,
) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024).hash(PASSWORD)  # a quick test
    async with running_console(tmp_path, cheap) as url:
        async def fail_from(address: str) -> int:
            async with from_address(url, address) as c:
                return await sign_in(c, "guess")

        # 60 networks at once, a failure each (the old overall limit, 50, locked all out)
        codes = await asyncio.gather(*(fail_from(f"127.0.{n + 1}.1") for n in range(60)))
        assert codes == [401] * 60
        for n in range(6):  # six addresses of one /24: they count together
            async with from_address(url, f"127.0.100.{n + 1}") as c:
                assert await sign_in(c, "guess") == 401
        async with from_address(url, "127.0.100.99") as c:
            started = time.monotonic()
            assert await sign_in(c, "guess") == 401
            slowed = time.monotonic() - started
        async with from_address(url, "127.0.200.1") as c:
            started = time.monotonic()
            assert await sign_in(c) == 303
            fresh = time.monotonic() - started
            assert (await c.get("/")).status_code == 200
    assert slowed >= 2.0  # the network's 7th failure waited 2 s
    assert fresh < 1.0  # a new network is not slowed by anyone else's failures


def test_sessions_end_after_their_minutes() -> None:
    now = [0.0]
    sessions = Sessions(minutes=1, clock=lambda: now[0])
    token = sessions.start("Dana")
    assert sessions.get(token) is not None and sessions.get("forged") is None
    now[0] = 61
    assert sessions.get(token) is None


NEW_PASSWORD = "the new console password"


def test_a_reloaded_session_length_applies_to_new_sessions(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    console = Console({"default": settings}, settings.web, console_wiring())
    clock = [0.0]
    console.sessions.clock = lambda: clock[0]
    kept = console.sessions.start("admin")
    shorter = settings_for(tmp_path, session_minutes=5)
    assert console.reload({"default": shorter}) == 0  # the same password: nobody signed out
    fresh = console.sessions.start("admin")
    clock[0] = 6 * 60.0
    assert console.sessions.get(fresh) is None  # 5 minutes, as the reloaded config says
    assert console.sessions.get(kept) is not None


async def test_a_changed_password_on_reload_signs_everyone_out(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    console = Console({"default": settings}, settings.web, console_wiring())
    app = with_security_headers(create_app(console))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1:8443") as client:
        assert await sign_in(client) == 303
        assert console.reload({"default": settings_for(tmp_path)}) == 0  # the same password
        assert (await client.get("/")).status_code == 200

        changed = settings_for(tmp_path, password_hash=hash_password(NEW_PASSWORD))
        assert console.reload({"default": changed}) == 1

        page = await client.get("/")
        assert page.status_code == 303 and page.headers["location"].startswith("/signin")
        assert await sign_in(client) == 401
        assert await sign_in(client, NEW_PASSWORD) == 303


def test_a_password_changed_and_reloaded_with_sighup_signs_out_open_sessions(
    harness: Harness, tmp_path: Path
) -> None:
    """Against ``responder run``: the admin changes [web] password_hash and sends SIGHUP,
    as the README says; a session opened with the old password is over."""
    port = free_port()
    harness.overrides = {"web": {"port": port, "password_hash": HASH}}
    config = harness.write_config(tmp_path / "config.toml")
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "responder", "run", "-c", str(config)],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            until(lambda: b"review console on" in log.read_bytes(), "the console started")
            assert signed_in(client, PASSWORD) == 303
            assert client.get("/").status_code == 200

            harness.overrides = {"web": {"port": port,
                                         "password_hash": hash_password(NEW_PASSWORD)}}
            harness.write_config(config)
            proc.send_signal(signal.SIGHUP)
            until(lambda: b"1 session signed out" in log.read_bytes(), "the reload")

            page = client.get("/")
            assert page.status_code == 303 and page.headers["location"].startswith("/signin")
            assert signed_in(client, PASSWORD) == 401
            assert signed_in(client, NEW_PASSWORD) == 303
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert proc.returncode == 0, log.read_text()


def until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.05)


def signed_in(client: httpx.Client, password: str) -> int:
    form = client.get("/signin")
    return client.post("/signin", data={"csrf": csrf_of(form.text), "name": "Dana",
                                        "password": password, "next": "/"}).status_code


async def test_every_response_carries_the_csp_and_friends(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    for path in ("/signin", "/", "/messages", "/static/console.css", "/nowhere",
                 "/messages/%3Cnone%3E"):
        headers = (await client.get(path)).headers
        assert headers["content-security-policy"].startswith("default-src 'none'"), path
        assert "script-src" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"


async def test_an_action_without_its_csrf_token_is_refused_and_get_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    seed(settings, "<q@x>")
    await sign_in(client)
    for csrf in (None, "wrong"):
        data = {"key": "<q@x>", "instance": "default", **({"csrf": csrf} if csrf else {})}
        reply = await client.post("/actions/release", data=data)
        assert reply.status_code == 403 and "CSRF" in reply.text
    assert (await client.get("/actions/release")).status_code == 405
    ledger = Ledger(settings.state.path)
    assert ledger.actions("<q@x>") == []
    assert ledger.by_message_id("<q@x>").vouched_by is None  # type: ignore[union-attr]


async def test_only_a_quarantined_message_can_be_released(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    seed(settings, "<done@x>", outcome="approved")
    await sign_in(client)
    page = await client.get("/messages/%3Cdone%40x%3E")
    assert "/actions/release" not in page.text and "/actions/retry" not in page.text
    reply = await client.post("/actions/release", data={"csrf": csrf_of(page.text),
                                                  "key": "<done@x>", "instance": "default"})
    assert reply.status_code == 303 and "done=failed" in reply.headers["location"]
    assert Ledger(settings.state.path).by_message_id("<done@x>").outcome == "approved"  # type: ignore[union-attr]


async def test_what_a_sender_wrote_is_shown_escaped(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    seed(settings, "<x@x>", subject="<script>alert(1)</script>",
         reply_text="<img src=x onerror=alert(2)>", headers="X-Evil: <b>bold</b>")
    await sign_in(client)
    for path in ("/messages", "/messages/%3Cx%40x%3E"):
        html = (await client.get(path)).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


async def test_the_list_filters_and_pages(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    for i in range(55):
        seed(settings, f"<m{i}@x>", outcome="approved" if i % 5 else "failed",
             ticket_id=1000 + i % 3, sender=f"user{i}@example.com")
    await sign_in(client)
    first = (await client.get("/messages")).text
    assert first.count("<tr>") == 51 and 'rel="next"' in first  # 50 rows and the header
    assert "user54@example.com" in first  # newest first
    second = (await client.get("/messages?page=1")).text
    assert second.count("<tr>") == 6 and 'rel="next"' not in second
    failed = (await client.get("/messages?outcome=failed")).text
    assert failed.count("<tr>") == 12
    by_ticket = (await client.get("/messages?ticket=1001&outcome=approved")).text
    assert by_ticket.count("<tr>") == 1 + sum(1 for i in range(55) if i % 3 == 1 and i % 5)
    assert (await client.get("/messages?sender=user7%40")).text.count("<tr>") == 2
    assert (await client.get("/messages?sender=%25")).text.count("<tr>") == 2  # "%" is literal


async def test_the_list_shows_every_instance_and_filters_by_one(tmp_path: Path) -> None:
    sites = {name: settings_for(tmp_path / name) for name in ("north", "south")}
    for name, site in sites.items():
        for i in range(3):
            seed(site, f"<{name}{i}@x>", sender=f"{name}{i}@example.com")
    app = with_security_headers(create_app(Console(sites, sites["north"].web, console_wiring())))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1:8443") as client:
        await sign_in(client)
        both = (await client.get("/messages")).text
        south = (await client.get("/messages?instance=south")).text
    assert both.count("<tr>") == 7 and "north0@example.com" in both
    assert south.count("<tr>") == 4
    assert "south2@example.com" in south and "north0@example.com" not in south


def test_the_overview_counts_today_and_charts_thirty_days(settings: Settings) -> None:
    seed(settings, "<a@x>", outcome="approved")
    seed(settings, "<b@x>", outcome="not-approver")
    seed(settings, "<c@x>", outcome="quarantined")
    data = overview({"default": settings}, None)
    assert data.today == {"approved": 1, "rejected": 0, "unmatched": 1, "quarantined": 1,
                          "failed": 0, "ignored": 0}
    assert len(data.days) == 30
    chart = stacked(data.days)
    assert [b.title.split(": ")[1] for b in chart.bars] == ["1 approved", "1 unmatched",
                                                           "1 quarantined"]
    assert chart.peak == 3 and chart.labels[-1][1] == f"{data.days[-1][0]:%d %b}"


def test_the_chart_keeps_its_dates_and_bars_inside_the_picture() -> None:
    """Today's date under the last bar is whole, and no bar covers "busiest day"."""
    start = date(2026, 11, 4)
    days = [(start + timedelta(days=n), {"approved": n % 3, "rejected": 1}) for n in range(30)]
    chart = stacked(days)
    glyph = 11 * 0.65  # a generous average width of the 11 px label font
    for middle, text in chart.labels:
        half = len(text) * glyph / 2
        assert middle - half >= 0, text
        assert middle + half <= chart.width, text
    peak_text_bottom = 12 + 3
    assert all(peak_text_bottom < bar.y and bar.y + bar.height <= chart.baseline + 0.1
               for bar in chart.bars)
    assert max(bar.x + bar.width for bar in chart.bars) <= chart.width


def test_a_console_port_needs_an_argon2id_password_hash(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web.password_hash: required when web.port"):
        settings_for(tmp_path, password_hash=None)
    with pytest.raises(ConfigError, match=r"web.password_hash: expected an argon2id hash"):
        settings_for(tmp_path, password_hash="plain-text")
    assert settings_for(tmp_path).web.session_minutes == 480


def test_web_password_prints_an_argon2id_hash_of_standard_input() -> None:
    done = subprocess.run([sys.executable, "-m", "responder", "web-password"],
                          input=f"{PASSWORD}\n", capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert printed.startswith("$argon2id$") and PASSWORD not in printed
    assert password_matches(printed, PASSWORD) and not password_matches(printed, "other")
    short = subprocess.run([sys.executable, "-m", "responder", "web-password"],
                           input="short\n", capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert short.returncode == 1 and short.stdout == ""


def test_the_overview_shows_the_shared_halo_budget_in_use(settings: Settings) -> None:
    ledger = Ledger(settings.state.path)
    try:
        key = f"{settings.halo.base_url}|"
        now = time.time()
        for at in (now - 10, now - 20, now - settings.halo.window_seconds - 1):
            ledger.db.execute("INSERT INTO halo_budget VALUES (?, ?)", (key, at))
    finally:
        ledger.close()
    [status] = overview({"default": settings}, None).instances
    assert (status.halo_used, status.halo_limit, status.halo_percent) == (2, 300, 1)


async def test_retry_and_resend_from_the_console_against_real_servers(harness: Harness) -> None:
    """Retry a ticket-not-found reply once the ticket exists; resend its first answer."""
    msgid = "<console-retry.1@example.com>"
    harness.overrides = {"web": {"port": 8443, "password_hash": HASH}}
    harness.deliver(gmail_reply("alice@example.com", 1400, "Approve", msgid=msgid))
    assert [r.outcome for r in (await harness.once()).reports] == ["ticket-not-found"]
    harness.halo.add_ticket(
        1400, "Late ticket", [{"emailaddress": "alice@example.com", "seq": 1, "actionnumber": 2}]
    )
    page = f"/messages/{quote(msgid, safe='')}?instance=default"
    async with http(harness.settings) as client:
        await sign_in(client)
        html = (await client.get(page)).text
        assert "/actions/release" not in html  # not quarantined
        assert "GET /api/tickets/1400 404 (no such ticket)" in html  # what Halo answered
        reply = await client.post("/actions/retry", data={
            "csrf": csrf_of(html), "key": msgid, "instance": "default"})
        assert reply.status_code == 303 and "done=retried" in reply.headers["location"]
        assert harness.halo.approver(1400, 1)["result"] is None  # the service's pass does it

        await harness.once()  # the running service's next pass

        assert harness.halo.approver(1400, 1)["result"] == 1
        html = (await client.get(page)).text
        assert 'class="outcome approved"' in html
        assert "seq 1, action 2" in html
        assert ("GET /api/tickets/1400 200 (1 approval entries, 1 pending); "
                "POST /api/ticketapproval 200 (1 in one call)") in html
        first = re.search(r'name="answer" value="(\d+)"', html)
        assert first is not None and len(harness.answers()) == 2
        reply = await client.post("/actions/resend", data={
            "csrf": csrf_of(html), "key": msgid, "instance": "default",
            "answer": first.group(1)})
        assert reply.status_code == 303 and "done=resent" in reply.headers["location"]
    answers = harness.answers()
    assert len(answers) == 3 and answers[2]["Message-ID"] == answers[0]["Message-ID"]
    assert "could not be found in Halo" in text_of(answers[2])
    [row] = harness.ledger_rows()
    assert row["admin_actions"].count("Dana (127.0.0.1)") == 2
    assert " retry: put back from Approvals/Unmatched" in row["admin_actions"]
    assert " resend: answer " in row["admin_actions"] and "sent again" in row["admin_actions"]
    assert row["vouched_by"] is None  # a retry vouches for nobody


async def test_a_release_vouches_for_that_message_only_not_a_twin_with_its_message_id(
    harness: Harness,
) -> None:
    """A forger who learns the Message-ID cannot ride on the admin's vouch."""
    msgid = "<released.1@example.com>"
    harness.deliver(gmail_reply("bob@example.com", 1234, "Approve", msgid=msgid, auth="fail"))
    assert [r.outcome for r in (await harness.once()).reports] == ["quarantined"]
    put, _ = await put_back(harness.settings, msgid, make_mailbox, vouched_by="Dana (127.0.0.1)")
    assert put.status == "replayed"
    client = harness.dovecot.connect(harness.user)  # swap the original for a forged twin
    client.select_folder("INBOX")
    client.delete_messages(client.search("ALL"))
    client.expunge()
    client.logout()
    harness.deliver(gmail_reply("bob@example.com", 1234, "Approve - forged", msgid=msgid,
                                auth="fail"))

    [report] = (await harness.once()).reports

    assert report.outcome == "quarantined" and harness.posts() == []
    assert harness.halo.approver(1234, 2)["result"] is None
