"""The review console in a real browser: headless Chromium (Debian's) driven by Playwright,
against ``responder run`` with the stand-in Halo, Dovecot and the SMTP sink.

Playwright never downloads a browser here: it drives /usr/bin/chromium, which
scripts/test.sh installs when missing. It takes the docs' screenshots on the way;
they land in a temporary folder unless ``RESPONDER_SCREENSHOTS=docs`` asks it to refresh
docs/console-overview.png and docs/console-message.png (a test run leaves the tree alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from responder.console.auth import hash_password
from tests.harness import Harness, gmail_reply
from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / os.environ.get("RESPONDER_SCREENSHOTS", tempfile.mkdtemp(prefix="shots-"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORD = "correct horse battery staple"
APPROVED = "<seeded-approval.1@example.com>"
QUARANTINED = "<unsigned-approval.2@example.com>"


def wait_for(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.05)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@contextlib.contextmanager
def running(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``responder run`` in its own process group, its output in ``log``; stopped after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "responder", "run", "--config", str(config)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def browser() -> Iterator[Page]:
    """A fresh headless Chromium profile and one page."""
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
            java_script_enabled=False,  # the console must work without it (it has none)
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def outcome_of(harness: Harness, key: str) -> str | None:
    return next((r["outcome"] for r in harness.ledger_rows() if r["key"] == key), None)


def test_an_admin_signs_in_sees_the_pass_and_releases_a_quarantined_reply(
    harness: Harness, tmp_path: Path
) -> None:
    web_port, metrics_port = free_port(), free_port()
    harness.overrides = {
        "web": {"port": web_port, "password_hash": hash_password(PASSWORD)},
        "service": {"metrics_port": metrics_port},
    }
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve - within budget",
                                msgid=APPROVED))
    harness.deliver(gmail_reply("bob@example.com", 1234, "Approve", msgid=QUARANTINED,
                                auth="fail"))
    base = f"http://127.0.0.1:{web_port}"
    log = tmp_path / "run.log"

    with running(config, log) as proc:
        try:
            wait_for(lambda: outcome_of(harness, QUARANTINED) == "quarantined", 30,
                     "the seeded pass")
            wait_for(lambda: listening(web_port), 10, "the console")
            assert outcome_of(harness, APPROVED) == "approved"
            with browser() as page:
                _signed_out_visit_goes_to_sign_in(page, base)
                _sign_in(page)
                _overview_shows_the_seeded_pass(page, base)
                _a_form_without_its_csrf_token_is_refused(page, harness)
                _release(page, harness)
            _audit_shows_the_admins_action(config)
            _cookies_are_secure_behind_a_proxy_that_says_so(base)
            # /healthz and /metrics stay on their own port, without a session
            assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz").status_code == 200
        except BaseException:
            print(log.read_text(errors="replace"))
            raise
    assert proc.returncode == 0


def _signed_out_visit_goes_to_sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/messages?outcome=quarantined")
    assert page.url.startswith(f"{base}/signin?next=")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # a wrong password signs nobody in
    page.fill("#name", "Dana Admin")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Wrong password.")


def _sign_in(page: Page) -> None:
    page.fill("#name", "Dana Admin")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    # back where the signed-out visit was going, filtered as it asked
    expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    rows = page.locator("table.grid tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bob@example.com")
    cookie = next(c for c in page.context.cookies() if c["name"] == "responder_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]


def _overview_shows_the_seeded_pass(page: Page, base: str) -> None:
    page.goto(base + "/")
    instance = page.locator("table.grid").first.locator("tbody tr")
    expect(instance).to_contain_text("default")
    expect(instance).to_contain_text("healthy")
    expect(instance).to_contain_text("s ago")
    expect(page.locator("ul.counts")).to_contain_text("approved 1")
    expect(page.locator("ul.counts")).to_contain_text("quarantined 1")
    assert page.locator("svg.chart rect").count() == 2  # today's bar: approved + quarantined
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-overview.png"), full_page=True)
    page.get_by_role("link", name="bob@example.com").click()
    expect(page.locator(".summary")).to_contain_text("sender not authenticated")
    expect(page.locator("pre.headers")).to_contain_text("Authentication-Results: mx.test")


def _a_form_without_its_csrf_token_is_refused(page: Page, harness: Harness) -> None:
    page.locator("form[action='/actions/release'] input[name=csrf]").evaluate("e => e.remove()")
    page.get_by_role("button", name="Release").click()
    expect(page.get_by_role("heading", name="Refused")).to_be_visible()
    [row] = [r for r in harness.ledger_rows() if r["key"] == QUARANTINED]
    assert (row["outcome"], row["vouched_by"], row["admin_actions"]) == ("quarantined", None, "")
    assert harness.halo.approver(1234, 2)["result"] is None
    page.go_back()
    page.reload()


def _release(page: Page, harness: Harness) -> None:
    page.get_by_role("button", name="Release").click()
    expect(page.locator(".flash")).to_contain_text("Released")
    # the page refreshes itself (no script) until the service's pass has decided it
    expect(page.locator(".summary .outcome")).to_have_text("approved", timeout=20_000)
    expect(page.locator(".flash")).to_contain_text("the pass has processed it")
    expect(page.locator("dl.facts").nth(1)).to_contain_text("Dana Admin")
    answers = page.locator("article.answer")
    expect(answers).to_have_count(1)
    expect(answers.first).to_contain_text("bob@example.com")
    page.screenshot(path=str(SCREENSHOTS / "console-message.png"), full_page=True)

    assert harness.halo.approver(1234, 2)["result"] == 1  # approved in the stand-in Halo
    [row] = [r for r in harness.ledger_rows() if r["key"] == QUARANTINED]
    assert (row["state"], row["outcome"]) == ("filed", "approved")
    assert row["vouched_by"].startswith("Dana Admin (127.0.0.1)")
    assert "released by Dana Admin" in row["auth_verdict"]
    wait_for(lambda: any(a["To"] == "bob@example.com" for a in harness.answers()), 10,
             "the answer to bob")
    assert len(harness.folder("Approvals/Done")) == 2
    assert harness.folder("Approvals/Quarantine") == []


def _audit_shows_the_admins_action(config: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "responder", "audit", "--config", str(config),
         "--format", "json"], cwd=REPO, capture_output=True, check=True, timeout=60,
    ).stdout
    rows = {r["key"]: r for r in map(json.loads, out.splitlines())}
    actions = rows[QUARANTINED]["admin_actions"]
    assert "Dana Admin (127.0.0.1) release: put back from Approvals/Quarantine" in actions
    assert rows[APPROVED]["admin_actions"] == ""


def _cookies_are_secure_behind_a_proxy_that_says_so(base: str) -> None:
    """uvicorn believes X-Forwarded-Proto from 127.0.0.1 (FORWARDED_ALLOW_IPS) only."""
    plain = httpx.get(f"{base}/signin")
    proxied = httpx.get(f"{base}/signin", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in plain.headers["set-cookie"].lower()
    assert "; secure" in proxied.headers["set-cookie"].lower()
    assert plain.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.fixture(autouse=True)
def _chromium_is_installed() -> None:
    assert Path(CHROMIUM).exists(), "scripts/test.sh installs Debian's chromium"
