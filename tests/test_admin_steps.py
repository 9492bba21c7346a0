"""The admin steps of the guides, as written: ``responder`` run as a shell runs it.

Each test is one step an admin takes (issue 20, "Admin steps that fail as written"):
a read-only command from a shell without the service's secrets, the ledger's place
without ``[state]``, SIGHUP, Ctrl-C, /healthz while Halo is down, a ledger from a newer
release. Real servers throughout; ``tests/test_admin.py`` holds the helpers.
"""

from __future__ import annotations

import email
import html
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from responder.ledger import MIGRATIONS, Ledger
from responder.plan import ANSWERED, Outcome
from responder.reading.message import analyse
from tests.clients import outlook_desktop
from tests.harness import Harness, gmail_reply, text_of
from tests.test_admin import REPO, Service, closed_port, health, maildir_config, responder
from tests.test_languages import ALICE, answer, html_of

SECRET = "RESPONDER_TEST_HALO_SECRET"  # set only where a test says so


def with_secret_from_env(config: Path) -> Path:
    """The config as the install guide's systemd setup has it: the secret in the env."""
    text = config.read_text().replace('client_secret = "s3cret-value-xyz"',
                                      f'client_secret = "env:{SECRET}"')
    config.write_text(text)
    return config


# -- 1. read-only commands need no secret ---------------------------------------------

def test_backup_audit_and_explain_work_from_a_shell_without_the_services_secrets(
    tmp_path: Path,
) -> None:
    config = with_secret_from_env(maildir_config(tmp_path))
    (tmp_path / "mail").mkdir()
    ran = responder("once", "-c", config, env={SECRET: "s3cret-value-xyz"})  # the service
    assert ran.returncode == 0, ran.stderr
    assert SECRET not in os.environ
    message = tmp_path / "reply.eml"
    message.write_bytes(gmail_reply("alice@example.com", 1234, "Approve"))

    backup = responder("backup", "-c", config, tmp_path / "before-upgrade.sqlite3")
    audit = responder("audit", "-c", config, "--json")
    explain = responder("explain", message, "--config", config)

    assert (backup.returncode, audit.returncode, explain.returncode) == (0, 0, 0), (
        backup.stderr + audit.stderr + explain.stderr)
    assert backup.stdout.startswith(f"backed up {tmp_path / 'state' / 'ledger.sqlite3'} to ")
    assert explain.stdout.startswith("would ")
    # what needs Halo still says which secret it misses, naming the key
    online = responder("explain", message, "--config", config, "--online")
    once = responder("once", "-c", config)
    for done in (online, once):
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "config error:", f"halo.client_secret: environment variable {SECRET} is not set"]


def test_check_without_a_secret_fails_that_part_and_checks_the_others(
    harness: Harness, tmp_path: Path
) -> None:
    harness.overrides = {"halo": {"client_secret": f"env:{SECRET}"}}
    config = harness.write_config(tmp_path / "config.toml")

    done = responder("check", "-c", config)

    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "config   ok     valid"
    assert lines[1].startswith("mailbox  ok     ")  # signed in to Dovecot all the same
    assert lines[2].startswith("smtp     ok     ")
    assert lines[3] == f"halo     FAILED halo.client_secret: environment variable {SECRET} " \
                       "is not set"
    assert lines[-1] == "1 of 6 parts FAILED: halo"
    assert "Traceback" not in done.stderr
    assert harness.halo.requests == []  # Halo was not contacted without its secret

    ok = responder("check", "-c", config, "--json", env={SECRET: harness.halo.client_secret})
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout)["halo"]["ok"] is True


def test_a_secret_file_readable_by_the_service_user_works_for_the_service_and_a_shell(
    harness: Harness, tmp_path: Path
) -> None:
    """The install guide's way: ``file:`` secrets, which systemd and a shell read alike."""
    secret = tmp_path / "halo-client-secret"
    secret.write_text(harness.halo.client_secret + "\n")
    secret.chmod(0o640)
    harness.overrides = {"halo": {"client_secret": f"file:{secret}"}}
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    once = responder("once", "-c", config)

    assert (once.returncode, once.stdout) == (0, "1 message: 1 approved; 1 answer sent\n")
    assert responder("check", "-c", config).returncode == 0
    assert harness.halo.client_secret not in once.stderr




