"""The CLI as an admin runs it: a subprocess, config files written by hand, real servers.

Each test follows one item of "an admin can install, run, upgrade, back up and debug it
without reading the code": it runs ``responder`` exactly as typed in a shell and
asserts on what the admin sees (the last line, the exit code, no traceback).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from responder.commands.cli import _parser
from responder.commands.summary import once_summary
from responder.ledger import MIGRATIONS, Ledger
from tests.harness import Harness, gmail_reply

REPO = Path(__file__).parent.parent


def responder(*args: str | Path, stdin: bytes | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``responder ARGS`` as a shell runs it (the installed entry point's module)."""
    return subprocess.run(
        [sys.executable, "-m", "responder", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=90, input=stdin and stdin.decode(),
        env={**os.environ, **(env or {})},
    )


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def maildir_config(tmp_path: Path, halo_url: str = "", extra: str = "") -> Path:
    """A config for a local Maildir, as an admin writes it."""
    path = tmp_path / "config.toml"
    path.write_text(
        "[halo]\n"
        f'base_url = "{halo_url or f"http://127.0.0.1:{closed_port()}"}"\n'
        'client_id = "responder"\n'
        'client_secret = "s3cret-value-xyz"\n'
        "max_retries = 0\n"
        "[maildir]\n"
        f'path = "{tmp_path / "mail"}"\n'
        "[smtp]\n"
        'host = "127.0.0.1"\n'
        f"port = {closed_port()}\n"
        'tls = "none"\n'
        'from = "approvals@service.example"\n'
        "[state]\n"
        f'path = "{tmp_path / "state" / "ledger.sqlite3"}"\n'
        "[security]\n"
        'trusted_authserv_id = ["mx.test.example"]\n' + extra
    )
    path.chmod(0o600)
    return path


# -- 1. global flags before or after the command -------------------------------------------

@pytest.mark.parametrize("order", ["before", "after"])
def test_log_format_and_quiet_work_before_and_after_the_command(
    tmp_path: Path, order: str
) -> None:
    config = maildir_config(tmp_path)
    flags: list[str | Path] = ["--log-format", "json"]
    args = [*flags, "once", "-c", config] if order == "before" else ["once", "-c", config, *flags]

    done = responder(*args)

    assert done.returncode == 0, done.stderr
    logged = done.stderr.strip().splitlines()
    assert logged and all(json.loads(line)["level"] == "info" for line in logged)

    quiet: list[str | Path] = (["-q", "once", "-c", config] if order == "before"
                               else ["once", "-c", config, "-q"])
    assert responder(*quiet).stderr == ""


# -- 2. a sentence and an exit code, never a traceback ---------------------------------------

def test_explain_online_with_halo_down_says_so(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    message = tmp_path / "reply.eml"
    message.write_bytes(gmail_reply("alice@example.com", 1234, "Approve"))

    done = responder("explain", message, "--config", config, "--online")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert last_line(done.stderr).startswith("error: Halo is unavailable")


def test_explain_online_with_a_wrong_secret_says_so(harness: Harness, tmp_path: Path) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    harness.halo.client_secret = "rotated-elsewhere"
    message = tmp_path / "reply.eml"
    message.write_bytes(gmail_reply("alice@example.com", 1234, "Approve"))

    done = responder("explain", message, "--config", config, "--online")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert last_line(done.stderr).startswith("error: Halo refused the sign-in (check "
                                             "halo.client_id and halo.client_secret)")


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    for i in range(3000):  # more than a pipe buffer holds
        ledger.record(f"<{i}@example.com>", content_hash=str(i), state="filed",
                      outcome="approved", reason="recorded in Halo " * 4)
    ledger.close()

    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m responder audit -c "{config}" | head -1; '
                       'echo "status ${PIPESTATUS[0]}" >&2'],
        cwd=REPO, capture_output=True, text=True, timeout=60)

    assert done.stdout.startswith("instance,key,")
    assert done.stderr == "status 141\n"  # no BrokenPipeError, the documented code


def test_missing_message_file_is_one_line(tmp_path: Path) -> None:
    done = responder("explain", tmp_path / "nope.eml")
    assert (done.returncode, done.stderr) == (
        1, f"error: cannot read {tmp_path / 'nope.eml'}: No such file or directory\n")


# -- 4. once says what happened ---------------------------------------------------------