def test_the_console_password_hash_as_a_reference_is_read_only_by_run(tmp_path: Path) -> None:
    port = closed_port()
    config = maildir_config(tmp_path, extra=f'[web]\nport = {port}\n'
                                             'password_hash = "env:RESPONDER_TEST_HASH"\n')
    (tmp_path / "mail").mkdir()

    once = responder("once", "-c", config)  # a pass: no console, no hash needed
    missing = responder("run", "-c", config)
    wrong = responder("run", "-c", config, env={"RESPONDER_TEST_HASH": "plain-text-password"})

    assert once.returncode == 0, once.stderr
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "config error:", "web.password_hash: environment variable RESPONDER_TEST_HASH is not set"]
    assert wrong.returncode == 2
    assert wrong.stderr.splitlines() == [
        "config error:", "web.password_hash: expected an argon2id hash (make one with: "
        "responder web-password)"]
    assert "plain-text-password" not in wrong.stderr

# -- 3. without [state], the ledger does not depend on the working directory ---------

def run_in(folder: Path, *args: str | Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """``responder ARGS`` typed in a shell whose working directory is ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "responder", *map(str, args)],
                          cwd=folder, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_once_from_cron_in_any_folder_uses_one_ledger_in_the_users_state_folder(
    harness: Harness, tmp_path: Path
) -> None:
    harness.overrides = {"state": None}
    config = harness.write_config(tmp_path / "config.toml")
    state_home = tmp_path / "xdg-state"
    env = {"XDG_STATE_HOME": str(state_home)}
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))

    first = run_in(tmp_path / "cron-home", "once", "-c", config, env=env)
    check = run_in(tmp_path / "elsewhere", "check", "-c", config, env=env)
    audit = run_in(tmp_path / "elsewhere", "audit", "-c", config, "--json", env=env)

    assert first.returncode == 0, first.stderr
    ledger = state_home / "halo-approval-responder" / "ledger.sqlite3"
    assert [json.loads(line)["outcome"] for line in audit.stdout.splitlines()] == ["approved"]
    assert f"ledger   ok     {ledger}, schema version {len(MIGRATIONS)}" in check.stdout
    assert not list((tmp_path / "cron-home").iterdir())  # nothing in the working directory
    assert not list((tmp_path / "elsewhere").iterdir())
    # outside systemd (a shell's umask 022): the ledger and SQLite's files beside it 0600
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in ledger.parent.iterdir()}
    assert modes and set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE(ledger.parent.stat().st_mode) == 0o700


def test_under_systemd_the_ledger_is_in_the_state_directory(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    config.write_text(config.read_text().split("[state]")[0] + "[security]\n"
                      'trusted_authserv_id = ["mx.test.example"]\n')
    state = tmp_path / "var-lib-halo-approval-responder"
    state.mkdir()

    done = run_in(tmp_path / "wd", "check", "-c", config, env={"STATE_DIRECTORY": str(state)})

    assert f"ledger   ok     {state / 'ledger.sqlite3'}, not created yet (the first run " \
        "creates it)" in done.stdout.splitlines()
    assert list(state.iterdir()) == []  # check creates no ledger


def test_check_shows_a_relative_state_path_as_absolute_and_says_it_moves(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    config.write_text(config.read_text().replace(
        f'path = "{tmp_path / "state" / "ledger.sqlite3"}"', 'path = "ledger.sqlite3"'))

    done = run_in(tmp_path / "wd", "check", "-c", config)

    assert f"ledger   ok     {tmp_path / 'wd' / 'ledger.sqlite3'} (state.path is relative: it " \
        "depends on the working directory), not created yet (the first run creates it)" \
        in done.stdout.splitlines()


# -- 7. a ledger written by a newer release -------------------------------------------

def test_check_against_a_newer_ledger_prints_its_table_with_the_reason_on_the_ledger_line(
    harness: Harness, tmp_path: Path
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    path = harness.settings.state.path
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")  # as the next release leaves it
    db.close()
    before = path.read_bytes()

    done = responder("check", "-c", config)

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:6]] == [
        ["config", "ok"], ["mailbox", "ok"], ["smtp", "ok"], ["halo", "ok"], ["ledger", "FAILED"],
        ["trust", "ok"]]
    assert lines[4] == (
        f"ledger   FAILED {path}: schema version {len(MIGRATIONS) + 1} was written by a newer "
        f"responder (this one knows up to {len(MIGRATIONS)}): upgrade the responder, or "
        "restore a backup made before the upgrade")
    assert lines[6] == "1 of 6 parts FAILED: ledger"
    assert "error:" not in done.stderr and "Traceback" not in done.stderr
    assert path.read_bytes() == before


# -- 4. SIGHUP applies [web] and the health port ---------------------------------------

def answers(url: str) -> int | None:
    """The HTTP status at ``url``, or None when nothing listens there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return None


def test_sighup_moves_the_health_port_and_opens_the_console(
    harness: Harness, tmp_path: Path
) -> None:
    from responder.console.auth import hash_password

    first, second, web = closed_port(), closed_port(), closed_port()
    harness.overrides = {"service": {"metrics_port": first}}
    config = harness.write_config(tmp_path / "config.toml")
    service = Service(config, tmp_path / "run.log")
    try:
        service.wait_for(f"metrics on http://127.0.0.1:{first}/metrics")
        service.wait_for("signed in as")
        assert answers(f"http://127.0.0.1:{first}/healthz") in (200, 503)

        harness.overrides = {"service": {"metrics_port": second},
                             "web": {"port": web, "password_hash": hash_password("x" * 12)}}
        harness.write_config(config)
        service.proc.send_signal(signal.SIGHUP)
        service.wait_for(f"metrics on http://127.0.0.1:{second}/metrics")
        service.wait_for(f"review console on http://127.0.0.1:{web}/")

        assert answers(f"http://127.0.0.1:{first}/healthz") is None  # moved, not doubled
        assert answers(f"http://127.0.0.1:{second}/healthz") in (200, 503)
        assert answers(f"http://127.0.0.1:{web}/signin") == 200

        harness.overrides = {"service": {"metrics_port": 0}, "web": {"port": 0}}
        harness.write_config(config)
        service.proc.send_signal(signal.SIGHUP)
        service.wait_for("review console closed (web.port = 0)")
        service.wait_for("metrics closed (service.metrics_port = 0)")
        assert answers(f"http://127.0.0.1:{second}/healthz") is None
        assert answers(f"http://127.0.0.1:{web}/signin") is None
    finally:
        code = service.terminate()
    text = service.log.read_text()
    assert code == 0 and "Traceback" not in text
    assert text.count("config reloaded from") == 2
    # uvicorn's own lines about a "server process" that is a task in this one are gone;
    # every line is in the product's format, the console saying when it starts and stops
    for uvicorn in ("Started server process", "Shutting down", "Finished server process",
                    "Waiting for application", "Uvicorn running"):
        assert uvicorn not in text
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) ", line)
               for line in text.splitlines()), text
    assert f"review console on http://127.0.0.1:{web}/ stopped" in text