def test_once_counts_messages_by_outcome(harness: Harness, tmp_path: Path) -> None:
    harness.overrides = {"halo": {"max_retries": 0}}
    config = harness.write_config(tmp_path / "config.toml")
    harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    harness.deliver(gmail_reply("alice@example.com", 1300, "Approve"))

    done = responder("once", "--config", config)
    assert (done.returncode, done.stdout) == (0, "2 messages: 2 approved; 2 answers sent\n")

    harness.halo.faults.fail_next(503, times=20)
    harness.deliver(gmail_reply("bob@example.com", 1234, "Reject"))
    done = responder("once", "--config", config, "--json")

    assert done.returncode == 1  # still pending: cron sees it
    result = json.loads(done.stdout)
    assert result["outcomes"] == {"pending": 1}
    assert (result["answers_sent"], result["error"]) == (0, None)
    done = responder("once", "--config", config)
    assert done.stdout == "1 message: 1 pending (Halo unavailable); 0 answers sent\n"


def test_once_json_gives_the_pass_error_when_the_pass_failed(tmp_path: Path) -> None:
    config = maildir_config(tmp_path, extra="")
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "new").write_text("not a folder")  # the Maildir is broken

    done = responder("once", "--config", config, "--json")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    assert result["error"] and result["messages"] == [] and result["outcomes"] == {}


def test_once_summary_reads_like_a_sentence() -> None:
    messages = [
        {"outcome": "approved", "reason": "recorded in Halo"},
        {"outcome": "approved", "reason": "recorded in Halo"},
        {"outcome": "pending", "reason": "Halo unavailable, will retry: 503"},
    ]
    assert once_summary(messages, 2, 0, []) == (
        "3 messages: 2 approved, 1 pending (Halo unavailable); 2 answers sent")
    assert once_summary(messages[:2], 2, 0, [], digests=1) == (
        "2 messages: 2 approved; 2 answers sent (1 a digest)")
    assert once_summary([], 0, 1, ["mailbox: login refused"]) == (
        "0 messages; 0 answers sent, 1 not sent yet (retried next pass); "
        "the pass failed: mailbox: login refused")


# -- 5. explain is for people --------------------------------------------------------------

def test_explain_starts_with_a_verdict_then_aligned_evidence(
    harness: Harness, tmp_path: Path
) -> None:
    config = harness.write_config(tmp_path / "config.toml")
    message = tmp_path / "reply.eml"
    message.write_bytes(gmail_reply("alice@example.com", 1234, "Approve"))

    done = responder("explain", message, "--config", config, "--online")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "would approve ticket 1234 for alice@example.com (seq 1)"
    rows = [line for line in lines[2:] if line[:1].isalpha() and " " in line]
    evidence = dict(line.split(None, 1) for line in rows)
    assert evidence["decision"] == "approve"
    assert evidence["forwarded"] == "no"
    assert evidence["authenticity"].startswith("trusted")
    assert "{" not in done.stdout and "None" not in done.stdout and "False" not in done.stdout
    starts = {line.index(line.split(None, 1)[1]) for line in rows}
    assert len(starts) == 1  # one column for the values


def test_explain_untrusted_sender_verdict(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    message = tmp_path / "reply.eml"
    message.write_bytes(gmail_reply("alice@example.com", 1234, "Approve", auth="fail"))

    done = responder("explain", message, "--config", config)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("would quarantine: ")


# -- 6. audit on a ledger that does not exist -----------------------------------------------

def test_audit_without_a_ledger_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)

    done = responder("audit", "--config", config)

    assert done.returncode == 1
    assert last_line(done.stderr).startswith(
        f"error: no ledger at {tmp_path / 'state' / 'ledger.sqlite3'} (state.path)")
    assert not (tmp_path / "state").exists()


# -- 9. version, help, --json, --since -----------------------------------------------------

def test_version_and_help_for_every_command() -> None:
    from responder import __version__

    assert responder("--version").stdout == f"responder {__version__}\n"
    top = responder("--help").stdout
    assert "Turns email replies to Halo approval requests" in top
    assert "exit codes:" in top and "141" in top
    subcommands: Any = _parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    commands = list(subcommands.choices)
    assert {"demo", "check", "once", "run", "explain", "audit", "replay", "backup"} <= set(
        commands)
    for name in commands:
        text = responder(name, "--help").stdout
        assert "examples:" in text and f"responder {name}" in text.split("examples:")[1], name
        assert "exit codes:" in text, name
        assert "--log-format" in text, name


def test_audit_json_and_since_a_date_time(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    path = tmp_path / "state" / "ledger.sqlite3"
    ledger = Ledger(path)
    for key, at in (("<old@x>", "2026-11-01T08:59:00.000+00:00"),
                    ("<new@x>", "2026-11-01T09:00:00.000+00:00")):
        ledger.record(key, content_hash=key, state="filed", outcome="approved")
        ledger.db.execute("UPDATE messages SET created_at = ? WHERE key = ?", (at, key))
    ledger.close()

    def keys(*args: str) -> list[str]:
        done = responder("audit", "-c", config, *args)
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["key"] for line in done.stdout.splitlines()]

    assert keys("--json") == keys("--format", "json") == ["<old@x>", "<new@x>"]
    assert keys("--json", "--since", "2026-11-01") == ["<old@x>", "<new@x>"]
    assert keys("--json", "--since", "2026-11-01T09:00") == ["<new@x>"]
    assert keys("--json", "--since", "2026-11-01 10:00+01:00") == ["<new@x>"]
    bad = responder("audit", "-c", config, "--since", "yesterday")
    assert bad.returncode == 2 and "not a date or date-time: 'yesterday'" in bad.stderr