def test_sighup_with_a_port_in_use_keeps_serving_mail_and_names_the_key(
    harness: Harness, tmp_path: Path
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    service = Service(config, tmp_path / "run.log")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            service.wait_for("signed in as")
            harness.overrides = {"service": {"metrics_port": port}}
            harness.write_config(config)
            service.proc.send_signal(signal.SIGHUP)
            service.wait_for("/healthz and /metrics not served")
            harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
            deadline = time.monotonic() + 30
            while harness.halo.approver(1234, 1)["result"] is None:
                assert time.monotonic() < deadline, "not decided after the reload"
                time.sleep(0.1)
        finally:
            code = service.terminate()
    error = next(line for line in service.lines() if "ERROR" in line)
    assert error.endswith(f"service.metrics_port: cannot listen on 127.0.0.1:{port}: Address "
                          "already in use; /healthz and /metrics not served")
    assert code == 0


# -- 5. exit codes: each row of the table, for real ---------------------------------------

def documented_exit_codes() -> set[int]:
    """The codes ``responder --help`` lists (the table the guides show)."""
    text = responder("--help").stdout.split("exit codes:")[1]
    return {int(line.split()[0]) for line in text.splitlines() if line.strip()}


def test_every_documented_exit_code_is_what_a_shell_sees(harness: Harness, tmp_path: Path) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("[imap]\n", '[imap]\nport = "nine"\n', 1))
    seen: dict[int, str] = {}

    seen[responder("once", "-c", config).returncode] = "once, nothing waiting"
    harness.overrides = {"halo": {"base_url": f"http://127.0.0.1:{closed_port()}",
                                  "max_retries": 0}}
    seen[responder("check", "-c", harness.write_config(tmp_path / "down.toml")).returncode] = (
        "check with Halo down")
    seen[responder("check", "-c", bad).returncode] = "a config error"
    for signame, expected in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        service = Service(config, tmp_path / f"run-{signame.name}.log")
        service.wait_for("signed in as")
        service.proc.send_signal(signame)  # Ctrl-C: the terminal sends SIGINT
        code = service.proc.wait(timeout=30)
        service.terminate()
        assert code == expected, "\n".join(service.lines())
        assert service.lines()[-2].endswith(
            f"{signame.name} received: finishing the pass in hand, then stopping")
        seen[code] = f"run stopped by {signame.name}"
    ledger = Ledger(harness.settings.state.path)
    for i in range(3000):  # more than a pipe holds: head closes it while audit writes
        ledger.record(f"<{i}@example.com>", content_hash=str(i), state="filed",
                      outcome="approved", reason="recorded in Halo " * 4)
    ledger.close()
    piped = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m responder audit -c "{config}" | head -1 '
                       '>/dev/null; echo "${PIPESTATUS[0]}"'],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    seen[int(piped.stdout)] = "audit | head"

    assert set(seen) == documented_exit_codes() == {0, 1, 2, 130, 141}, seen


# -- 6. /healthz: each dependency, and unhealthy once one fails for too long --------------

def wait_for_health(port: int, want: str, timeout: float = 30) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = health(port)
        except urllib.error.URLError:  # not listening yet
            status, body = 0, ""
        if want in body:
            return status, body
        assert time.monotonic() < deadline, f"no {want!r} in /healthz:\n{body}"
        time.sleep(0.1)


def test_healthz_turns_unhealthy_once_halo_has_been_down_too_long_then_recovers(
    harness: Harness, tmp_path: Path
) -> None:
    port = closed_port()
    harness.overrides = {"halo": {"max_retries": 0},
                         "service": {"metrics_port": port, "retry_seconds": 1,
                                     "unhealthy_after_seconds": 3}}
    config = harness.write_config(tmp_path / "config.toml")
    service = Service(config, tmp_path / "run.log")
    try:
        status, body = wait_for_health(port, "last pass")
        assert status == 200
        assert body.splitlines()[:4] == ["ok", "mailbox ok", "halo not contacted yet",
                                         "outgoing-mail not contacted yet"]

        harness.halo.faults.error_rate = 1.0  # Halo answers 500 to everything
        harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
        status, body = wait_for_health(port, "halo failing for")
        failing_for = int(body.split("halo failing for ")[1].split()[0])
        if failing_for < 3:
            assert status == 200, body  # not yet: a short outage is not an alarm
        status, body = wait_for_health(port, "unhealthy: halo failing for")
        assert status == 503
        assert body.splitlines()[0].endswith(" s (over 3 s)")
        assert "mailbox ok" in body.splitlines()
        for private in ("500", harness.halo.base_url, harness.user, "ticket", "Halo answered"):
            assert private not in body  # names, states and seconds only

        harness.halo.faults.error_rate = 0.0  # Halo is back: the pending reply is retried
        status, body = wait_for_health(port, "outgoing-mail ok")
        assert status == 200 and body.splitlines()[:4] == [
            "ok", "mailbox ok", "halo ok", "outgoing-mail ok"]
    finally:
        code = service.terminate()
    assert code == 0
    assert harness.halo.approver(1234, 1)["result"] == 1