# -- 3. check refuses configs that cannot work ---------------------------------------------

def test_check_refuses_a_halo_address_without_scheme_and_a_missing_templates_folder(
    tmp_path: Path,
) -> None:
    config = maildir_config(tmp_path, extra=f'[answers]\ntemplates = "{tmp_path / "mine"}"\n')
    config.write_text(config.read_text().replace(
        config.read_text().split("base_url = ")[1].split("\n")[0], '"halo.example.com"'))

    done = responder("check", "--config", config)

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "config error:",
        "halo.base_url: expected an address starting with https:// (got 'halo.example.com'),"
        " e.g. https://halo.example.com",
        f"answers.templates: no such folder: {tmp_path / 'mine'}",
    ]


def test_secret_files_other_users_can_read_are_named(tmp_path: Path) -> None:
    secret = tmp_path / "halo-secret"
    secret.write_text("s3cret-value-xyz\n")
    secret.chmod(0o644)
    config = maildir_config(tmp_path)
    config.write_text(config.read_text().replace('"s3cret-value-xyz"', f'"file:{secret}"'))

    done = responder("audit", "--config", config)

    assert f"{secret} holds secrets and is readable by other users: chmod 600 it" in done.stderr
    assert f"{config} holds" not in done.stderr  # the config itself is 0600
    assert "s3cret-value-xyz" not in done.stderr


# -- 6. backup while the service writes ------------------------------------------------------