def test_health_rules_per_dependency_and_instance() -> None:
    from responder.metrics import Metrics

    metrics = Metrics()
    metrics.unhealthy_after = 60
    metrics.record_pass("acme", [], [], {}, 0, halo=(True, False), outgoing=None)
    metrics.record_pass("globex", [], [], {}, 0, halo=(False, False), outgoing=False)
    ok, text = metrics.healthy(stale_after=180)
    assert ok, text  # failing, but not for long
    assert text.splitlines() == [
        "ok",
        "acme: mailbox ok", "acme: halo ok", "acme: outgoing-mail not contacted yet",
        "globex: mailbox ok", "globex: halo failing for 0 s",
        "globex: outgoing-mail failing for 0 s",
        "last pass 0 s ago",
    ]
    metrics.dependencies["globex", "outgoing-mail"].failing_since = time.time() - 61
    ok, text = metrics.healthy(stale_after=180)
    assert not ok and text.startswith("unhealthy: globex: outgoing-mail failing for 61 s "
                                      "(over 60 s)\n")
    metrics.record_pass("globex", [], [], {}, 0, halo=(None, False), outgoing=True)
    assert metrics.healthy(stale_after=180)[0]  # Halo not called: still failing, not long
    metrics.mailbox_reachable(False, "imap: login refused for approvals", instance="acme",
                              refused=True)
    ok, text = metrics.healthy(stale_after=180)
    assert not ok and text.startswith("unhealthy: acme: mailbox refusing the sign-in\n")
    assert "acme: mailbox refusing the sign-in for 0 s" in text.splitlines()
    assert "approvals" not in text and "login" not in text


# -- 8. a fresh clone's test command -------------------------------------------------------

def test_a_fresh_clone_skips_the_corpus_tests_with_one_line_saying_how_to_run_them(
    tmp_path: Path,
) -> None:
    clone = tmp_path / "halo-approval-responder"  # no ../shared/corpus beside it
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in files.splitlines():
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes((REPO / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RESPONDER_CORPUS")}

    def pytest(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               "tests/test_corpus.py", "tests/test_decision.py"], cwd=clone,
                              capture_output=True, text=True, timeout=120, env={**env, **extra})

    fresh, ci = pytest(), pytest(CI="true")

    assert fresh.returncode == 0, fresh.stdout
    told = [line for line in fresh.stdout.splitlines() if "corpus" in line]
    assert told == [f"corpus tests skipped: no corpus at {tmp_path / 'shared' / 'corpus'}; to "
                    "run them, set RESPONDER_CORPUS=/path/to/corpus (CI=true requires it)"]
    assert " passed, 1 skipped in " in fresh.stdout.splitlines()[-1]
    assert ci.returncode != 0
    assert "CI=true requires the corpus" in ci.stdout


# -- 9. smaller ones -----------------------------------------------------------------------

def test_check_says_at_once_when_halos_name_is_not_known_to_dns(tmp_path: Path) -> None:
    try:  # .invalid never resolves (RFC 6761); a machine without DNS says "try again"
        socket.getaddrinfo("halo.invalid", 443)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's DNS does not answer ({exc})")
    config = maildir_config(tmp_path, halo_url="https://halo.invalid")
    config.write_text(config.read_text().replace("max_retries = 0\n", ""))  # the default 4
    (tmp_path / "mail").mkdir()

    started = time.monotonic()
    done = responder("check", "-c", config)
    took = time.monotonic() - started

    halo = next(line for line in done.stdout.splitlines() if line.startswith("halo "))
    assert halo == ("halo     FAILED POST /auth/token: no such host: halo.invalid is not known "
                    "to DNS (check halo.base_url)")
    assert "retry" not in done.stderr  # was: four retries, 6 s, before saying so
    assert took < 5


@pytest.mark.parametrize("outcome", sorted(ANSWERED), ids=str)
@pytest.mark.parametrize("lang", ["en", "de", "fr", "nl", "es"])
def test_the_text_answer_ends_with_the_same_do_not_reply_sentence_as_the_html(
    outcome: Outcome, lang: str
) -> None:
    client = outlook_desktop(ALICE, "Reject - too dear", lang=lang) if lang != "en" else \
        outlook_desktop(ALICE, "Reject - too dear")
    message = email.message_from_bytes(answer(analyse(client), outcome).as_bytes())
    html_footer = re.findall(r'<p style="color: #777; font-size: 12px;">(.*?)</p>',
                             html_of(message), re.S)[-1]

    assert text_of(message).endswith(" ".join(html.unescape(html_footer).split()))
    if lang == "en":
        assert text_of(message).endswith(
            "Please do not reply to it unless you want to send a new decision.")