def test_backup_while_the_ledger_is_written_gives_a_consistent_copy(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    for i in range(2000):
        ledger.record(f"<{i}@x>", content_hash=str(i), state="filed", outcome="approved")
    stop, written = threading.Event(), [2000]

    def service() -> None:  # keeps recording, as `responder run` does, during the backup
        while not stop.is_set():
            i = written[0]
            ledger.record(f"<{i}@x>", content_hash=str(i), state="seen", note="n" * 200)
            written[0] += 1

    writer = threading.Thread(target=service)
    writer.start()
    try:
        done = responder("backup", "--config", config, tmp_path / "copy.sqlite3")
    finally:
        stop.set()
        writer.join()
        ledger.close()

    assert done.returncode == 0, done.stderr
    copy = sqlite3.connect(tmp_path / "copy.sqlite3")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
    count = copy.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert 2000 <= count <= written[0]
    assert copy.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert done.stdout == (f"backed up {tmp_path / 'state' / 'ledger.sqlite3'} to "
                           f"{tmp_path / 'copy.sqlite3'}: {count} messages, schema version "
                           f"{len(MIGRATIONS)}\n")
    assert written[0] > 2000  # the service really wrote while the copy was made
    assert stat.S_IMODE((tmp_path / "copy.sqlite3").stat().st_mode) == 0o600  # personal data


def test_backup_without_a_ledger_creates_nothing(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)

    done = responder("backup", "--config", config, tmp_path / "copy.sqlite3")

    assert done.returncode == 1
    assert last_line(done.stderr).startswith("error: no ledger at")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


# -- 8. the service says what it is doing ---------------------------------------------------

class Service:
    """``responder run`` in the background, its log in a file, stopped with SIGTERM."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "responder", "run", "--config", str(config)],
            cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def wait_for(self, text: str, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines()):
            assert self.proc.poll() is None, "\n".join(self.lines())
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.lines())
            time.sleep(0.05)
        return self.lines()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self._out.close()


def health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_run_says_what_it_serves_its_backlog_progress_and_sigterm(
    harness: Harness, tmp_path: Path
) -> None:
    from responder import __version__

    harness.overrides = {"service": {"progress_every": 2}}
    config = harness.write_config(tmp_path / "config.toml")
    for _ in range(5):
        harness.deliver(gmail_reply("alice@example.com", 1234, "Approve"))
    service = Service(config, tmp_path / "run.log")
    try:
        service.wait_for("backlog: 5 of 5 messages done")
    finally:
        code = service.terminate()
    lines = service.lines()
    text = "\n".join(lines)

    assert code == 0, text
    assert "Traceback" not in text
    start = next(line for line in lines if " starting: " in line)
    assert start.endswith(
        f"INFO    responder {__version__} starting: 1 instance: default (imap "
        f"{harness.user}@{harness.dovecot.host}:{harness.dovecot.port} INBOX -> Halo "
        f"{harness.halo.base_url}, ledger {harness.settings.state.path})")
    progress = [line.split("INFO    ")[1] for line in lines if "backlog" in line]
    assert progress == [
        "default: backlog of 5 messages: 5 to look up in Halo",
        "default: backlog: 2 of 5 messages done",
        "default: backlog: 4 of 5 messages done",
        "default: backlog: 5 of 5 messages done",
    ]
    assert lines[-2].endswith("SIGTERM received: finishing the pass in hand, then stopping")
    assert lines[-1].endswith("INFO    stopped")


def test_a_wrong_imap_password_keeps_retrying_and_turns_healthz_unhealthy(
    harness: Harness, tmp_path: Path
) -> None:
    port = closed_port()
    harness.overrides = {"imap": {"password": "wrong-password-123"},
                         "service": {"metrics_port": port}}
    config = harness.write_config(tmp_path / "config.toml")
    service = Service(config, tmp_path / "run.log")
    try:
        service.wait_for("retrying in 2 s")  # the third attempt is on its way
        status, why = health(port)
    finally:
        code = service.terminate()
    text = service.log.read_text()

    assert code == 0 and "Traceback" not in text
    assert status == 503
    assert why.startswith("unhealthy: mailbox refusing the sign-in\n")
    assert harness.user not in why  # the unauthenticated endpoint names no account
    assert "default: mailbox authentication failed: imap " in text  # the log does
    assert "login refused for " + harness.user in text
    failures = [line for line in text.splitlines() if "ERROR" in line]
    assert len(failures) >= 2
    assert all("default: mailbox authentication failed: " in line for line in failures)
    steps = [line.rsplit("retrying in ", 1)[1] for line in failures]
    assert steps[:2] == ["1 s", "2 s"]  # once per backoff step, the step growing
    assert "wrong-password-123" not in text + why


def test_audit_reads_an_older_ledger_without_changing_it(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)
    path = tmp_path / "state" / "ledger.sqlite3"
    path.parent.mkdir()
    db = sqlite3.connect(path, isolation_level=None)  # as the first release left it
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, at TEXT)")
    name, sql = MIGRATIONS[0]
    for statement in filter(str.strip, sql.split(";")):
        db.execute(statement)
    db.execute("INSERT INTO migrations VALUES (?, '2026-01-01')", (name,))
    db.execute("INSERT INTO messages (key, content_hash, state, outcome, created_at, "
               "updated_at) VALUES ('<a@x>', 'h', 'filed', 'approved', '2026-01-01', "
               "'2026-01-01')")
    db.close()
    before = path.read_bytes()

    done = responder("audit", "--config", config, "--json")

    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["key"] for line in done.stdout.splitlines()] == ["<a@x>"]
    assert last_line(done.stderr).endswith("INFO    1 message exported")
    assert path.read_bytes() == before  # not migrated: the service does that, as its user


def test_check_ends_with_one_line_naming_what_failed(tmp_path: Path) -> None:
    config = maildir_config(tmp_path)  # Halo and SMTP on ports nobody listens on

    done = responder("check", "--config", config)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert last_line(done.stdout) == "2 of 6 parts FAILED: smtp, halo"
    assert "s3cret-value-xyz" not in done.stdout + done.stderr


def test_a_password_changed_while_running_is_reported_the_same_way(
    harness: Harness, tmp_path: Path
) -> None:
    port = closed_port()
    harness.overrides = {"service": {"metrics_port": port}}
    config = harness.write_config(tmp_path / "config.toml")
    service = Service(config, tmp_path / "run.log")
    try:
        service.wait_for("signed in as")
        passwd = harness.dovecot.root / "users" / harness.user  # rotated on the server
        passwd.with_suffix(".new").write_text(f"{harness.user}:{{PLAIN}}rotated-456::::::\n")
        passwd.with_suffix(".new").replace(passwd)
        time.sleep(1.5)  # Dovecot re-reads a changed passwd-file at most once a second
        subprocess.run(["doveadm", "-c", str(harness.dovecot.config_path), "kick",
                        harness.user], check=True, capture_output=True)
        service.wait_for("retrying in 2 s")
        status, why = health(port)
    finally:
        code = service.terminate()
    text = service.log.read_text()

    assert code == 0 and "Traceback" not in text
    assert status == 503 and why.startswith("unhealthy: mailbox refusing the sign-in\n")
    refused = [line for line in text.splitlines() if "authentication failed" in line]
    assert [line.rsplit("retrying in ", 1)[1] for line in refused][:2] == ["1 s", "2 s"]
    assert all("login refused for " + harness.user in line for line in refused)
